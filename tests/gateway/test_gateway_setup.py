"""Starting the gateway: the `nmcp gateway` command, manifests that are wrong, the runtime it
runs (`local` is `nmcp up`'s, pools included), and `isolation: session`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import anyio
import requests

from tests.gateway.clients import HTTP, SSE, connect
from tests.gateway.conftest import Gateway, run_gateway, server, write_manifests
from tests.gateway.test_gateway_http_api import INIT, in_phase, open_session, post
from tests.gateway.test_gateway_load import settle, text_of
from tests.support import ROOT, VENV_BIN, free_port, wait_for, wait_http


def test_nmcp_gateway_serves_the_manifests_it_is_given(tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path / "m", [server("time", [str(VENV_BIN / "mcp-server-time")])])
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "nmcp"), "gateway", "--bind", f"127.0.0.1:{port}", "-f", str(manifests),
                             ], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, proc)
        servers = requests.get(f"http://127.0.0.1:{port}/api/v1/servers", timeout=10).json()["servers"]
        assert [s["name"] for s in servers] == ["time"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_a_bad_document_is_named_and_the_good_ones_are_served(tmp_path: Path) -> None:
    # One local runtime: a bad document no longer stops the gateway (it did before nmcp up's
    # runtime became the local one); it is logged with its file and field, the others run.
    docs = [{"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPServer", "metadata": {"name": "x"},
             "spec": {"command": ["x"], "transport": {"type": "carrier-pigeon"}}},
            server("time", [str(VENV_BIN / "mcp-server-time")])]
    manifests = write_manifests(tmp_path, docs)
    with run_gateway(manifests) as gateway:
        listed = requests.get(f"{gateway.url}/api/v1/servers", timeout=10).json()["servers"]
        assert [s["name"] for s in listed] == ["time"]
        assert f"{manifests} (document 1): MCPServer x: spec.transport.type" in gateway.log()

        async def main() -> list[str]:
            async with connect(HTTP, gateway, "time") as client:
                return [t.name for t in (await client.list_tools()).tools]

        assert "get_current_time" in anyio.run(main)


def test_an_unknown_runtime_stops_the_gateway_naming_the_choices(tmp_path: Path) -> None:
    done = subprocess.run([str(VENV_BIN / "gunicorn"), "--config", str(ROOT / "gateway" / "gunicorn.conf.py")],
                          env={**os.environ, "NMCP_RUNTIME": "tests.gateway.factory:create_runtime",
                               "NMCP_MANIFESTS": str(write_manifests(tmp_path, [])),
                               "NMCP_BIND": f"127.0.0.1:{free_port()}"},
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "NMCP_RUNTIME: expected one of local, kubernetes, got 'tests.gateway.factory:create_runtime'" \
        in done.stdout + done.stderr


def test_nmcp_gateway_on_the_examples_enforces_their_pool(tmp_path: Path) -> None:
    """examples/local (maxActive 4) plus three more servers: never more than 4 run, and a fifth
    client waits with the reason it gets on Kubernetes, until one of the four stops."""
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples" / "local", examples)
    time_yaml = (examples / "time.yaml").read_text()
    for name in ("time-2", "time-3", "time-4"):
        (examples / f"{name}.yaml").write_text(time_yaml.replace("name: time", f"name: {name}"))
    # The last one is held for its own start timeout while the pool is full, then refused.
    (examples / "time-4.yaml").write_text(time_yaml.replace("name: time", "name: time-4") + "  startTimeout: 10s\n")
    names = ["everything", "time", "time-2", "time-3", "time-4"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen([str(VENV_BIN / "nmcp"), "gateway", "--runtime", "local", "--bind", f"127.0.0.1:{port}",
                             "-f", str(examples)], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_http(f"{url}/readyz", 30, proc)
        gateway = Gateway(url, proc)
        sessions = {name: open_session(gateway, name) for name in names[:4]}  # each session holds its server
        assert all(in_phase(gateway, name, "Ready") for name in names[:4])
        refused = post(gateway, names[4], INIT)  # held for the start timeout, then a JSON-RPC error
        assert "Mcp-Session-Id" not in refused.headers
        error = refused.json()["error"]
        assert error["data"]["reason"] == "WaitingForCapacity"
        assert "4/4" in error["message"]
        states = requests.get(f"{url}/api/v1/servers", timeout=10).json()["servers"]
        assert sum(s["phase"] in ("Ready", "Starting") for s in states) == 4

        requests.delete(gateway.mcp("time"), headers={"Mcp-Session-Id": sessions.pop("time")}, timeout=10)
        requests.post(gateway.api("time") + "/shutdown", timeout=10)
        wait_for(lambda: in_phase(gateway, "time", "Idle"), "time to stop")
        open_session(gateway, names[4])
        assert in_phase(gateway, names[4], "Ready")
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        log.close()
        print((tmp_path / "gateway.log").read_text(errors="replace")[-5000:])


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
    # idleTimeout is 5s: with its last session gone, the server stops.
    assert settle(lambda: requests.get(gateway.api("brief"), timeout=10).json()["phase"] == "Idle")
    assert not Path(f"/proc/{first}").exists()
    second = anyio.run(pid_of_brief)
    assert second != first
