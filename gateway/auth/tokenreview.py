"""Kubernetes ServiceAccount tokens, verified by the API server (TokenReview).

An agent in the cluster presents its projected ServiceAccount token, requested for one of
NMCP_AUTH_TOKENREVIEW_AUDIENCES (audience-bound: a token minted for the API server, or for anything
else, is refused). The verdict is kept for CACHE_SECONDS (never past the token's own expiry, which
the API server checked), so a busy agent costs one review, not one per call. Its subject is the
username the review returns, `system:serviceaccount:NAMESPACE:NAME`, and its groups.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Protocol

from gateway.auth.identity import Identity
from gateway.auth.tokens import IssuerUnavailable, Rejected

CACHE_SECONDS = 10.0
CACHE_SIZE = 10000


class Reviewer(Protocol):
    def token_review(self, token: str, audiences: Sequence[str]) -> dict: ...


class TokenReviewVerifier:
    def __init__(self, client: Reviewer, audiences: Sequence[str]) -> None:
        self.client = client
        self.audiences = tuple(audiences)
        self._cache: dict[str, tuple[float, Identity | str]] = {}

    def verify(self, token: str) -> Identity:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is None or cached[0] <= now:
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            cached = (now + CACHE_SECONDS, self._review(token))
            self._cache[key] = cached
        verdict = cached[1]
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
