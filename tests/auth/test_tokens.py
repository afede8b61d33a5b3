"""The gateway as an OAuth 2.1 resource server (MCP authorization): bearer tokens from a real issuer
(oidc-provider) on every MCP and REST endpoint, RFC 9728 metadata per server, 401/403 challenges."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import anyio
import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.auth.conftest import authenticated_gateway, connect, servers
from tests.gateway.conftest import Gateway
from tests.support import ROOT, VENV_BIN, free_port, wait_for
from tests.support.modern import modern, modern_headers
from tests.support.oidc import Issuer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Gateway]:
    with authenticated_gateway(tmp_path_factory.mktemp("gateway"), issuer, servers()) as gw:
        yield gw


def metadata_url(gateway: Gateway, name: str) -> str:
    return f"{gateway.url}/.well-known/oauth-protected-resource/api/v1/servers/{name}/mcp"


def echo(url: str, token: str | None) -> str:
    async def call() -> str:
        async with connect(url, token) as client:
            result = await client.call_tool("echo", {"text": "hello"})
            return result.content[0].text  # type: ignore[union-attr]
    return anyio.run(call)


def post_initialize(url: str, token: str | None) -> requests.Response:
    headers = {"Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    return requests.post(url, json=body, headers=headers, timeout=30)


def test_protected_resource_metadata_per_server(gateway: Gateway, issuer: Issuer) -> None:
    for name in ("test", "other"):
        doc = requests.get(metadata_url(gateway, name), timeout=10).json()
        assert doc["resource"] == gateway.mcp(name)
        assert doc["authorization_servers"] == [issuer.url]
        assert doc["scopes_supported"] == ["mcp"]
    assert requests.get(f"{gateway.url}/.well-known/oauth-protected-resource/api/v1/servers/test/logs",
                        timeout=10).status_code == 404


def test_sdk_client_reaches_a_server_only_with_a_valid_token(gateway: Gateway, issuer: Issuer) -> None:
    token = issuer.token("alice", gateway.mcp("test"))
    assert echo(gateway.mcp("test"), token) == "hello"
    assert echo(gateway.sse("test"), token) == "hello"
    with pytest.raises(BaseException):  # noqa: B017 - the SDK raises its own error for a 401
        echo(gateway.mcp("test"), None)


def test_missing_token_gets_a_challenge_naming_the_metadata(gateway: Gateway) -> None:
    for url in (gateway.mcp("test"), gateway.sse("test"), gateway.api("test"), gateway.api("test") + "/logs",
                f"{gateway.url}/api/v1/servers"):
        resp = requests.get(url, timeout=10)
        assert resp.status_code == 401, url
        assert resp.headers["WWW-Authenticate"].startswith("Bearer resource_metadata=")
    challenge = post_initialize(gateway.mcp("test"), None).headers["WWW-Authenticate"]
    assert challenge == f'Bearer resource_metadata="{metadata_url(gateway, "test")}"'
    assert requests.get(gateway.url + "/healthz", timeout=10).status_code == 200


def hs256(claims: dict[str, object], secret: bytes, kid: str) -> str:
    """A token "signed" with the issuer's public key as an HMAC secret (the classic confusion attack);
    PyJWT will not make one, so it is put together here."""
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{part(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _refused(gateway: Gateway, token: str) -> str:
    resp = post_initialize(gateway.mcp("test"), token)
    assert resp.status_code == 401, resp.text
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer resource_metadata="{metadata_url(gateway, "test")}", error="invalid_token"')
    return challenge.lower()


def test_bad_tokens_are_refused(gateway: Gateway, issuer: Issuer) -> None:
    assert "audience" in _refused(gateway, issuer.token("alice", gateway.mcp("other")))  # another server's
    assert "audience" in _refused(gateway, issuer.token("alice", "https://elsewhere.example/mcp"))
    assert "expired" in _refused(gateway, issuer.forge(gateway.mcp("test"), lifetime=-120))
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert "does not publish" in _refused(gateway, issuer.forge(gateway.mcp("test"), kid="stranger", key=stranger))
    assert "signature verification failed" in _refused(gateway, issuer.forge(gateway.mcp("test"), key=stranger))
    claims = jwt.decode(issuer.token("alice", gateway.mcp("test")), options={"verify_signature": False})
    assert "'none' is not accepted" in _refused(gateway, jwt.encode(claims, None, algorithm="none"))
    public_pem = issuer.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    hs = hs256(claims, public_pem, issuer.jwk["kid"])
    assert "'hs256' is not accepted" in _refused(gateway, hs)
    assert "not a jwt" in _refused(gateway, "opaque-token")
    # The other server takes the token that was refused here.
    assert echo(gateway.mcp("other"), issuer.token("alice", gateway.mcp("other"))) == "hello"


def test_a_token_lacking_the_scope_gets_403(gateway: Gateway, issuer: Issuer) -> None:
    resp = post_initialize(gateway.mcp("test"), issuer.token("alice", gateway.mcp("test"), scope="mcp:admin"))
    assert resp.status_code == 403
    assert resp.headers["WWW-Authenticate"] == (f'Bearer resource_metadata="{metadata_url(gateway, "test")}", '
                                                'error="insufficient_scope", scope="mcp"')


def test_rest_endpoints_take_the_token_of_their_server(gateway: Gateway, issuer: Issuer) -> None:
    token = issuer.token("alice", gateway.mcp("test"))
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(gateway.api("test"), headers=headers, timeout=10).status_code == 200
    assert requests.get(gateway.api("other"), headers=headers, timeout=10).status_code == 401
    listing = {"Authorization": f"Bearer {issuer.token('alice', gateway.url)}"}
    assert requests.get(f"{gateway.url}/api/v1/servers", headers=listing, timeout=10).status_code == 200


def test_key_rotation_at_the_issuer_is_picked_up(gateway: Gateway, issuer: Issuer) -> None:
    issuer.rotate("key-2")
    token = issuer.token("alice", gateway.mcp("test"))
    assert jwt.get_unverified_header(token)["kid"] == "key-2"
    # The gateway refetches the keys on an unknown kid, at most once per interval: poll until it has.
    wait_for(lambda: post_initialize(gateway.mcp("test"), token).status_code == 200, "the rotated key accepted")
    assert echo(gateway.mcp("test"), token) == "hello"


def test_an_open_gateway_beyond_loopback_refuses_to_start() -> None:
    env = {"PATH": "/usr/bin:/bin", "NMCP_BIND": f"0.0.0.0:{free_port()}", "NMCP_MANIFESTS": ""}
    proc = subprocess.run([str(VENV_BIN / "gunicorn"), "--config", str(ROOT / "gateway" / "gunicorn.conf.py")],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "without authentication" in proc.stderr + proc.stdout


def test_a_body_nested_too_deep_from_a_caller_is_a_parse_error_not_a_crash(gateway: Gateway, issuer: Issuer) -> None:
    # The policy reads the body of an allowed caller's POST (to refuse tool calls): it reads it as
    # the protocol does, so a hostile body gets the answer it gets with authentication off.
    token = issuer.token("alice", gateway.mcp("test"))
    resp = requests.post(gateway.mcp("test"), data=b"[" * 100_000 + b"]" * 100_000, timeout=30, headers={
        "Accept": "application/json, text/event-stream", "Content-Type": "application/json",
        "Authorization": f"Bearer {token}"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == -32700


def test_a_2026_request_waiting_for_input_takes_it_only_from_its_caller(gateway: Gateway, issuer: Issuer) -> None:
    # Both may use every tool here. alice's call asks her for sampling: its requestState names her
    # parked request, which bob cannot answer (to him it is unknown), and alice then can.
    url = gateway.mcp("test")
    alice, bob = issuer.token("alice", url), issuer.token("bob", url)

    def ask(token: str, **params: Any) -> requests.Response:
        body = modern("tools/call", {"name": "ask", "arguments": {"question": "six times seven?"}, **params},
                      capabilities={"sampling": {}})
        return requests.post(url, json=body, timeout=60, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
            **modern_headers("tools/call", "ask")})

    first = ask(alice).json()["result"]
    assert first["resultType"] == "input_required", first
    (key,) = first["inputRequests"]
    answer = {key: {"role": "assistant", "content": {"type": "text", "text": "42"}, "model": "test"}}
    stolen = ask(bob, requestState=first["requestState"], inputResponses=answer)
    assert stolen.status_code == 400 and "requestState" in stolen.text, stolen.text
    done = ask(alice, requestState=first["requestState"], inputResponses=answer).json()["result"]
    assert done["resultType"] == "complete" and done["content"][0]["text"] == "42", done
