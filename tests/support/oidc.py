"""A real OAuth authorization server for the tests: oidc-provider (npm) run by oidc_issuer.mjs.

`Issuer` owns its signing keys (so a test can also sign a token the provider would not issue: an
expired one, one from an unknown key), starts the provider on a free port, and can rotate its keys
by restarting it on the same port with a new key (the issuer URL stays the same).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.support import ROOT, free_port, stop, wait_http

SCRIPT = ROOT / "tests" / "support" / "oidc_issuer.mjs"
SECRET = "s3cret-" * 6


def new_key(kid: str) -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key))
    jwk.update(kid=kid, alg="ES256", use="sig")
    return key, jwk


class Issuer:
    def __init__(self, directory: Path, clients: tuple[str, ...]) -> None:
        self.directory = directory
        self.clients = clients
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key, self.jwk = new_key("key-1")
        self.proc: subprocess.Popen | None = None
        self.log = (directory / "issuer.log").open("ab")

    def start(self) -> None:
        config = self.directory / "issuer.json"
        config.write_text(json.dumps({"jwks": {"keys": [self.jwk]},
                                      "clients": [{"client_id": c, "client_secret": SECRET} for c in self.clients]}))
        self.proc = subprocess.Popen(["node", str(SCRIPT), str(self.port), str(config)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_http(self.url + "/.well-known/openid-configuration", 30, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def rotate(self, kid: str) -> None:
        """A new signing key, the old one withdrawn from the JWKS."""
        self.stop()
        self.key, self.jwk = new_key(kid)
        self.start()

    def token(self, client: str, resource: str, scope: str = "mcp") -> str:
        """An access token the provider issues to `client` for `resource` (client_credentials)."""
        resp = requests.post(self.url + "/token", auth=(client, SECRET), timeout=10,
                             data={"grant_type": "client_credentials", "scope": scope, "resource": resource})
        resp.raise_for_status()
        return resp.json()["access_token"]

    def forge(self, audience: str, *, subject: str = "forger", lifetime: float = 600, kid: str | None = None,
              key: Any = None) -> str:
        """A token signed here: with the issuer's key unless `key` is given (then one it never published)."""
        now = int(time.time())
        claims = {"iss": self.url, "sub": subject, "aud": audience, "iat": now, "exp": now + int(lifetime),
                  "scope": "mcp"}
        return jwt.encode(claims, key or self.key, algorithm="ES256", headers={"kid": kid or self.jwk["kid"]})


@contextlib.contextmanager
def running_issuer(directory: Path, clients: tuple[str, ...]) -> Iterator[Issuer]:
    issuer = Issuer(directory, clients)
    issuer.start()
    try:
        yield issuer
    finally:
        issuer.stop()
        issuer.log.close()
