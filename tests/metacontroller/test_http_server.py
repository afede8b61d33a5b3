"""An HTTP-transport server under the real Metacontroller: a Pod and a Service, Ready, and the
gateway's endpoint for it. Without a network plugin nothing can connect to the Service, so the
test checks what can be checked: the Service selects the Pod on the right port, and the gateway
resolves the server to that Service's cluster DNS name."""

from __future__ import annotations

import pytest

from gateway.kube.client import PODS, Resource
from gateway.runtime import HttpEndpoint
from nmcp.model.naming import child_name
from nmcp.model.resources import LABEL_SERVER
from tests.metacontroller.harness import STEP_TIMEOUT, Gateway, MetaCluster, StatusSampler, mcppool, mcpserver
from tests.metacontroller.kubelet import Kubelet
from tests.support import wait_for

pytestmark = pytest.mark.kube

SERVICES = Resource("", "v1", "services")
PORT = 8080


def test_an_http_server_gets_a_pod_and_a_service(
        mc: MetaCluster, ns: str, kubelet: Kubelet, sampler: StatusSampler, demand: Gateway) -> None:
    transport = {"type": "streamable-http", "port": PORT, "path": "/mcp"}
    mc.kube.apply([mcppool("pool", max_active=2), mcpserver("web", "pool", idle_timeout="60s", transport=transport)],
                  namespace=ns)
    sampler.wait_phase("web", "Idle")
    ref = demand.ref(ns, "web")
    demand.runtime.request(ref)
    state = demand.runtime.wait_ready(ref, STEP_TIMEOUT)  # the gateway's own wait, woken by its watch
    assert state.phase == "Ready"
    (pod_record,) = kubelet.created(ns, "web")

    name = child_name("web")
    service = wait_for(lambda: mc.get(SERVICES, ns, name), f"Service {ns}/{name}", 30)
    pod = mc.get(PODS, ns, pod_record.name)
    assert pod is not None
    assert service["spec"]["selector"] == {LABEL_SERVER: "web"}
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in service["spec"]["selector"].items())
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["protocol"]) == (PORT, PORT, "TCP")
    (container,) = pod["spec"]["containers"]
    assert [p["containerPort"] for p in container.get("ports", [])] == [PORT]
    assert not container.get("stdin"), "an HTTP server's container is not attached to"

    endpoint = demand.runtime.connect(ref)
    assert isinstance(endpoint, HttpEndpoint)
    assert endpoint.url == f"http://{name}.{ns}.svc:{PORT}/mcp"
    assert endpoint.transport == "streamable-http"
