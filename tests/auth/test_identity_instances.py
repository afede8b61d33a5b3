"""`isolation: identity`: one instance per authenticated caller, never shared between callers,
kept across the caller's sessions; refused with a clear error when nobody is authenticated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import requests

from tests.auth.conftest import CLIENTS, TEST_SERVER, access_policy, authenticated_gateway, connect
from tests.gateway.conftest import Gateway, pool, run_gateway, server, write_manifests
from tests.support.oidc import Issuer

pytestmark = pytest.mark.timeout(300)


def docs() -> list[dict[str, object]]:
    return [pool(maxActive=10, maxIdle=10), server("mine", TEST_SERVER, isolation="identity"),
            access_policy("everyone", [{"user": c} for c in CLIENTS], ["mine"])]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Gateway]:
    with authenticated_gateway(tmp_path_factory.mktemp("identity"), issuer, docs()) as gw:
        yield gw


def pids(url: str, token: str, sessions: int) -> list[str]:
    """The server process id each of `sessions` concurrent sessions of one caller is served by."""
    async def one(found: list[str]) -> None:
        async with connect(url, token) as client:
            found.append((await client.call_tool("pid", {})).content[0].text)  # type: ignore[union-attr]

    async def main() -> list[str]:
        found: list[str] = []
        async with anyio.create_task_group() as group:
            for _ in range(sessions):
                group.start_soon(one, found)
        return found

    return anyio.run(main)


def test_each_identity_has_an_instance_of_its_own(gateway: Gateway, issuer: Issuer) -> None:
    alice, bob = (issuer.token(c, gateway.mcp("mine")) for c in CLIENTS)
    # One request first: the gateway fetches the issuer's keys once (two first requests at once may
    # race that fetch, which is not what this test is about).
    state = requests.get(gateway.api("mine"), headers={"Authorization": f"Bearer {alice}"}, timeout=30)
    assert state.status_code == 200, state.text
    first = pids(gateway.mcp("mine"), alice, 2)
    theirs = pids(gateway.mcp("mine"), bob, 2)
    assert len(set(first)) == 1 and len(set(theirs)) == 1, (first, theirs)  # one instance per caller
    assert set(first) != set(theirs)  # never shared between callers
    # The caller's instance outlives their sessions (per-user state): the next session finds it,
    # over the other transport too.
    assert pids(gateway.sse("mine"), alice, 1) == first[:1]
    state = requests.get(gateway.api("mine"), headers={"Authorization": f"Bearer {alice}"}, timeout=30).json()
    assert state["details"]["runningInstances"] == 2


def test_without_authentication_an_identity_server_is_refused(tmp_path: Path) -> None:
    with run_gateway(write_manifests(tmp_path, docs()[:2])) as gateway:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
        answer = requests.post(gateway.mcp("mine"), data=json.dumps(init), timeout=60, headers={
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
        assert answer.status_code == 403
        error = answer.json()["error"]
        assert error["code"] == "identity_required"
        assert "NMCP_AUTH_ISSUER" in error["message"]
