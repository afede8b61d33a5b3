"""Starting the gateway: the `nmcp gateway` command, manifests that are wrong, runtime factories,
and `isolation: session`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio
import requests
import yaml

from tests.gateway.clients import HTTP, SSE, connect
from tests.gateway.conftest import Gateway, run_gateway, server, write_manifests
from tests.gateway.test_gateway_load import settle, text_of
from tests.support import ROOT, VENV_BIN, free_port, wait_http


def test_nmcp_gateway_serves_the_manifests_it_is_given(tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path / "m", [server("time", [str(VENV_BIN / "mcp-server-time")])])
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "nmcp"), "gateway", "--bind", f"127.0.0.1:{port}", "-f", str(manifests),
                             "--start-timeout", "30"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, proc)
        servers = requests.get(f"http://127.0.0.1:{port}/api/v1/servers", timeout=10).json()["servers"]
        assert [s["name"] for s in servers] == ["time"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_invalid_manifests_stop_the_gateway_with_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPServer", "metadata": {"name": "x"},
                                   "spec": {"command": ["x"], "transport": {"type": "carrier-pigeon"}}}))
    done = subprocess.run([str(VENV_BIN / "gunicorn"), "--config", str(ROOT / "gateway" / "gunicorn.conf.py")],
                          env={**os.environ, "NMCP_MANIFESTS": str(bad), "NMCP_BIND": f"127.0.0.1:{free_port()}"},
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert f"{bad} (document 1): MCPServer x: spec.transport.type" in done.stdout + done.stderr


def test_a_runtime_factory_can_be_named_by_module_and_function(tmp_path: Path) -> None:
    with run_gateway(write_manifests(tmp_path, []), NMCP_RUNTIME="tests.gateway.runtime_factory:create_runtime") \
            as gateway:
        listed = requests.get(f"{gateway.url}/api/v1/namespaces/tools/servers", timeout=10).json()["servers"]
        assert [s["name"] for s in listed] == ["clock"]

        async def main() -> list[str]:
            async with connect(HTTP, gateway, "clock") as client:
                return [t.name for t in (await client.list_tools()).tools]

        assert "get_current_time" in anyio.run(main)


def test_isolated_sessions_get_their_own_process_which_ends_with_them(gateway: Gateway) -> None:
    async def main() -> tuple[str, str, str]:
        async with connect(SSE, gateway, "isolated") as one, connect(HTTP, gateway, "isolated") as two:
            first, second = text_of(await one.call_tool("pid", {})), text_of(await two.call_tool("pid", {}))
            again = text_of(await one.call_tool("pid", {}))
        return first, second, again

    first, second, again = anyio.run(main)
    assert first != second
    assert again == first
    for pid in (first, second):
        assert settle(lambda pid=pid: not Path(f"/proc/{pid}").exists()), f"process {pid} outlived its session"


def test_a_name_in_two_namespaces_needs_the_namespaced_route(tmp_path: Path) -> None:
    docs = []
    for namespace in ("team-a", "team-b"):
        doc = server("time", [str(VENV_BIN / "mcp-server-time")])
        doc["metadata"] = {"name": "time", "namespace": namespace}
        docs.append(doc)
    with run_gateway(write_manifests(tmp_path, docs)) as gateway:
        bare = requests.get(gateway.api("time"), timeout=10)
        assert bare.status_code == 409
        assert bare.json()["error"]["code"] == "ambiguous_server"
        assert requests.post(gateway.mcp("time"), json={}, timeout=10).status_code == 409
        scoped = requests.get(f"{gateway.url}/api/v1/namespaces/team-b/servers/time", timeout=10)
        assert scoped.status_code == 200
        assert scoped.json()["namespace"] == "team-b"
        listed = requests.get(f"{gateway.url}/api/v1/namespaces/team-a/servers", timeout=10).json()["servers"]
        assert [(s["namespace"], s["name"]) for s in listed] == [("team-a", "time")]


def test_an_idle_server_is_stopped_and_started_again_on_demand(gateway: Gateway) -> None:
    async def pid_of_brief() -> str:
        async with connect(SSE, gateway, "brief") as client:
            return text_of(await client.call_tool("pid", {}))

    first = anyio.run(pid_of_brief)
    # idleTimeout is 1s: with its last session gone, the server stops (the check runs every 5s).
    assert settle(lambda: requests.get(gateway.api("brief"), timeout=10).json()["phase"] == "Idle")
    assert not Path(f"/proc/{first}").exists()
    second = anyio.run(pid_of_brief)
    assert second != first
