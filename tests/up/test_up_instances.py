"""`nmcp up` with `isolation: session`: every client session's instance is a Pod the pool admits.

Instances count against the pool's `maxActive` (a session beyond it waits, then gets the pool's
reason), an ended session releases its instance at once, and an abandoned one is stopped after
the server's idle timeout; new sessions take warm spares (the pool's maxIdle), each serving one
client only. Driven over raw HTTP, so each session's life is explicit. The pools of the tests
about clients' instances keep no spares (maxIdle 0), so that every instance is a client's.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import requests

from tests.support.modern import modern, modern_headers
from tests.up.running import GUARD, ROOT, VENV_BIN, Up, alive, nmcp_up, pool, time_server, wait_for, write

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": "2025-06-18"}


def post(up: Up, message: dict[str, Any], session: str | None = None) -> requests.Response:
    headers = {**HEADERS, **({"Mcp-Session-Id": session} if session else {})}
    return requests.post(up.mcp_url("own"), data=json.dumps(message), headers=headers, timeout=GUARD)


def open_session(up: Up) -> str:
    response = post(up, INIT)
    assert response.status_code == 200, response.text
    return response.headers["Mcp-Session-Id"]


def instance_pids(up: Up, command: bytes = b"mcp-server-time") -> set[int]:
    """The server processes nmcp up runs (each instance is one)."""
    found = set()
    for pid in up.processes():
        try:
            if command in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


def exactly(up: Up, count: int) -> set[int] | None:
    """The instance processes when there are `count` of them, else None (for wait_for)."""
    pids = instance_pids(up)
    return pids if len(pids) == count else None


class Watch:
    """Samples the instance count (processes and the server's status) until stopped: the most seen."""

    def __init__(self, up: Up) -> None:
        self.up, self.most, self.most_reported = up, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.most = max(self.most, len(instance_pids(self.up)))
            details = self.up.server("own")["details"]
            self.most_reported = max(self.most_reported, details.get("runningInstances", 0))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(GUARD)


def test_instances_count_against_max_active_and_a_session_beyond_it_waits(tmp_path: Path) -> None:
    write(tmp_path, "servers.yaml", pool(max_active=2, max_idle=0),
          time_server("own", spec="isolation: session\nstartTimeout: 5s"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        watch = Watch(up)
        try:
            fill_wait_and_release(up)
        finally:
            watch.stop()
        assert watch.most <= 2 and watch.most_reported <= 2, (watch.most, watch.most_reported)


def fill_wait_and_release(up: Up) -> None:
    """Two sessions fill the pool, a third waits and fails, one ends and a fourth is served."""
    first, second = open_session(up), open_session(up)
    two = wait_for(lambda: exactly(up, 2), "two instance processes")
    assert up.server("own")["details"]["runningInstances"] == 2

    # The pool is full: a third session waits for capacity, then gets the pool's reason.
    third = post(up, INIT)
    error = third.json()["error"]
    assert error["data"]["reason"] == "WaitingForCapacity", error
    assert "2/2" in error["message"]
    assert "Mcp-Session-Id" not in third.headers

    # Ending a session releases its instance at once (the idle timeout is an hour): room again.
    assert requests.delete(up.mcp_url("own"), headers={**HEADERS, "Mcp-Session-Id": first},
                           timeout=GUARD).status_code in (200, 204)
    wait_for(lambda: len(instance_pids(up)) == 1, "the ended session's instance to stop")
    fourth = open_session(up)
    now = wait_for(lambda: exactly(up, 2), "a new instance")
    assert len(now & two) == 1  # the second session kept its own; the fourth has a new one

    # Each session is served by its own instance.
    listed = post(up, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, second)
    assert "get_current_time" in listed.text
    listed = post(up, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, fourth)
    assert "get_current_time" in listed.text
    assert up.server("own")["phase"] == "Ready"


def test_an_abandoned_session_loses_its_instance_after_the_idle_timeout(tmp_path: Path) -> None:
    write(tmp_path, "servers.yaml", pool(max_active=1, max_idle=0),
          time_server("own", spec="isolation: session\nidleTimeout: 6s"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        abandoned = open_session(up)  # never used again, never ended
        (pid,) = wait_for(lambda: instance_pids(up) or None, "the session's instance")
        wait_for(lambda: not alive(pid), "the abandoned instance to be stopped after its idle timeout")
        idle = up.wait_phase("own", "Idle")
        assert idle["details"]["runningInstances"] == 0

        # Its slot is free for the next client (maxActive is 1), and the abandoned session, if it
        # comes back, gets an instance again.
        other = open_session(up)
        listed = post(up, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, other)
        assert "get_current_time" in listed.text
        assert requests.delete(up.mcp_url("own"), headers={**HEADERS, "Mcp-Session-Id": other},
                               timeout=GUARD).status_code in (200, 204)
        wait_for(lambda: not instance_pids(up), "the ended session's instance to stop")
        back = post(up, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, abandoned)
        assert "get_current_time" in back.text


TEST_SERVER = ROOT / "tests" / "gateway" / "stdio_server.py"


def stateless_pid(up: Up) -> int:
    """One 2026-07-28 request (a session of one request): the pid of the instance that served it."""
    call = modern("tools/call", {"name": "pid", "arguments": {}})
    response = requests.post(up.mcp_url("own"), json=call, timeout=GUARD, headers={
        "Accept": "application/json, text/event-stream", **modern_headers("tools/call", "pid")})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert not result.get("isError"), result
    return int(result["content"][0]["text"])


def test_2026_requests_take_warm_spares_that_never_serve_another_client(tmp_path: Path) -> None:
    write(tmp_path, "servers.yaml", pool(max_active=10, max_idle=2), f"""
        apiVersion: nmcp.nwrx.io/v1
        kind: MCPServer
        metadata: {{name: own}}
        spec:
          command: [{VENV_BIN / "python"}, {TEST_SERVER}]
          isolation: session
        """)
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        served = [stateless_pid(up)]  # the first is a cold start, and asks for a spare
        for _ in range(4):
            # A spare runs before the request is sent (started for no one), and serves it.
            spares = wait_for(lambda: instance_pids(up, b"stdio_server.py") - set(served) or None, "a warm spare")
            pid = stateless_pid(up)
            assert pid in spares, (pid, spares)
            assert pid not in served  # an instance never serves a second client
            served.append(pid)
        # Each request's instance stops with it; what runs after are spares, never more than maxIdle.
        wait_for(lambda: not instance_pids(up, b"stdio_server.py") & set(served), "the used instances to stop")
        assert len(instance_pids(up, b"stdio_server.py")) <= 2
