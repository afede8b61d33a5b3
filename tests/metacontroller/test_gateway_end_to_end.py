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
