"""Calls on an open Streamable HTTP session (the gateway's hot path, gateway.fastpath) pass every
check a request without a session passes, are audited and counted like any other, and the access
log is written only when NMCP_ACCESS_LOG asks for it."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.gateway.conftest import PYTHON, Gateway, pool, run_gateway, server, write_manifests
from tests.support import wait_for

HERE = Path(__file__).resolve().parent
MAX_BODY = 4096
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}


def manifests(directory: Path) -> Path:
    return write_manifests(directory, [pool(maxActive=5, maxIdle=5),
                                       server("test", [PYTHON, str(HERE / "stdio_server.py")])])


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway without authentication (loopback), auditing to a file, with a small body limit."""
    directory = tmp_path_factory.mktemp("session-calls")
    with run_gateway(manifests(directory), NMCP_AUDIT=str(directory / "audit.jsonl"),
                     NMCP_MAX_BODY=str(MAX_BODY)) as gw:
        yield gw


class Session:
    """A raw Streamable HTTP session on server `test`."""

    def __init__(self, gateway: Gateway, url: str | None = None) -> None:
        self.url = url or gateway.mcp("test")
        answer = requests.post(self.url, json=INIT, headers=self.headers(), timeout=60)
        assert answer.status_code == 200, answer.text
        self.id = answer.headers["Mcp-Session-Id"]
        requests.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                      headers=self.headers(), timeout=30)

    def headers(self, **extra: str) -> dict[str, str]:
        session = {"Mcp-Session-Id": self.id} if hasattr(self, "id") else {}
        return {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2025-06-18", **session, **extra}

    def post(self, message: Any, **headers: str) -> requests.Response:
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        return requests.post(self.url, data=body, headers=self.headers(**headers), timeout=60)


def echo(rpc_id: int, text: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}}}


def audit_events(gateway: Gateway, request_id: str) -> list[dict[str, Any]]:
    assert gateway.log_path is not None
    path = gateway.log_path.parent / "audit.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["requestId"] == request_id]


def test_a_call_on_a_session_is_answered_audited_and_counted(audited: Gateway) -> None:
    session = Session(audited)
    request_id = uuid.uuid4().hex
    answer = session.post(echo(7, "hello"), **{"X-Request-Id": request_id})
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    assert answer.headers["X-Request-Id"] == request_id
    assert answer.json()["id"] == 7 and answer.json()["result"]["content"][0]["text"] == "hello"
    (event,) = wait_for(lambda: audit_events(audited, request_id), "the call's audit event")
    assert {k: event[k] for k in ("subject", "via", "server", "operation", "method", "name", "rpcId", "status",
                                  "outcome")} == {
        "subject": "anonymous", "via": "anonymous", "server": "test", "operation": "mcp", "method": "tools/call",
        "name": "echo", "rpcId": 7, "status": 200, "outcome": "ok"}
    assert "arguments" not in event and "hello" not in json.dumps(event)
    made_up = session.post(echo(8, "again"))  # no X-Request-Id: the gateway makes one
    assert made_up.status_code == 200 and len(made_up.headers["X-Request-Id"]) == 32

    namespaced = Session(audited, f"{audited.url}/api/v1/namespaces/default/servers/test/mcp")
    request_id = uuid.uuid4().hex
    refused = namespaced.post({"jsonrpc": "2.0", "id": 9, "method": "no/such/method"}, **{"X-Request-Id": request_id})
    assert refused.status_code == 200 and refused.json()["error"]["code"] == -32601
    (event,) = wait_for(lambda: audit_events(audited, request_id), "the refused call's audit event")
    assert (event["server"], event["method"], event["outcome"], event["reason"]) == (
        "default/test", "no/such/method", "error", "-32601")
    # Names a client makes up (methods, servers in URLs) are audited as sent, but are no series of
    # their own in /metrics: "other" and "" hold them all, so no client can grow the registry.
    for index in range(3):
        lost = requests.post(f"{audited.url}/api/v1/servers/made-up-{index}/mcp", json=echo(10, "x"),
                             headers={"Accept": "application/json, text/event-stream"}, timeout=10)
        assert lost.status_code == 404
    metrics = requests.get(audited.url + "/metrics", timeout=10).text
    assert 'nmcp_gateway_calls_total{method="tools/call",outcome="ok",server="test"} 2.0' in metrics
    assert 'nmcp_gateway_calls_total{method="other",outcome="error",server="default/test"} 1.0' in metrics
    assert "no/such/method" not in metrics and "made-up-" not in metrics
    assert 'nmcp_gateway_calls_total{method="tools/call",outcome="error",server=""} 3.0' in metrics


def test_a_call_on_a_session_passes_the_same_checks(audited: Gateway) -> None:
    session = Session(audited)
    cases = [  # (what, body, headers, status, stable code)
        ("foreign Origin", echo(2, "x"), {"Origin": "https://evil.example"}, 403, "origin_not_allowed"),
        ("foreign Host", echo(3, "x"), {"Host": "rebound.attacker.example"}, 403, "host_not_allowed"),
        ("body over NMCP_MAX_BODY", echo(4, "x" * MAX_BODY), {}, 413, "body_too_large"),
        ("unsupported version", echo(5, "x"), {"MCP-Protocol-Version": "1999-01-01"}, 400,
         "unsupported_protocol_version"),
        ("not JSON", b"{nope", {}, 400, "invalid_json"),
        ("invalid message", {"jsonrpc": "2.0", "id": None, "method": "tools/call"}, {}, 400, "invalid_message"),
        ("nothing acceptable", echo(6, "x"), {"Accept": "text/html"}, 406, "not_acceptable"),
        ("another server's session", echo(7, "x"), {"Mcp-Session-Id": "no-such-session"}, 404, "session_not_found"),
    ]
    for what, body, headers, status, code in cases:
        answer = session.post(body, **headers)
        assert answer.status_code == status, (what, answer.text)
        error = answer.json()["error"]
        assert (error["data"]["code"] if "data" in error else error["code"]) == code, (what, error)
    assert session.post(echo(8, "still served")).json()["result"]["content"][0]["text"] == "still served"


def test_an_id_in_flight_is_refused_on_its_session(audited: Gateway, tmp_path: Path) -> None:
    session = Session(audited)
    marker = tmp_path / "marker"
    slow = {"jsonrpc": "2.0", "id": 11, "method": "tools/call",
            "params": {"name": "wait", "arguments": {"seconds": 3, "marker": str(marker)}}}
    first: list[requests.Response] = []
    caller = threading.Thread(target=lambda: first.append(session.post(slow)))
    caller.start()
    try:
        wait_for(marker.exists, "the first call running on the server")
        answer = session.post(echo(11, "same id"))
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["data"]["code"] == "duplicate_request_id"
    finally:
        caller.join()
    # Its answer comes after the keep-alive interval (1 s here): as an SSE stream, ending with the result.
    assert first[0].status_code == 200 and '"text":"waited 3.0"' in first[0].text


def test_the_access_log_is_written_only_when_asked(audited: Gateway, tmp_path: Path) -> None:
    Session(audited).post(echo(2, "x"))
    assert '"POST /api/v1/servers/test/mcp HTTP/1.1" 200' not in audited.log()
    with run_gateway(manifests(tmp_path), NMCP_ACCESS_LOG="true") as logged:
        Session(logged).post(echo(2, "x"))
        wait_for(lambda: '"POST /api/v1/servers/test/mcp HTTP/1.1" 200' in logged.log(), "the access log line")
