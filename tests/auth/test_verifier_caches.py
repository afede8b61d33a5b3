"""What the verifiers keep: the issuer's keys (fetched once at a time: the first requests after a
start or a rotation arrive together, and none may be refused for a key the fetch in progress is
about to bring) and their verdicts (bounded, per audience, never past their deadline).

The issuer here is a stand-in (a function answering its metadata and JWKS, slowly), so that the
requests demonstrably overlap the fetch; the real issuer is tested in test_tokens.py.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.auth.tokens import JwtVerifier, Rejected
from gateway.auth.verdicts import Verdicts

ISSUER = "https://issuer.example"
AUDIENCE = "https://gateway.example/api/v1/servers/time/mcp"


class SlowIssuer:
    """Answers discovery and the JWKS after `delay` seconds, counting the JWKS fetches."""

    def __init__(self, delay: float) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.delay = delay
        self.jwks_fetches = 0
        self._lock = threading.Lock()

    def get(self, url: str, timeout: float) -> Any:
        time.sleep(self.delay)
        if url.endswith("/jwks"):
            with self._lock:
                self.jwks_fetches += 1
            public = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            body = {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "ES256"}]}
        else:
            body = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"}
        return _Response(body)

    def token(self, kid: str = "k1") -> str:
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "agent", "exp": int(time.time()) + 300}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": kid})


class _Response:
    status_code = 200

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def json(self) -> dict[str, Any]:
        return self._body


def test_requests_that_arrive_during_the_first_key_fetch_wait_for_it() -> None:
    issuer = SlowIssuer(delay=0.3)
    verifier = JwtVerifier(ISSUER, ["ES256"], get=issuer.get)
    with ThreadPoolExecutor(8) as pool:
        subjects = list(pool.map(lambda _: verifier.verify(issuer.token(), [AUDIENCE]).subject, range(8)))
    assert subjects == ["agent"] * 8
    assert issuer.jwks_fetches == 1


def test_made_up_key_ids_arriving_together_cause_one_fetch_and_are_refused() -> None:
    issuer = SlowIssuer(delay=0.1)
    verifier = JwtVerifier(ISSUER, ["ES256"], get=issuer.get)
    verifier.verify(issuer.token(), [AUDIENCE])

    def made_up(index: int) -> str:
        try:
            verifier.verify(issuer.token(kid=f"made-up-{index}"), [AUDIENCE])
        except Rejected as err:
            return str(err)
        return "accepted"

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(made_up, range(8)))
    assert all("which the issuer does not publish" in answer for answer in answers), answers
    assert issuer.jwks_fetches == 1  # the first fetch is less than REFETCH_INTERVAL ago


def test_an_accepted_token_is_accepted_again_only_for_its_audience() -> None:
    issuer = SlowIssuer(delay=0)
    verifier = JwtVerifier(ISSUER, ["ES256"], get=issuer.get)
    token = issuer.token()
    assert verifier.verify(token, [AUDIENCE]).subject == "agent"
    assert verifier.verify(token, [AUDIENCE]).subject == "agent"  # from the verdicts
    with pytest.raises(Rejected, match=r"[Aa]udience"):
        verifier.verify(token, ["https://gateway.example/api/v1/servers/other/mcp"])


def test_verdicts_are_bounded_in_number_and_time() -> None:
    verdicts: Verdicts[str] = Verdicts(seconds=60, size=3)
    for index in range(5):
        verdicts.put(f"k{index}", f"v{index}")
    assert [verdicts.get(f"k{index}") for index in range(5)] == [None, None, "v2", "v3", "v4"]
    verdicts.put("brief", "soon gone", lifetime=0.05)  # a token about to expire
    verdicts.put("expired", "never kept", lifetime=-1)
    time.sleep(0.1)
    assert verdicts.get("brief") is None and verdicts.get("expired") is None
