"""JWT access tokens from one OAuth issuer, verified against its published keys.

The issuer's metadata is discovered from `/.well-known/openid-configuration` (OpenID Connect) or,
failing that, `/.well-known/oauth-authorization-server` (RFC 8414); its JWKS is fetched once and
kept. A token signed with a key the cache does not know makes the verifier fetch the JWKS again (a
rotated key is picked up without a restart), at most once per REFETCH_INTERVAL so that tokens with
made-up `kid`s cannot turn the gateway into a flood of requests at the issuer. A token accepted for
an audience is accepted again without checking its signature for a few seconds, never past its
expiry (gateway.auth.verdicts): the signature is most of the cost. One fetch at a time:
a request that comes while the keys are being fetched waits for them, rather than being refused
for a key the fetch is about to bring.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import jwt
import requests

from gateway.auth.identity import Identity
from gateway.auth.verdicts import Verdicts, digest

log = logging.getLogger(__name__)
REFETCH_INTERVAL = 10.0
LEEWAY = 30  # seconds of clock skew allowed on exp/nbf/iat
FETCH_TIMEOUT = 10.0
# Public-key algorithms only: an HS* token would be checked with the issuer's public key as the
# shared secret, and `none` is no signature at all.
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


class Rejected(Exception):
    """The token is not acceptable (the message says why; it goes into the 401's error_description)."""


class IssuerUnavailable(Exception):
    """The issuer's metadata or keys cannot be fetched: not the caller's fault (503)."""


def check_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(algorithms)
    unsafe = [alg for alg in chosen if alg not in ASYMMETRIC]
    if unsafe or not chosen:
        raise ValueError(f"NMCP_AUTH_ALGORITHMS: only public-key algorithms ({', '.join(sorted(ASYMMETRIC))}) "
                         f"are accepted, got {', '.join(unsafe) or 'none'}")
    return chosen


class JwtVerifier:
    def __init__(self, issuer: str, algorithms: Iterable[str],
                 get: Callable[..., requests.Response] = requests.get, verdicts: Verdicts[Identity] | None = None,
                 ) -> None:
        self.issuer = issuer
        self._base = issuer.rstrip("/")
        self.algorithms = check_algorithms(algorithms)
        self._get = get
        self._jwks_uri = ""
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._fetching = threading.Lock()  # a gevent lock in the gateway's worker (monkey-patched)
        self._accepted = Verdicts() if verdicts is None else verdicts

    def _fetch_json(self, url: str) -> dict[str, Any]:
        try:
            resp = self._get(url, timeout=FETCH_TIMEOUT)
        except requests.RequestException as err:
            raise IssuerUnavailable(f"cannot reach the issuer at {url}: {err}") from err
        if resp.status_code != 200:
            raise IssuerUnavailable(f"{url} answered {resp.status_code}")
        return resp.json()

    def _discover(self) -> str:
        errors = []
        for suffix in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            try:
                metadata = self._fetch_json(self._base + suffix)
            except IssuerUnavailable as err:
                errors.append(str(err))
                continue
            if metadata.get("issuer") != self.issuer or not metadata.get("jwks_uri"):
                raise IssuerUnavailable(f"{self._base + suffix} names issuer {metadata.get('issuer')!r} "
                                        "or no jwks_uri")
            return metadata["jwks_uri"]
        raise IssuerUnavailable("; ".join(errors))

    def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        if not self._jwks_uri:
            self._jwks_uri = self._discover()
        keys: dict[str, jwt.PyJWK] = {}
        for raw in self._fetch_json(self._jwks_uri).get("keys", []):
            if raw.get("use", "sig") != "sig" or "kid" not in raw:
                continue
            try:
                keys[raw["kid"]] = jwt.PyJWK(raw)
            except jwt.PyJWTError as err:
                log.warning("issuer key %s skipped: %s", raw.get("kid"), err)
        self._keys = keys
        log.info("issuer %s: %d signing keys", self.issuer, len(keys))

    def _key(self, kid: str) -> jwt.PyJWK:
        if kid not in self._keys:
            with self._fetching:
                if kid not in self._keys and time.monotonic() - self._fetched_at >= REFETCH_INTERVAL:
                    self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise Rejected(f"the token is signed with key {kid!r}, which the issuer does not publish")
        return key

    def issued_here(self, token: str) -> bool:
        """Whether the token says this issuer made it (unverified: picks the verifier, decides nothing)."""
        try:
            return jwt.decode(token, options={"verify_signature": False}).get("iss") == self.issuer
        except jwt.PyJWTError:
            return False

    def verify(self, token: str, audiences: Iterable[str]) -> Identity:
        audiences = tuple(audiences)
        key = digest(token, *audiences)
        accepted = self._accepted.get(key)
        if accepted is None:
            accepted = self._verify(token, audiences)
            self._accepted.put(key, accepted, lifetime=float(accepted.claims["exp"]) - time.time())
        return accepted

    def _verify(self, token: str, audiences: tuple[str, ...]) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise Rejected(f"not a JWT: {err}") from err
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise Rejected(f"signature algorithm {alg!r} is not accepted")
        key = self._key(str(header.get("kid", "")))
        if key.algorithm_name != alg and "alg" in key._jwk_data:
            raise Rejected(f"key {header.get('kid')!r} is for {key.algorithm_name}, not {alg}")
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], audience=list(audiences), issuer=self.issuer,
                                leeway=LEEWAY, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.PyJWTError as err:
            raise Rejected(str(err)) from err
        scope = claims.get("scope", "")
        scopes = scope.split() if isinstance(scope, str) else list(scope)
        groups = claims.get("groups", [])
        return Identity(subject=str(claims["sub"]), via="jwt", scopes=frozenset(scopes),
                        groups=tuple(groups) if isinstance(groups, list) else (), claims=claims)
