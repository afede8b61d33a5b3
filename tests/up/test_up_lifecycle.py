"""`nmcp up` end to end: scale from zero, idle stop, pool admission, crash loops, the examples.

Each test runs the real command (gunicorn, gevent worker, the hooks, real MCP servers) and
talks to it as a user would: the REST API, the official MCP SDK client, its log.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from tests.support import ROOT, VENV_BIN, free_port
from tests.up.running import GUARD, call_tool, nmcp_up, pool, time_server, wait_for, write


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _phase_events(log: str, server: str) -> list[tuple[str | None, str, str]]:
    """(from, to, reason) of every phase change the JSON log reports for `server`."""
    events = []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue  # gunicorn's own lines
        record = json.loads(line)
        if record.get("event") == "phase" and record.get("server") == server:
            events.append((record["from"], record["to"], record["reason"]))
    return events


def test_a_client_scales_an_idle_server_from_zero_and_it_stops_after_its_idle_timeout(tmp_path: Path) -> None:
    # Idle time counts from the process start (a stdio Pod is ready once it runs), so the timeout
    # leaves room for a slow initialize on a busy machine.
    write(tmp_path, "servers.yaml", pool(), time_server("time", spec="idleTimeout: 8s"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log", log_format="json") as up:
        assert up.servers()["time"]["phase"] == "Idle"
        assert not any("mcp-server-time" in _cmdline(p) for p in up.processes())

        result = call_tool(up.mcp_url("time"), "get_current_time", {"timezone": "UTC"})
        assert not result.is_error
        assert json.loads(result.content[0].text)["timezone"] == "UTC"

        idle = up.wait_phase("time", "Idle")
        assert idle["reason"] == "IdleTimeout"
        wait_for(lambda: not any("mcp-server-time" in _cmdline(p) for p in up.processes()),
                 "the server process to be stopped")
        phases = [to for _, to, _ in _phase_events(up.log(), "default/time")]
        # The pool admits it in the same pass that sees the demand, so it never shows Requested.
        assert phases == ["Idle", "Starting", "Ready", "Stopping", "Idle"], phases
        assert ("Ready", "Stopping", "IdleTimeout") in _phase_events(up.log(), "default/time")

        # And from zero again: the next client is served the same way.
        again = call_tool(up.mcp_url("time"), "get_current_time", {"timezone": "Europe/Paris"})
        assert json.loads(again.content[0].text)["timezone"] == "Europe/Paris"


def test_max_active_holds_and_the_waiting_server_starts_when_one_stops(tmp_path: Path) -> None:
    write(tmp_path, "pool.yaml", pool(max_active=2))
    write(tmp_path, "servers.yaml", *(time_server(name) for name in ("a", "b", "c")))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        requests_sent = [threading.Thread(target=up.post, args=(name, "request")) for name in ("a", "b", "c")]
        for thread in requests_sent:
            thread.start()
        for thread in requests_sent:
            thread.join(GUARD)
        most = 0

        def settled() -> dict[str, list[str]] | None:
            nonlocal most
            most = max(most, sum("mcp-server-time" in _cmdline(p) for p in up.processes()))
            by_phase: dict[str, list[str]] = {}
            for name, server in up.servers().items():
                by_phase.setdefault(server["phase"], []).append(name)
            return by_phase if len(by_phase.get("Ready", [])) == 2 and len(by_phase.get("Requested", [])) == 1 \
                else None

        phases = wait_for(settled, "two servers Ready and one Requested")
        (waiting,) = phases["Requested"]
        state = up.server(waiting)
        assert state["reason"] == "WaitingForCapacity"
        assert "2/2" in state["message"]
        assert most <= 2

        stopped = phases["Ready"][0]
        up.post(stopped, "shutdown")
        assert up.wait_phase(waiting, "Ready")["details"]["podName"] == f"mcp-{waiting}"
        assert up.wait_phase(stopped, "Idle")["reason"] == "StoppedByRequest"
        assert sum("mcp-server-time" in _cmdline(p) for p in up.processes()) <= 2


def test_a_server_that_keeps_exiting_is_degraded_with_its_exit_status_and_stderr(tmp_path: Path) -> None:
    write(tmp_path, "servers.yaml", pool(), """
        apiVersion: nmcp.nwrx.io/v1
        kind: MCPServer
        metadata: {name: crashy}
        spec:
          command: [sh, -c, 'echo "no config file" >&2; exit 3']
        """)
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        up.post("crashy", "request")
        degraded = up.wait_phase("crashy", "Degraded")
        assert degraded["reason"] == "CrashLoopBackOff"
        assert "last exit code 3" in degraded["message"]
        assert "no config file" in degraded["message"]


def test_the_examples_serve_both_servers(tmp_path: Path) -> None:
    with nmcp_up(ROOT / "examples" / "local", log_path=tmp_path / "up.log", cwd=ROOT) as up:
        servers = up.servers()
        assert {name: (s["phase"], s["pool"]) for name, s in servers.items()} == {
            "everything": ("Idle", "default"), "time": ("Idle", "default")}

        echoed = call_tool(up.mcp_url("everything"), "echo", {"message": "hello from nmcp up"})
        assert "hello from nmcp up" in echoed.content[0].text
        now = call_tool(up.mcp_url("time"), "get_current_time", {"timezone": "UTC"})
        assert json.loads(now.content[0].text)["timezone"] == "UTC"

        servers = up.servers()
        assert servers["everything"]["phase"] == servers["time"]["phase"] == "Ready"
        assert servers["time"]["lastActiveAt"] is not None


def test_clients_arriving_together_at_an_idle_server_are_all_served(tmp_path: Path) -> None:
    write(tmp_path, "servers.yaml", pool(), time_server("time"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        results: dict[int, object] = {}

        def client(n: int) -> None:
            try:
                results[n] = call_tool(up.mcp_url("time"), "get_current_time", {"timezone": "UTC"})
            except Exception as err:  # reported below, with the others
                results[n] = err

        clients = [threading.Thread(target=client, args=(n,)) for n in range(5)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(GUARD)
        assert all(not isinstance(r, Exception) and not r.is_error for r in results.values()), results
        assert len(results) == 5
        assert up.log().count("pod default/mcp-time: starting") == 1  # one process serves them all


def test_isolated_sessions_get_instances_of_their_own_that_end_with_them(tmp_path: Path) -> None:
    # maxIdle 0: no warm spares (test_up_instances), so each instance is a client's.
    write(tmp_path, "servers.yaml", pool(max_idle=0), time_server("own", spec="isolation: session"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        for zone in ("UTC", "Asia/Tokyo"):
            result = call_tool(up.mcp_url("own"), "get_current_time", {"timezone": zone})
            assert json.loads(result.content[0].text)["timezone"] == zone
        # Each client's instance is a Pod of the pool's, stopped when its session ends (the idle
        # timeout is an hour): nothing of the server is left running.
        wait_for(lambda: up.server("own")["details"]["runningInstances"] == 0, "the instances to stop")
        wait_for(lambda: not [p for p in up.processes() if "mcp-server-time" in _cmdline(p)],
                 "every instance process to be reaped")
        started = re.findall(r"pod default/mcp-own-([0-9a-f]{16}): starting", up.log())
        assert len(set(started)) >= 2  # at least one per client (the SDK may open more per connection)
        assert up.server("own")["phase"] == "Idle"


def test_an_http_server_is_ready_once_its_port_accepts_connections_and_is_served_through_it(tmp_path: Path) -> None:
    port = free_port()
    write(tmp_path, "servers.yaml", pool(), f"""
        apiVersion: nmcp.nwrx.io/v1
        kind: MCPServer
        metadata: {{name: web}}
        spec:
          command: [npx, --no-install, mcp-server-everything]
          args: [streamableHttp]
          env: [{{name: PORT, value: "{port}"}}]
          transport: {{type: streamable-http, port: {port}}}
        """)
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log", cwd=ROOT) as up:
        echoed = call_tool(up.mcp_url("web"), "echo", {"message": "over HTTP"})
        assert "over HTTP" in echoed.content[0].text
        state = up.server("web")
        assert (state["phase"], state["transport"]["type"]) == ("Ready", "streamable-http")


def test_max_idle_stops_the_longest_idle_server(tmp_path: Path) -> None:
    write(tmp_path, "pool.yaml", pool(max_idle=1))
    write(tmp_path, "servers.yaml", time_server("older"), time_server("newer"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        call_tool(up.mcp_url("older"), "get_current_time", {"timezone": "UTC"})
        call_tool(up.mcp_url("newer"), "get_current_time", {"timezone": "UTC"})
        # Both clients are gone: two idle running servers, one more than maxIdle allows.
        assert up.wait_phase("older", "Idle")["reason"] != "NeverRequested"
        assert "server default/older: Ready -> Stopping (Evicted" in up.log()
        assert up.server("newer")["phase"] == "Ready"


def test_a_call_longer_than_the_idle_timeout_keeps_its_server(tmp_path: Path) -> None:
    # A call in flight is activity: the gateway's heartbeat keeps the idle timer from stopping
    # the server under it (and failing the call) however long the call runs.
    server = ROOT / "tests" / "gateway" / "stdio_server.py"
    write(tmp_path, "servers.yaml", pool(), f"""
        apiVersion: nmcp.nwrx.io/v1
        kind: MCPServer
        metadata: {{name: slow}}
        spec:
          command: [{VENV_BIN / "python"}, {server}]
          idleTimeout: 3s
        """)
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        result = call_tool(up.mcp_url("slow"), "wait", {"seconds": 10})
        assert not result.is_error, result
        assert result.content[0].text == "waited 10.0"


def test_a_server_started_by_hand_and_unused_stops_once_and_stays_stopped(tmp_path: Path) -> None:
    # POST .../request with no client: the start answers the request, so after the idle timeout
    # the server goes back to Idle for good (not restarted until the request expires).
    write(tmp_path, "servers.yaml", pool(), time_server("manual", spec="idleTimeout: 3s\nstartTimeout: 2m"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log", log_format="json") as up:
        up.post("manual", "request")
        up.wait_phase("manual", "Ready")
        assert up.wait_phase("manual", "Idle")["reason"] == "IdleTimeout"
        # Before the fix the pool re-admitted it at its next pass, well inside this window.
        threading.Event().wait(6)
        assert up.server("manual")["phase"] == "Idle"
        starts = [e for e in _phase_events(up.log(), "default/manual") if e[1] == "Starting"]
        assert len(starts) == 1, _phase_events(up.log(), "default/manual")


def test_pool_default_is_provided_when_no_manifest_declares_it_and_other_missing_pools_degrade(
        tmp_path: Path) -> None:
    write(tmp_path, "servers.yaml", time_server("plain"), time_server("stray", pool="nowhere"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log", log_format="json") as up:
        result = call_tool(up.mcp_url("plain"), "get_current_time", {"timezone": "UTC"})
        assert json.loads(result.content[0].text)["timezone"] == "UTC"
        assert up.server("plain")["details"]["pool"] == "default"
        records = [json.loads(line) for line in up.log().splitlines() if line.startswith("{")]
        pools = [(r["object"], r["event"]) for r in records if r.get("kind") == "MCPPool"]
        assert pools == [("default/default", "created")]  # one pool, provided (the log says by whom)

        up.post("stray", "request")
        stray = up.wait_phase("stray", "Degraded")
        assert stray["reason"] == "PoolNotFound"
        assert "nowhere" in stray["message"]

