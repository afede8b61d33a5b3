"""Operating `nmcp up`: bad manifests, live changes, Ctrl-C."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import requests
from mcp.client.client import Client
from mcp.client.sse import sse_client

from tests.support import ROOT, VENV_BIN
from tests.up.running import GUARD, alive, call_tool, nmcp_up, pool, time_server, wait_for, write

IMAGE_ONLY = """
    apiVersion: nmcp.nwrx.io/v1
    kind: MCPServer
    metadata: {name: container}
    spec:
      image: mcp/time:latest
    """
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}
BROKEN = """
    apiVersion: nmcp.nwrx.io/v1
    kind: MCPServer
    metadata: {name: broken}
    spec:
      command: [mcp-server-time]
      transport: {type: carrier-pigeon}
    """


def test_a_malformed_manifest_is_reported_by_file_document_and_field_and_the_good_ones_serve(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write(manifests, "good.yaml", pool(), time_server("time"), IMAGE_ONLY)
    bad = write(manifests, "more.yaml", time_server("other"), BROKEN, time_server("lost", pool="nowhere"))
    with nmcp_up(manifests, log_path=tmp_path / "up.log") as up:
        log = up.log()
        assert f"{bad} (document 2): MCPServer broken: spec.transport.type: unsupported value 'carrier-pigeon'" in log

        servers = up.servers()
        assert set(servers) == {"time", "container", "other", "lost"}
        # A server naming a missing pool is shown, with the condition the hooks give it.
        assert (servers["lost"]["phase"], servers["lost"]["reason"]) == ("Degraded", "PoolNotFound")
        assert "pool 'nowhere' not found" in servers["lost"]["message"]
        # An image-only server cannot run as a local process: a clear InvalidSpec, not a hang.
        assert (servers["container"]["phase"], servers["container"]["reason"]) == ("Degraded", "InvalidSpec")
        assert "spec.command" in servers["container"]["message"]
        # ...and a client asking for it gets that reason at once, as a JSON-RPC error.
        answer = requests.post(up.mcp_url("container"), json=INITIALIZE, timeout=GUARD,
                               headers={"Accept": "application/json, text/event-stream"}).json()
        assert answer["error"]["data"]["reason"] == "InvalidSpec"
        assert "the local runtime runs a command" in answer["error"]["message"]

        result = call_tool(up.mcp_url("time"), "get_current_time", {"timezone": "UTC"})
        assert json.loads(result.content[0].text)["timezone"] == "UTC"
        result = call_tool(up.mcp_url("other"), "get_current_time", {"timezone": "UTC"})
        assert not result.is_error


def test_added_edited_and_removed_manifests_apply_while_running(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write(manifests, "pool.yaml", pool())
    first = write(manifests, "first.yaml", time_server("first"))
    with nmcp_up(manifests, log_path=tmp_path / "up.log") as up:
        assert set(up.servers()) == {"first"}

        write(manifests, "second.yaml", time_server("second"))
        wait_for(lambda: "second" in up.servers(), "the added server to be listed")

        up.post("first", "request")
        before = up.wait_phase("first", "Ready")["details"]
        write(manifests, "first.yaml", time_server("first", spec="env: [{name: TZ, value: Europe/Paris}]"))
        # A changed spec takes the old process down, as Metacontroller's Recreate strategy does; with
        # no client session holding the server, the next request starts the new spec.
        wait_for(lambda: up.server("first")["details"].get("generation") == 2 and not alive(before["pid"]),
                 "the edited server's old process to stop")
        up.post("first", "request")
        after = wait_for(lambda: (d := up.server("first")["details"]).get("pid") not in (None, before["pid"])
                         and up.server("first")["phase"] == "Ready" and d, "the edited server to run a new process")

        first.unlink()
        wait_for(lambda: "first" not in up.servers(), "the removed server to go")
        assert not alive(after["pid"])
        assert set(up.servers()) == {"second"}


def test_an_edited_server_that_a_client_holds_a_session_on_is_restarted_with_its_new_spec(tmp_path: Path) -> None:
    def manifest(marker: str) -> str:
        return f"""
            apiVersion: nmcp.nwrx.io/v1
            kind: MCPServer
            metadata: {{name: held}}
            spec:
              command: [{VENV_BIN / "python"}, {ROOT / "tests" / "gateway" / "stdio_server.py"}]
              env: [{{name: MARKER, value: {marker}}}]
            """
    write(tmp_path, "pool.yaml", pool())
    write(tmp_path, "held.yaml", manifest("one"))
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        def details() -> dict:
            return up.server("held")["details"]

        async def main() -> tuple[int, int, int]:
            with anyio.fail_after(GUARD):
                # Legacy SSE: a stateful session the gateway counts (2026 stateless requests hold none).
                async with Client(sse_client(f"{up.base}/api/v1/servers/held/sse"), mode="legacy") as client:
                    first = int((await client.call_tool("pid", {})).content[0].text)
                    write(tmp_path, "held.yaml", manifest("two"))
                    # The client sends nothing: the pool starts the new spec because a session holds it.
                    restarted = await anyio.to_thread.run_sync(lambda: wait_for(
                        lambda: details().get("generation") == 2 and details().get("pid") not in (None, first)
                        and up.server("held")["phase"] == "Ready" and details()["pid"],
                        "the held server to run its new spec"))
                    second = int((await client.call_tool("pid", {})).content[0].text)
                    return first, restarted, second

        first, restarted, second = anyio.run(main)
        assert second == restarted != first
        assert not alive(first)


def test_ctrl_c_stops_every_server_process(tmp_path: Path) -> None:
    write(tmp_path, "servers.yaml", pool(), time_server("a"), time_server("b"), """
        apiVersion: nmcp.nwrx.io/v1
        kind: MCPServer
        metadata: {name: shell}
        spec:
          command: [sh, -c, 'sleep 300 & wait']
        """)
    with nmcp_up(tmp_path, log_path=tmp_path / "up.log") as up:
        for name in ("a", "b", "shell"):
            up.post(name, "request")
        for name in ("a", "b", "shell"):
            up.wait_phase(name, "Ready")
        processes = up.processes()
        assert len(processes) >= 5  # the gunicorn worker, two servers, a shell and its sleep

        status = up.interrupt()
        assert status == 0, up.log()
        wait_for(lambda: not any(alive(p) for p in processes), "every child process to exit")
        assert "stopped 3 server processes" in up.log()
