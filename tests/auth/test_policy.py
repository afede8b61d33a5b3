"""Access policy (MCPAccessPolicy in the manifests): who may use which server, see and call which
tools, and perform which REST operations; what no policy allows is denied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests

from tests.auth.conftest import TEST_SERVER, access_policy, authenticated_gateway, connect
from tests.gateway.conftest import Gateway, pool, server
from tests.support import wait_for
from tests.support.oidc import Issuer

pytestmark = pytest.mark.timeout(300)


def docs() -> list[dict[str, object]]:
    return [
        pool(maxActive=10, maxIdle=10), server("test", TEST_SERVER), server("other", TEST_SERVER),
        access_policy("alice-echoes", [{"user": "alice"}], ["test"], tools=["echo"], operations=["logs"]),
        access_policy("bob-blobs", [{"claim": {"name": "client_id", "value": "bob"}}], ["test"],
                      tools=["blob", "p*"]),
    ]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Gateway]:
    with authenticated_gateway(tmp_path_factory.mktemp("policy"), issuer, docs()) as gw:
        yield gw


def session(gateway: Gateway, token: str, url: str, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """tools/list and each call's outcome (its text, or the error's message and data.code)."""
    async def run() -> dict[str, Any]:
        async with connect(url, token) as client:
            listed = sorted(t.name for t in (await client.list_tools()).tools)
            outcomes = {}
            for tool, args in calls:
                try:
                    result = await client.call_tool(tool, args)
                    outcomes[tool] = ("ok", result.content[0].text)  # type: ignore[union-attr]
                except Exception as err:  # the SDK raises the JSON-RPC error
                    error = getattr(err, "error", None)
                    outcomes[tool] = ("refused", getattr(error, "code", None), getattr(error, "data", None) or {},
                                      str(err))
            return {"listed": listed, "calls": outcomes}
    return anyio.run(run)


CALLS = [("echo", {"text": "hi"}), ("pid", {}), ("blob", {"size": 3})]


@pytest.mark.parametrize("transport", ["mcp", "sse"])
def test_two_identities_see_and_call_only_their_own_tools(gateway: Gateway, issuer: Issuer, transport: str) -> None:
    url = gateway.mcp("test") if transport == "mcp" else gateway.sse("test")
    alice = session(gateway, issuer.token("alice", gateway.mcp("test")), url, CALLS)
    bob = session(gateway, issuer.token("bob", gateway.mcp("test")), url, CALLS)
    assert alice["listed"] == ["echo"]
    assert bob["listed"] == ["blob", "pid"]
    assert alice["calls"]["echo"] == ("ok", "hi")
    for tool in ("pid", "blob"):
        refused = alice["calls"][tool]
        assert refused[:3] == ("refused", -32602, {"code": "tool_not_allowed", "tool": tool}), refused
        assert "not available to alice" in refused[3]
    assert bob["calls"]["blob"][0] == "ok" and bob["calls"]["pid"][0] == "ok"
    assert bob["calls"]["echo"][:3] == ("refused", -32602, {"code": "tool_not_allowed", "tool": "echo"})


def _rest(method: str, url: str, token: str) -> requests.Response:
    return requests.request(method, url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_rest_operations_need_their_permission(gateway: Gateway, issuer: Issuer) -> None:
    alice = issuer.token("alice", gateway.mcp("test"))
    bob = issuer.token("bob", gateway.mcp("test"))
    assert _rest("GET", gateway.api("test"), bob).status_code == 200  # using a server includes inspecting it
    for method, path in (("GET", "/logs"), ("POST", "/shutdown"), ("POST", "/request")):
        resp = _rest(method, gateway.api("test") + path, bob)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["error"]["code"] == "operation_not_allowed"
    assert _rest("GET", gateway.api("test") + "/logs", alice).status_code == 200
    assert _rest("POST", gateway.api("test") + "/shutdown", alice).json()["error"]["code"] == "operation_not_allowed"


def test_what_no_policy_allows_is_denied(gateway: Gateway, issuer: Issuer) -> None:
    resp = _rest("GET", gateway.api("other"), issuer.token("alice", gateway.mcp("other")))
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
    resp = requests.post(gateway.mcp("other"), headers={
        "Authorization": f"Bearer {issuer.token('bob', gateway.mcp('other'))}",
        "Accept": "application/json, text/event-stream"}, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        timeout=30)
    assert resp.status_code == 403


def test_denials_are_audited(gateway: Gateway, issuer: Issuer) -> None:
    session(gateway, issuer.token("alice", gateway.mcp("test")), gateway.mcp("test"), [("pid", {})])
    assert gateway.log_path is not None
    path = Path(gateway.log_path).parent / "audit.jsonl"

    def refusals() -> list[dict[str, Any]]:
        events = [json.loads(line) for line in path.read_text().splitlines()]
        return [e for e in events if e["subject"] == "alice" and e.get("name") == "pid"]

    events = wait_for(refusals, "alice's refused call audited")
    assert all((e["outcome"], e["reason"], e["method"]) == ("denied", "tool_not_allowed", "tools/call")
               for e in events)


def _post(url: str, token: str, message: dict[str, Any], session_id: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-06-18", **({"Mcp-Session-Id": session_id} if session_id else {})}
    return requests.post(url, json=message, headers=headers, timeout=30)


def test_a_session_answers_only_the_caller_who_opened_it(gateway: Gateway, issuer: Issuer) -> None:
    # A session id is not a credential: bob, who may use the server too, cannot use, watch or end
    # alice's session with its id, on either transport; to him it does not exist.
    url = gateway.mcp("test")
    alice, bob = issuer.token("alice", url), issuer.token("bob", url)
    opened = _post(url, alice, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    assert opened.status_code == 200, opened.text
    session_id = opened.headers["Mcp-Session-Id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    for resp in (_post(url, bob, listing, session_id),
                 requests.get(url, timeout=30, stream=True, headers={  # a stream would never end
                     "Authorization": f"Bearer {bob}", "Mcp-Session-Id": session_id, "Accept": "text/event-stream"}),
                 requests.delete(url, timeout=30, headers={"Authorization": f"Bearer {bob}",
                                                           "Mcp-Session-Id": session_id})):
        assert resp.status_code == 404, resp.status_code
        assert resp.json()["error"]["data"]["code"] == "session_not_found"
        resp.close()
    assert "echo" in _post(url, alice, listing, session_id).text  # still alice's, and open

    with requests.get(gateway.sse("test"), stream=True, timeout=30,
                      headers={"Authorization": f"Bearer {alice}", "Accept": "text/event-stream"}) as stream:
        lines = stream.iter_lines(decode_unicode=True)
        endpoint = next(line for line in lines if line.startswith("data:"))[len("data:"):].strip()
        message_url = gateway.url + endpoint if endpoint.startswith("/") else endpoint
        refused = requests.post(message_url, json=listing, timeout=30, headers={"Authorization": f"Bearer {bob}"})
        assert refused.status_code == 404, refused.text
        accepted = requests.post(message_url, json=listing, timeout=30, headers={"Authorization": f"Bearer {alice}"})
        assert accepted.status_code == 202, accepted.text

