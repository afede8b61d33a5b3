"""End to end: `gunicorn nmcp.serve:create_app()` with NMCP_RUNTIME=kubernetes, the chart's gateway
RBAC, the real API server and a fake kubelet, driven by the official MCP SDK client.

The test plays Metacontroller and the kubelet: when the gateway's requested-at annotation lands
on the Idle server, it creates the Pod, "runs" it and writes the Ready status. The client's
first request holds until then, then talks MCP to mcp-server-time over pods/attach.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import requests
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from nmcp.model.resources import ANN_REQUESTED_AT
from tests.kube.kube_cluster import Cluster, patch_pod_status, pod_status, run_server, start_pod
from tests.kube.kube_objects import annotations, mcpserver, set_status
from tests.support import ROOT, gunicorn, wait_for
from tests.support.kubeapi import KubeAPI

pytestmark = pytest.mark.kube


@pytest.fixture
def gateway(ns: str, gateway_kubeconfig: Path) -> Iterator[str]:
    env = {"NMCP_RUNTIME": "kubernetes", "NMCP_KUBECONFIG": str(gateway_kubeconfig), "NMCP_NAMESPACES": ns}
    with gunicorn("nmcp.serve:create_app()", config=str(ROOT / "gateway" / "gunicorn.conf.py"), env=env) as url:
        yield url


def metacontroller(cluster: Cluster, ns: str, name: str, seen: dict[str, float]) -> None:
    """Start the server once the gateway asks for it (what the hooks, Metacontroller and a kubelet do)."""
    deadline = time.monotonic() + 60
    while ANN_REQUESTED_AT not in annotations(cluster.kube, ns, name):
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    seen["requested"] = time.monotonic()
    set_status(cluster.kube, ns, name, phase="Requested")
    start_pod(cluster, ns, name)


def readyz_turns(gateway: str, status: int) -> None:
    wait_for(lambda: requests.get(f"{gateway}/readyz", timeout=10).status_code == status,
             f"/readyz to answer {status}", 30)


async def tools_and_time(url: str, transport: str) -> tuple[list[str], str]:
    streams = sse_client(url + "/sse") if transport == "sse" else streamable_http_client(url + "/mcp")
    async with Client(streams, mode="legacy") as client:
        tools = await client.list_tools()
        answer = await client.call_tool("get_current_time", {"timezone": "UTC"})
        return [tool.name for tool in tools.tools], answer.content[0].text  # type: ignore[union-attr]


def test_scale_from_zero_through_the_gateway(kube: KubeAPI, cluster: Cluster, ns: str, gateway: str) -> None:
    kube.apply(mcpserver("time"), namespace=ns)
    listed = requests.get(f"{gateway}/api/v1/servers", timeout=10).json()
    assert "time" in str(listed)
    seen: dict[str, float] = {}
    helper = threading.Thread(target=metacontroller, args=(cluster, ns, "time", seen), daemon=True)
    helper.start()
    tools, text = anyio.run(tools_and_time, f"{gateway}/api/v1/servers/time", "http")
    assert "get_current_time" in tools
    assert '"timezone": "UTC"' in text
    assert "requested" in seen
    # A second client, other transport, same upstream process.
    tools, text = anyio.run(tools_and_time, f"{gateway}/api/v1/namespaces/{ns}/servers/time", "sse")
    assert '"timezone": "UTC"' in text
    assert len([q for q in cluster.kubelet.attach_requests]) == 1  # one attach serves both clients
    assert requests.get(f"{gateway}/readyz", timeout=10).status_code == 200
    logs = requests.get(f"{gateway}/api/v1/servers/time/logs", timeout=10)
    assert "time server starting" in logs.text


def test_a_dead_attach_shows_in_readiness(kube: KubeAPI, cluster: Cluster, ns: str, gateway: str) -> None:
    pod = run_server(cluster, ns, "time")
    tools, _ = anyio.run(tools_and_time, f"{gateway}/api/v1/servers/time", "http")
    assert "get_current_time" in tools
    cluster.kubelet.containers[(ns, pod)].proc.kill()  # the container dies; the Pod still says Running
    readyz_turns(gateway, 503)
    assert "attach to Pod" in requests.get(f"{gateway}/readyz", timeout=10).text
    set_status(kube, ns, "time", phase="Degraded")  # the hook notices the crash
    readyz_turns(gateway, 200)


def test_the_next_request_after_a_container_restart_reattaches(kube: KubeAPI, cluster: Cluster, ns: str,
                                                               gateway: str) -> None:
    pod = run_server(cluster, ns, "time")
    url = f"{gateway}/api/v1/servers/time"
    assert '"timezone": "UTC"' in anyio.run(tools_and_time, url, "http")[1]
    patch_pod_status(kube, ns, pod, pod_status(restarts=1))  # what the kubelet reports...
    cluster.kubelet.restart(ns, pod)  # ...when the container restarts
    readyz_turns(gateway, 503)
    # The next client: the gateway attaches to the new container and initializes it again.
    assert '"timezone": "UTC"' in anyio.run(tools_and_time, url, "http")[1]
    assert len(cluster.kubelet.attach_requests) == 2
    assert requests.get(f"{gateway}/readyz", timeout=10).status_code == 200
