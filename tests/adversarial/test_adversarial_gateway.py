"""The gateway's HTTP side under hostile input and heavy load, against the real gateway (gunicorn,
its gevent worker) and real servers, driven with raw HTTP and the official MCP SDK client.

* Malformed JSON-RPC on every transport (Streamable HTTP, legacy SSE, 2026-07-28 stateless): each
  message gets its 400 and JSON-RPC error at once, nothing stays in flight, the server still goes
  idle.
* Request bodies past NMCP_MAX_BODY get a JSON 413; a 16 MB message passes. A message larger than
  a server takes (NMCP_MAX_MESSAGE) is refused to its caller; the server and its other sessions
  carry on.
* 2,000 clients that send their request head too slowly: `/healthz` and an MCP call are served
  meanwhile, and every slow client is disconnected.
* A flood of sessions stops at NMCP_MAX_SESSIONS (429, Retry-After); unused sessions expire.
* Cross-site requests cannot start or stop servers.

Waits are failure guards (tests.support.wait_for), never timing claims.
"""

from __future__ import annotations

import contextlib
import json
import re
import resource
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests
from mcp.shared.exceptions import MCPError

from tests.adversarial.test_adversarial_gateway_rules import MALFORMED
from tests.gateway.clients import HTTP, connect
from tests.gateway.conftest import HERE as GATEWAY_TESTS
from tests.gateway.conftest import PYTHON, Gateway, run_gateway, server, write_manifests
from tests.gateway.test_gateway_http_api import in_phase
from tests.gateway.test_gateway_load import SIXTEEN_MB, text_of
from tests.support import NODE_BIN, wait_for

TEST_SERVER = [PYTHON, str(GATEWAY_TESTS / "stdio_server.py")]
EVERYTHING = [str(NODE_BIN / "mcp-server-everything")]
ALLOWED_ORIGIN = "https://allowed.example"
HEADER_TIMEOUT = 4  # seconds, for the slow-client test (the default is 10)
MAX_SESSIONS = 25
SESSION_TIMEOUT = 8  # seconds: long enough to fill a server with sessions, short enough to see them go
BOTH = "application/json, text/event-stream"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "adversary", "version": "0"}}}
TRANSPORTS = ("streamable-http", "sse", "stateless")
LOGS: dict[str, Path] = {}  # each gateway's log file, by its URL


def quick(transport: str) -> str:
    """The server each transport's malformed-message test uses (idle after 1 s: it must stop)."""
    return f"quick-{transport}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with default limits except a short header timeout, an allowed Origin, and room
    for a 16 MB message towards its servers."""
    docs = [server("test", TEST_SERVER), server("target", TEST_SERVER), server("everything", EVERYTHING, ["stdio"]),
            *(server(quick(t), TEST_SERVER, idleTimeout="1s") for t in TRANSPORTS)]
    manifests = write_manifests(tmp_path_factory.mktemp("hostile"), docs)
    with run_gateway(manifests, NMCP_HEADER_TIMEOUT=str(HEADER_TIMEOUT), NMCP_ALLOWED_ORIGINS=ALLOWED_ORIGIN,
                     NMCP_MAX_MESSAGE=str(24 * 1024 * 1024)) as gateway:
        LOGS[gateway.url] = manifests.parent / f"gateway-{gateway.url.rsplit(':', 1)[1]}.log"
        yield gateway


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with few sessions per server, short-lived unused sessions, the default message limit."""
    docs = [server("test", TEST_SERVER), server("everything", EVERYTHING, ["stdio"])]
    manifests = write_manifests(tmp_path_factory.mktemp("limited"), docs)
    with run_gateway(manifests, NMCP_MAX_SESSIONS=str(MAX_SESSIONS), NMCP_SESSION_TIMEOUT=str(SESSION_TIMEOUT)) \
            as gateway:
        yield gateway


def post(url: str, body: bytes | dict[str, Any], session: str | None = None, **headers: str) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", "Accept": BOTH, **headers}
    if session is not None:
        sent |= {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    return requests.post(url, data=data, headers=sent, timeout=60)


def open_session(gateway: Gateway, name: str) -> str:
    answer = post(gateway.mcp(name), INIT)
    assert answer.status_code == 200, answer.text
    session = answer.headers["Mcp-Session-Id"]
    assert post(gateway.mcp(name), {"jsonrpc": "2.0", "method": "notifications/initialized"}, session) \
        .status_code == 202
    return session


def phase(gateway: Gateway, name: str) -> str:
    return requests.get(gateway.api(name), timeout=10).json()["phase"]


def started(gateway: Gateway, name: str) -> dict[str, Any]:
    """Start a server by hand (POST .../request answers 202 at once) and its state once Ready."""
    assert requests.post(gateway.api(name) + "/request", timeout=60).status_code == 202
    return wait_for(lambda: in_phase(gateway, name, "Ready"), f"{name} running")


def in_flight(gateway: Gateway, name: str) -> float:
    metrics = requests.get(f"{gateway.url}/metrics", timeout=10).text
    found = re.search(rf'^nmcp_gateway_requests_in_flight{{server="default/{name}"}} (\S+)$', metrics, re.M)
    assert found, f"no in-flight gauge for {name}"
    return float(found.group(1))


def as_bytes(body: object) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@contextlib.contextmanager
def sender(gateway: Gateway, transport: str) -> Iterator[Callable[[bytes], requests.Response]]:
    """POST raw bodies the way `transport` does, on a session that is open (and a server that runs)."""
    name = quick(transport)
    if transport == "streamable-http":
        session = open_session(gateway, name)
        yield lambda body: post(gateway.mcp(name), body, session)
        requests.delete(gateway.mcp(name), headers={"Mcp-Session-Id": session}, timeout=10)
    elif transport == "sse":
        with requests.get(gateway.sse(name), stream=True, timeout=60) as stream:
            lines = stream.iter_lines()
            assert next(lines) == b"event: endpoint"
            endpoint = gateway.url + next(lines).removeprefix(b"data: ").decode()
            assert post(endpoint, INIT).status_code == 202  # the server starts for this session
            wait_for(lambda: phase(gateway, name) == "Ready", f"{name} running")
            yield lambda body: post(endpoint, body)
    else:
        started(gateway, name)
        yield lambda body: post(gateway.mcp(name), body, **{"MCP-Protocol-Version": "2026-07-28",
                                                            "Mcp-Method": "tools/call"})


# -- malformed JSON-RPC ----------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_malformed_message_is_answered_and_nothing_stays_in_flight(hostile: Gateway, transport: str) -> None:
    name = quick(transport)
    with sender(hostile, transport) as send:
        for case in MALFORMED:
            what, body, code, echoed = case.values
            answer = send(as_bytes(body))  # a hang would end in requests' timeout, failing the test
            assert answer.status_code == 400, f"{case.id}: {answer.status_code} {answer.text[:300]}"
            error = answer.json()
            assert error["jsonrpc"] == "2.0", case.id
            assert (error["error"]["code"], error["id"]) == (code, echoed), f"{case.id} ({what}): {error}"
        batch = send(as_bytes([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": None}]))
        assert batch.status_code == 400
        assert batch.json()["error"]["code"] == -32600
        if transport == "sse":  # 2024-11-05 allowed batches: the bad member is named, nothing was run
            assert [p["index"] for p in batch.json()["error"]["data"]["problems"]] == [1]
        assert in_flight(hostile, name) == 0
    wait_for(lambda: phase(hostile, name) == "Idle", f"{name} stopping after its idle timeout", timeout=60)


def test_a_request_id_still_in_flight_is_refused_and_the_first_request_answered(hostile: Gateway,
                                                                                 tmp_path: Path) -> None:
    session = open_session(hostile, "test")
    marker = tmp_path / "started"
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "wait", "arguments": {"seconds": 1, "marker": str(marker)}}}
    first: list[requests.Response] = []
    worker = threading.Thread(target=lambda: first.append(post(hostile.mcp("test"), call, session)))
    worker.start()
    wait_for(marker.exists, "the first call running")
    again = post(hostile.mcp("test"), {**call, "params": {"name": "echo", "arguments": {"text": "x"}}}, session)
    worker.join(timeout=60)
    assert again.status_code == 400
    assert (again.json()["id"], again.json()["error"]["data"]["code"]) == (9, "duplicate_request_id")
    assert first and "waited 1" in first[0].text


def test_a_lone_surrogate_travels_escaped_both_ways(hostile: Gateway) -> None:
    session = open_session(hostile, "everything")
    body = (b'{"jsonrpc":"2.0","id":3,"method":"tools/call",'
            b'"params":{"name":"echo","arguments":{"message":"a\\ud800b"}}}')
    answer = post(hostile.mcp("everything"), body, session, Accept="application/json")
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["content"][0]["text"] == "Echo: a\ud800b"


# -- body and message limits ------------------------------------------------------------------------

def test_a_body_past_the_limit_gets_a_json_413_before_it_is_read(hostile: Gateway) -> None:
    limit = 32 * 1024 * 1024  # NMCP_MAX_BODY's default
    session = open_session(hostile, "test")
    too_big = b" " * (limit + 1)
    for url, chunked in ((hostile.mcp("test"), False), (hostile.mcp("test"), True),
                         (hostile.api("target") + "/request", False)):
        data: Any = iter([too_big[:limit], too_big[limit:]]) if chunked else too_big
        answer = requests.post(url, data=data, timeout=120, headers={
            "Content-Type": "application/json", "Accept": BOTH, "Mcp-Session-Id": session})
        assert answer.status_code == 413, (url, chunked, answer.text[:200])
        error = answer.json()["error"]
        assert error["code"] == "body_too_large"
        assert "NMCP_MAX_BODY" in error["message"]
    assert phase(hostile, "target") == "Idle"  # the refused request started nothing
    assert requests.get(f"{hostile.url}/healthz", timeout=10).status_code == 200


def test_a_sixteen_megabyte_message_passes_the_default_body_limit(hostile: Gateway) -> None:
    text = "0123456789abcdef" * (SIXTEEN_MB // 16)

    async def main() -> str:
        async with connect(HTTP, hostile, "test") as client:
            with anyio.fail_after(120):
                return text_of(await client.call_tool("echo", {"text": text}))

    assert anyio.run(main) == text


def test_a_message_too_large_for_the_server_is_refused_and_the_server_lives_on(limited: Gateway) -> None:
    async def main() -> tuple[MCPError, str, str, str]:
        async with connect(HTTP, limited, "everything") as bystander, connect(HTTP, limited, "everything") as client:
            before = text_of(await bystander.call_tool("echo", {"message": "before"}))
            with pytest.raises(MCPError) as refused:
                await client.call_tool("echo", {"message": "x" * SIXTEEN_MB})
            after = text_of(await bystander.call_tool("echo", {"message": "after"}))
            again = text_of(await client.call_tool("echo", {"message": "again"}))
            return refused.value, before, after, again

    pid = started(limited, "everything")["details"]["pid"]
    refused, before, after, again = anyio.run(main)
    assert refused.error.code == -32600
    assert "NMCP_MAX_MESSAGE" in refused.error.message
    assert refused.error.data == {"code": "message_too_large", "size": refused.error.data["size"],
                                  "limit": 8 * 1024 * 1024}
    assert (before, after, again) == ("Echo: before", "Echo: after", "Echo: again")
    assert requests.get(limited.api("everything"), timeout=10).json()["details"]["pid"] == pid  # never restarted


# -- slow clients ----------------------------------------------------------------------------------

@contextlib.contextmanager
def open_files(needed: int) -> Iterator[None]:
    """This process may hold `needed` sockets (restored afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_two_thousand_slow_clients_are_dropped_while_everyone_else_is_served(hostile: Gateway) -> None:
    count = 2000
    port = int(hostile.url.rsplit(":", 1)[1])
    with open_files(count + 512), selectors.DefaultSelector() as selector:
        slow: list[socket.socket] = []
        try:
            for index in range(count):  # each sends a request head one header line at a time, never finishing
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: {index}\r\n".encode())
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
                slow.append(sock)

            assert requests.get(f"{hostile.url}/healthz", timeout=30).json() == {"status": "ok"}

            async def call() -> str:
                async with connect(HTTP, hostile, "test") as client:
                    return text_of(await client.call_tool("echo", {"text": "served"}))

            assert anyio.run(call) == "served"

            dropped: set[socket.socket] = set()
            answered: list[bytes] = []

            def drain() -> bool:
                for key, _ in selector.select(timeout=0.5):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:
                        data = b""
                    if data:
                        answered.append(data)
                    else:
                        selector.unregister(sock)
                        dropped.add(sock)
                for sock in slow:  # the others keep trickling header lines
                    if sock not in dropped:
                        with contextlib.suppress(OSError):
                            sock.send(b"X-More: 1\r\n")
                return len(dropped) == count

            wait_for(drain, "every slow client disconnected")
            assert answered == []  # disconnected, never answered: a slow head is not a request
        finally:
            for sock in slow:
                sock.close()
    assert requests.get(f"{hostile.url}/healthz", timeout=10).status_code == 200
    assert "sent no complete request head within 4s (NMCP_HEADER_TIMEOUT)" in LOGS[hostile.url].read_text()


# -- sessions --------------------------------------------------------------------------------------

def test_a_session_flood_stops_at_the_cap_and_unused_sessions_expire(limited: Gateway) -> None:
    kept = open_session(limited, "test")
    with requests.get(limited.mcp("test"), stream=True, timeout=60,
                      headers={"Mcp-Session-Id": kept, "Accept": "text/event-stream",
                               "MCP-Protocol-Version": "2025-06-18"}) as stream:
        assert stream.status_code == 200  # a session holding its GET stream never expires
        abandoned: list[str] = []
        for _ in range(4 * MAX_SESSIONS):  # until the server is full (sessions may expire meanwhile)
            full = post(limited.mcp("test"), INIT)
            if full.status_code != 200:
                break
            abandoned.append(full.headers["Mcp-Session-Id"])
        assert len(abandoned) >= MAX_SESSIONS - 1
        assert full.status_code == 429
        assert full.json()["error"]["code"] == "too_many_sessions"
        assert "NMCP_MAX_SESSIONS" in full.json()["error"]["message"]
        assert 1 <= int(full.headers["Retry-After"]) <= SESSION_TIMEOUT
        with requests.get(limited.sse("test"), stream=True, timeout=10) as sse:
            assert sse.status_code == 429 and "Retry-After" in sse.headers

        flood = [post(limited.mcp("test"), INIT) for _ in range(200)]  # abandoned at once, never DELETEd
        assert {r.status_code for r in flood} <= {200, 429}
        assert requests.get(limited.api("test"), timeout=10).json()["sessions"] <= MAX_SESSIONS

        # Nobody uses the abandoned sessions (a request would renew one): once they expire there is room.
        wait_for(lambda: post(limited.mcp("test"), INIT).status_code == 200, "room for a new session")
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        gone = post(limited.mcp("test"), ping, abandoned[0])
        assert gone.status_code == 404 and gone.json()["error"]["data"]["code"] == "session_not_found"
        alive = post(limited.mcp("test"), ping, kept)
        assert alive.status_code == 200, alive.text


# -- cross-site requests ---------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["request", "shutdown"])
def test_a_foreign_page_can_neither_start_nor_stop_a_server(hostile: Gateway, route: str) -> None:
    if route == "shutdown":
        started(hostile, "target")
    before = phase(hostile, "target")
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what a cross-site <form> sends
    refused = requests.post(f"{hostile.api('target')}/{route}", data="x=1", timeout=10,
                            headers={**form, "Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    assert phase(hostile, "target") == before
    for origin in ("http://localhost:5173", ALLOWED_ORIGIN):
        allowed = requests.post(f"{hostile.api('target')}/{route}", timeout=60, headers={"Origin": origin})
        assert allowed.status_code == 202, (origin, allowed.text)
