"""The gateway's HTTP surface as raw HTTP: the REST API, probes, and the transport rules the SDK
client does not exercise on its own (headers, status codes, error bodies, keep-alives)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.gateway.conftest import Gateway
from tests.support import wait_for
from tests.support.modern import MODERN, modern, modern_headers

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
BOTH = "application/json, text/event-stream"


def post(gateway: Gateway, name: str, message: Any, **headers: str) -> requests.Response:
    return requests.post(gateway.mcp(name), data=json.dumps(message), timeout=60,
                         headers={"Content-Type": "application/json", "Accept": BOTH, **headers})


def in_phase(gateway: Gateway, name: str, phase: str) -> dict[str, Any] | None:
    """The server's REST state when it is in `phase`, else None."""
    state = requests.get(gateway.api(name), timeout=10).json()
    return state if state["phase"] == phase else None


def open_session(gateway: Gateway, name: str = "time") -> str:
    response = post(gateway, name, INIT)
    assert response.status_code == 200
    session = response.headers["Mcp-Session-Id"]
    post(gateway, name, {"jsonrpc": "2.0", "method": "notifications/initialized"},
         **{"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"})
    return session


def sse_messages(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith(b"data: "):
            yield json.loads(line[6:])


# -- REST API and probes --------------------------------------------------------------------------

def test_servers_are_listed_with_their_endpoints(gateway: Gateway) -> None:
    servers = {s["name"]: s for s in requests.get(f"{gateway.url}/api/v1/servers", timeout=10).json()["servers"]}
    assert {"time", "everything", "imageonly"} <= set(servers)
    time_server = servers["time"]
    assert time_server["namespace"] == "default"
    assert time_server["transport"]["type"] == "stdio"
    assert time_server["endpoints"] == {"sse": "/api/v1/servers/time/sse", "streamableHttp": "/api/v1/servers/time/mcp"}
    namespaced = requests.get(f"{gateway.url}/api/v1/namespaces/default/servers/time", timeout=10)
    assert namespaced.status_code == 200
    assert namespaced.json()["endpoints"]["sse"] == "/api/v1/namespaces/default/servers/time/sse"


@pytest.mark.parametrize("path", ["/api/v1/servers/nope", "/api/v1/servers/nope/mcp", "/api/v1/servers/nope/sse",
                                  "/api/v1/namespaces/elsewhere/servers/time"])
def test_an_unknown_server_is_a_json_404(gateway: Gateway, path: str) -> None:
    response = requests.get(gateway.url + path, timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "server_not_found"


def test_unknown_routes_and_methods_are_json_errors(gateway: Gateway) -> None:
    missing = requests.get(f"{gateway.url}/api/v2/anything", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = requests.put(gateway.api("time"), timeout=10)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_request_and_shutdown_start_and_stop_a_server(gateway: Gateway) -> None:
    # 202: accepted; the server starts (and stops) in the background, as on Kubernetes.
    started = requests.post(gateway.api("time") + "/request", timeout=30)
    assert started.status_code == 202
    ready = wait_for(lambda: in_phase(gateway, "time", "Ready"), "time to be Ready")
    pid = ready["details"]["pid"]
    assert Path(f"/proc/{pid}").exists()
    stopped = requests.post(gateway.api("time") + "/shutdown", timeout=30)
    assert stopped.status_code == 202
    wait_for(lambda: in_phase(gateway, "time", "Idle"), "time to be Idle")
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped: not even a zombie
    # Scale from zero: the next client starts it again and is served.
    session = open_session(gateway, "time")
    answer = post(gateway, "time", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                  **{"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"})
    assert "get_current_time" in answer.text


def test_an_image_only_server_fails_at_once_with_a_clear_reason(gateway: Gateway) -> None:
    started = time.monotonic()
    answer = post(gateway, "imageonly", INIT)
    assert time.monotonic() - started < 30  # a failure guard: it must not wait for a start timeout
    assert "Mcp-Session-Id" not in answer.headers
    error = answer.json()["error"]
    # The hooks' word for a spec this runtime cannot run, on every runtime (it was NotRunnable).
    assert error["data"]["reason"] == "InvalidSpec"
    assert "command" in error["message"]
    state = requests.post(gateway.api("imageonly") + "/request", timeout=10).json()
    assert (state["phase"], state["reason"]) == ("Degraded", "InvalidSpec")


def test_a_command_that_does_not_exist_is_reported(gateway: Gateway) -> None:
    error = post(gateway, "missing", INIT).json()["error"]
    assert error["data"]["reason"] == "RunContainerError"  # the kubelet's word (it was SpawnFailed)
    assert "/nonexistent/mcp-server" in error["message"]


def test_logs_show_the_servers_stderr(gateway: Gateway) -> None:
    open_session(gateway, "everything")
    logs = requests.get(gateway.api("everything") + "/logs", timeout=10)
    assert logs.status_code == 200
    assert "Starting default (STDIO) server" in logs.text


def test_logs_follow_streams_new_lines(gateway: Gateway) -> None:
    requests.post(gateway.api("crashy") + "/request", timeout=30)
    with requests.get(gateway.api("crashy") + "/logs", params={"follow": "true"}, stream=True, timeout=30) as stream:
        assert stream.headers["X-Accel-Buffering"] == "no"
        requests.post(gateway.api("crashy") + "/shutdown", timeout=30)
        for line in stream.iter_lines():
            if b"exited with status" in line:
                break


def test_probes_metrics_and_openapi(gateway: Gateway) -> None:
    assert requests.get(f"{gateway.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(f"{gateway.url}/readyz", timeout=10).status_code == 200
    open_session(gateway, "time")
    metrics = requests.get(f"{gateway.url}/metrics", timeout=10).text
    assert "# TYPE nmcp_gateway_sessions gauge" in metrics
    assert 'nmcp_gateway_sessions_opened_total{server="default/time",transport="streamable-http"}' in metrics
    spec = requests.get(f"{gateway.url}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.")
    assert {"/api/v1/servers", "/api/v1/servers/{name}/mcp", "/api/v1/servers/{name}/sse"} <= set(spec["paths"])


# -- Streamable HTTP ------------------------------------------------------------------------------

def test_initialize_issues_a_session_and_other_requests_need_it(gateway: Gateway) -> None:
    answer = post(gateway, "time", INIT)
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["result"]["protocolVersion"] == "2025-06-18"
    assert answer.json()["result"]["serverInfo"]["name"] == "mcp-time"
    session = answer.headers["Mcp-Session-Id"]
    assert session.isascii() and session.isprintable()
    without = post(gateway, "time", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert without.status_code == 400
    unknown = post(gateway, "time", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                   **{"Mcp-Session-Id": "no-such-session"})
    assert unknown.status_code == 404


def test_an_unsupported_protocol_version_is_400(gateway: Gateway) -> None:
    session = open_session(gateway)
    answer = post(gateway, "time", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                  **{"Mcp-Session-Id": session, "MCP-Protocol-Version": "1999-01-01"})
    assert answer.status_code == 400
    assert answer.json()["error"]["data"]["code"] == "unsupported_protocol_version"


def test_delete_ends_the_session(gateway: Gateway) -> None:
    session = open_session(gateway)
    headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    assert requests.delete(gateway.mcp("time"), headers=headers, timeout=10).status_code == 204
    after = post(gateway, "time", {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, **headers)
    assert after.status_code == 404
    assert requests.delete(gateway.mcp("time"), headers=headers, timeout=10).status_code == 404


@pytest.mark.parametrize(("origin", "status"), [
    ("http://localhost:6274", 200), ("http://127.0.0.1:3000", 200), ("https://evil.example", 403), ("null", 403)])
def test_origin_is_checked(gateway: Gateway, origin: str, status: int) -> None:
    answer = post(gateway, "time", INIT, Origin=origin)
    assert answer.status_code == status
    if status == 403:
        assert answer.json()["error"]["code"] == "origin_not_allowed"


def test_json_only_clients_get_json_and_event_stream_clients_get_sse(gateway: Gateway) -> None:
    session = open_session(gateway)
    headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    as_json = post(gateway, "time", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                   **headers, Accept="application/json")
    assert as_json.headers["Content-Type"].startswith("application/json")
    assert as_json.json()["id"] == 2
    as_sse = requests.post(gateway.mcp("time"), json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
                           headers={**headers, "Accept": "text/event-stream"}, stream=True, timeout=30)
    assert as_sse.headers["Content-Type"].startswith("text/event-stream")
    assert as_sse.headers["X-Accel-Buffering"] == "no"
    assert next(sse_messages(as_sse.iter_lines()))["id"] == 3
    batch = post(gateway, "time", [{"jsonrpc": "2.0", "id": 4, "method": "tools/list"}], **headers)
    assert batch.status_code == 400


def test_the_get_stream_is_one_per_session_and_sends_keepalives(gateway: Gateway) -> None:
    session = open_session(gateway)
    headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18", "Accept": "text/event-stream"}
    with requests.get(gateway.mcp("time"), headers=headers, stream=True, timeout=30) as stream:
        assert stream.status_code == 200
        assert stream.headers["X-Accel-Buffering"] == "no"
        lines = stream.iter_lines()
        assert next(lines) == b": keepalive"
        second = requests.get(gateway.mcp("time"), headers=headers, timeout=10)
        assert second.status_code == 409
        # NMCP_KEEPALIVE=1 in these tests: more comments come while nothing else happens.
        comments = [line for line in (next(lines), next(lines), next(lines), next(lines)) if line]
        assert comments == [b": keepalive"] * 2


# -- legacy HTTP+SSE ------------------------------------------------------------------------------

def test_the_sse_stream_starts_with_the_endpoint_event(gateway: Gateway) -> None:
    with requests.get(gateway.sse("time"), stream=True, timeout=30) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["X-Accel-Buffering"] == "no"
        lines = stream.iter_lines()
        assert next(lines) == b"event: endpoint"
        data = next(lines).decode()
        assert data.startswith("data: /api/v1/servers/time/message?sessionId=")
        endpoint = data.removeprefix("data: ")
        accepted = requests.post(gateway.url + endpoint, json=INIT, timeout=30)
        assert accepted.status_code == 202
        answer = next(sse_messages(lines))
        assert answer["id"] == 1
        assert answer["result"]["serverInfo"]["name"] == "mcp-time"
    gone = requests.post(gateway.url + endpoint, json=INIT, timeout=30)
    deadline = time.monotonic() + 10
    while gone.status_code != 404 and time.monotonic() < deadline:  # the gateway notices the hang-up
        time.sleep(0.2)
        gone = requests.post(gateway.url + endpoint, json=INIT, timeout=30)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "session_not_found"


# -- 2026-07-28 (stateless) -----------------------------------------------------------------------

def test_server_discover_needs_no_session(gateway: Gateway) -> None:
    answer = post(gateway, "time", modern("server/discover"), **modern_headers("server/discover"))
    assert answer.status_code == 200
    assert "Mcp-Session-Id" not in answer.headers
    result = answer.json()["result"]
    assert result["supportedVersions"] == [MODERN]
    assert "tools" in result["capabilities"]
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-time"


def test_a_stateless_call_is_answered_in_the_2026_shape(gateway: Gateway) -> None:
    listed = post(gateway, "time", modern("tools/list"), **modern_headers("tools/list")).json()["result"]
    assert {"resultType": "complete", "ttlMs": 0, "cacheScope": "private"}.items() <= listed.items()
    call = modern("tools/call", {"name": "get_current_time", "arguments": {"timezone": "UTC"}})
    answer = post(gateway, "time", call, **modern_headers("tools/call", "get_current_time")).json()
    assert answer["result"]["resultType"] == "complete"
    assert "UTC" in answer["result"]["content"][0]["text"]


@pytest.mark.parametrize(("headers", "code"), [
    (modern_headers("tools/list", "get_current_time"), -32020),  # Mcp-Method disagrees with the body
    (modern_headers("tools/call", "other_tool"), -32020),  # Mcp-Name disagrees
    ({"MCP-Protocol-Version": MODERN}, -32020),  # no Mcp-Method at all
])
def test_routing_headers_must_match_the_body(gateway: Gateway, headers: dict[str, str], code: int) -> None:
    call = modern("tools/call", {"name": "get_current_time", "arguments": {"timezone": "UTC"}})
    answer = post(gateway, "time", call, **headers)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code


def test_a_stateless_request_without_its_envelope_is_refused(gateway: Gateway) -> None:
    bare = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    answer = post(gateway, "time", bare, **modern_headers("tools/list"))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == -32602
