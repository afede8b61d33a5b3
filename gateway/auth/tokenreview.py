"""Kubernetes ServiceAccount tokens, verified by the API server (TokenReview).

An agent in the cluster presents its projected ServiceAccount token, requested for one of
NMCP_AUTH_TOKENREVIEW_AUDIENCES (audience-bound: a token minted for the API server, or for anything
else, is refused). The verdict is kept for a few seconds (gateway.auth.verdicts), so a busy agent
costs one review, not one per call. Its subject is the
username the review returns, `system:serviceaccount:NAMESPACE:NAME`, and its groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.auth.identity import Identity
from gateway.auth.tokens import IssuerUnavailable, Rejected
from gateway.auth.verdicts import Verdicts, digest


class Reviewer(Protocol):
    def token_review(self, token: str, audiences: Sequence[str]) -> dict: ...


class TokenReviewVerifier:
    def __init__(self, client: Reviewer, audiences: Sequence[str]) -> None:
        self.client = client
        self.audiences = tuple(audiences)
        self._verdicts: Verdicts[Identity | str] = Verdicts()  # a refusal too: each review is an API call

    def verify(self, token: str) -> Identity:
        key = digest(token)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._review(token)
            self._verdicts.put(key, verdict)
        if isinstance(verdict, str):
            raise Rejected(verdict)
        return verdict

    def _review(self, token: str) -> Identity | str:
        try:
            status = self.client.token_review(token, self.audiences)
        except Exception as err:  # the API server is unreachable, or the gateway may not review
            raise IssuerUnavailable(f"TokenReview failed: {err}") from err
        if not status.get("authenticated"):
            return f"the Kubernetes API server did not accept the token: {status.get('error') or 'not authenticated'}"
        if not set(status.get("audiences") or ()) & set(self.audiences):
            return f"the token is not for any of the audiences {', '.join(self.audiences)}"
        user = status.get("user", {})
        return Identity(subject=user.get("username", ""), via="tokenreview", groups=tuple(user.get("groups", [])),
                        claims={"extra": user.get("extra", {}), "uid": user.get("uid", "")})
