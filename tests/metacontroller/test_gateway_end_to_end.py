"""End to end with nothing played by the test but the kubelet: the real gateway (gunicorn,
NMCP_RUNTIME=kubernetes, the chart's RBAC), the real Metacontroller and hooks, and the official
MCP SDK client calling a tool on a server that is Idle when the client connects.

The gateway writes the demand annotation, Metacontroller calls the hooks, the pool creates the
Pod, the stand-in kubelet runs mcp-server-time for it, the server's status turns Ready, the
gateway attaches through the API server and the call succeeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from gateway.kube.client import MCPSERVERS
from nmcp.model.resources import ANN_REQUESTED_AT
from tests.kube.test_kube_gateway import tools_and_time
from tests.metacontroller.harness import MetaCluster, StatusSampler, mcppool, mcpserver
from tests.metacontroller.kubelet import Kubelet
from tests.support import ROOT, gunicorn

pytestmark = pytest.mark.kube


@pytest.fixture
def gateway_url(ns: str, gateway_kubeconfig: Path) -> Iterator[str]:
    env = {"NMCP_RUNTIME": "kubernetes", "NMCP_KUBECONFIG": str(gateway_kubeconfig), "NMCP_NAMESPACES": ns,
           "NMCP_KUBE_WRITE_INTERVAL": "1"}
    with gunicorn("nmcp.serve:create_app()", config=str(ROOT / "gateway" / "gunicorn.conf.py"), env=env) as url:
        yield url


def test_a_client_starts_an_idle_server_through_the_gateway(
        mc: MetaCluster, ns: str, kubelet: Kubelet, sampler: StatusSampler, gateway_url: str) -> None:
    mc.kube.apply([mcppool("pool", max_active=2), mcpserver("time", "pool", idle_timeout="60s")], namespace=ns)
    assert sampler.wait_phase("time", "Idle").reason == "NeverRequested"

    tools, text = anyio.run(tools_and_time, f"{gateway_url}/api/v1/servers/time", "http")
    assert "get_current_time" in tools
    assert '"timezone": "UTC"' in text

    server = mc.get(MCPSERVERS, ns, "time")
    assert server is not None and ANN_REQUESTED_AT in server["metadata"]["annotations"]
    (pod,) = kubelet.created(ns, "time")
    assert sampler.latest("time").phase == "Ready"
    assert kubelet.fake.attach_requests, "the gateway never attached to the Pod"
    assert kubelet.alive(ns, "time") == [pod]


def test_an_isolated_server_gives_each_client_a_pod_of_its_own_and_the_next_one_a_warm_spare(
        mc: MetaCluster, ns: str, kubelet: Kubelet, sampler: StatusSampler, gateway_url: str) -> None:
    mc.kube.apply([mcppool("pool", max_active=4, max_idle=1, idle_timeout="1h"),
                   mcpserver("own", "pool", idle_timeout="1h", isolation="session")], namespace=ns)
    sampler.wait_phase("own", "Idle")
    url = f"{gateway_url}/api/v1/servers/own"

    def running() -> list[str]:
        return [r.name for r in kubelet.alive(ns, "own")]

    _, text = anyio.run(tools_and_time, url, "http")
    assert '"timezone": "UTC"' in text
    (first,) = {pod for pod in kubelet.fake.attached_pods if pod.startswith("mcp-own-")}
    # The client's session ended: its Pod goes at once (the idle timeout is an hour); the spare its
    # session asked for runs, attached by no one.
    (spare,) = kubelet.wait(lambda: (alive := running()) and first not in alive and alive,
                            "the first Pod gone and a spare Pod")
    assert spare not in kubelet.fake.attached_pods
    assert (mc.get(MCPSERVERS, ns, "own") or {})["status"]["warmSpares"] == 1

    # The next client is served by the spare (started before it came), and never by the first Pod.
    _, text = anyio.run(tools_and_time, url, "sse")
    assert '"timezone": "UTC"' in text
    assert kubelet.fake.attached_pods[-1] == spare
    assert kubelet.fake.attached_pods.count(first) == 1
    kubelet.wait(lambda: spare not in running(), "the second client's Pod to go")
    assert kubelet.max_alive(ns) <= 3  # a client's Pod, the spare it took over, the next spare
