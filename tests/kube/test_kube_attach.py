"""stdio over `pods/attach`, through the real API server, to a fake kubelet in front of a real
MCP server process (`mcp-server-time`): MCP spoken end to end over the channel framing.

The API server proxies attach and log requests of Pods bound to our fake Node to the fake
kubelet (tests/kube/fakekubelet.py), exactly as it would to a real one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.kube.attach import AttachConnection
from gateway.runtime import ServerRef
from gateway.runtimes.kubernetes import KubernetesRuntime
from nmcp.naming import child_name
from tests.kube.conftest import RuntimeFactory
from tests.kube.fakekubelet import FakeKubelet
from tests.kube.kube_objects import eventually, mcpserver, set_status
from tests.support import VENV_BIN
from tests.support.kubeapi import KubeAPI

pytestmark = pytest.mark.kube

SERVER_ARGV = ["sh", "-c", f"echo 'time server starting' >&2; exec {VENV_BIN / 'mcp-server-time'}"]


@dataclass
class Cluster:
    kube: KubeAPI
    kubelet: FakeKubelet
    node: str


def make_kubelet(kube: KubeAPI, protocols: tuple[str, ...]) -> Iterator[Cluster]:
    cert, key = kube.serving_certificate("kubelet")
    kubelet = FakeKubelet(cert, key, protocols)
    node = f"fake-node-{kubelet.port}"
    session = kube.session()
    resp = session.post(f"{kube.base_url}/api/v1/nodes", json={"metadata": {"name": node}}, timeout=10)
    resp.raise_for_status()
    status = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                         "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}}}}
    session.patch(f"{kube.base_url}/api/v1/nodes/{node}/status", data=json.dumps(status),
                  headers={"Content-Type": "application/merge-patch+json"}, timeout=10).raise_for_status()
    try:
        yield Cluster(kube, kubelet, node)
    finally:
        kubelet.close()
        session.delete(f"{kube.base_url}/api/v1/nodes/{node}", timeout=10)


@pytest.fixture
def cluster(kube: KubeAPI) -> Iterator[Cluster]:
    yield from make_kubelet(kube, ("v5.channel.k8s.io", "v4.channel.k8s.io"))


@pytest.fixture
def cluster_v4(kube: KubeAPI) -> Iterator[Cluster]:
    """A kubelet of the API server's own era (1.20): v4 only."""
    yield from make_kubelet(kube, ("v4.channel.k8s.io",))


def pod_status(restarts: int = 0) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
        {"name": "server", "ready": True, "restartCount": restarts, "image": "mcp/time:1", "imageID": "mcp/time@sha",
         "state": {"running": {"startedAt": now}}}]}


def run_server(cluster: Cluster, ns: str, name: str = "time") -> str:
    """An MCPServer that is Ready, its Pod 'running' on the fake kubelet: what the hooks and a kubelet make."""
    kube = cluster.kube
    pod = child_name(name)
    kube.apply(mcpserver(name), namespace=ns)
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "labels": {"nmcp.nwrx.io/server": name}},
                "spec": {"nodeName": cluster.node,
                         "containers": [{"name": "server", "image": "mcp/time:1", "stdin": True}]}}, namespace=ns)
    patch_pod_status(kube, ns, pod, pod_status())
    cluster.kubelet.add(ns, pod, SERVER_ARGV)
    set_status(kube, ns, name, phase="Ready", podName=pod)
    return pod


def patch_pod_status(kube: KubeAPI, ns: str, pod: str, status: dict[str, Any]) -> None:
    kube.session().patch(f"{kube.base_url}/api/v1/namespaces/{ns}/pods/{pod}/status",
                         data=json.dumps({"status": status}), headers={"Content-Type": "application/merge-patch+json"},
                         timeout=10).raise_for_status()


def call(conn: AttachConnection, ident: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON-RPC request over the attach; the answer with the same id (notifications skipped)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": method}
    if params is not None:
        message["params"] = params
    conn.send(json.dumps(message).encode())
    while True:
        line = conn.receive()
        assert line is not None, f"the attach ended: {conn.ended}"
        answer = json.loads(line)
        if answer.get("id") == ident:
            return answer


def initialize(conn: AttachConnection) -> dict[str, Any]:
    answer = call(conn, 1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                          "clientInfo": {"name": "nmcp-test", "version": "1"}})
    conn.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())
    return answer


def current_time(conn: AttachConnection, ident: int) -> str:
    answer = call(conn, ident, "tools/call", {"name": "get_current_time", "arguments": {"timezone": "UTC"}})
    assert "result" in answer, answer
    return answer["result"]["content"][0]["text"]


def ready_runtime(make_runtime: RuntimeFactory, ns: str) -> tuple[KubernetesRuntime, ServerRef]:
    runtime = make_runtime((ns,), ping_interval=1.0)
    ref = runtime.resolve("time")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Ready", 30)
    return runtime, ref


def test_mcp_over_attach_through_the_api_server(cluster: Cluster, ns: str, make_runtime: RuntimeFactory) -> None:
    run_server(cluster, ns)
    runtime, ref = ready_runtime(make_runtime, ns)
    conn = runtime.connect(ref)
    assert isinstance(conn, AttachConnection)
    try:
        assert conn.protocol == "v5.channel.k8s.io"
        answer = initialize(conn)
        assert answer["result"]["serverInfo"]["name"] == "mcp-time"
        tools = call(conn, 2, "tools/list")["result"]["tools"]
        assert "get_current_time" in {tool["name"] for tool in tools}
        assert '"timezone": "UTC"' in current_time(conn, 3)
        # The API server forwarded the attach of container `server` with all three streams.
        query = cluster.kubelet.attach_requests[-1]
        assert (query.get("input"), query.get("output"), query.get("error")) == (["1"], ["1"], ["1"])
        assert runtime.ready() == (True, "")
    finally:
        conn.close()


def test_falls_back_to_v4_with_an_older_kubelet(cluster_v4: Cluster, ns: str, make_runtime: RuntimeFactory) -> None:
    run_server(cluster_v4, ns)
    runtime, ref = ready_runtime(make_runtime, ns)
    conn = runtime.connect(ref)
    assert isinstance(conn, AttachConnection)
    try:
        assert conn.protocol == "v4.channel.k8s.io"
        assert initialize(conn)["result"]["serverInfo"]["name"] == "mcp-time"
        assert '"timezone": "UTC"' in current_time(conn, 2)
    finally:
        conn.close()


def test_a_dropped_attach_reattaches_to_the_same_process(cluster: Cluster, ns: str,
                                                        make_runtime: RuntimeFactory) -> None:
    run_server(cluster, ns)
    runtime, ref = ready_runtime(make_runtime, ns)
    conn = runtime.connect(ref)
    assert isinstance(conn, AttachConnection)
    try:
        initialize(conn)
        assert cluster.kubelet.drop_attaches() == 1
        eventually(lambda: conn.reattached == 1)
        # No new initialize: the same (already initialized) process answers.
        assert '"timezone": "UTC"' in current_time(conn, 2)
        assert conn.alive
        assert runtime.ready() == (True, "")
    finally:
        conn.close()


def test_a_restarted_container_ends_the_stream_and_is_reported(cluster: Cluster, ns: str,
                                                               make_runtime: RuntimeFactory) -> None:
    pod = run_server(cluster, ns)
    runtime, ref = ready_runtime(make_runtime, ns)
    conn = runtime.connect(ref)
    assert isinstance(conn, AttachConnection)
    initialize(conn)
    patch_pod_status(cluster.kube, ns, pod, pod_status(restarts=1))  # what the kubelet reports...
    cluster.kubelet.restart(ns, pod)  # ...when the container restarts
    assert conn.receive() is None  # the session sees the end: no zombie
    assert not conn.alive
    ready, reason = runtime.ready()
    assert not ready
    assert f"attach to Pod {ns}/{pod} ended" in reason
    # The bridge connects again: a new attach, to the new process, which needs its own initialize.
    again = runtime.connect(ref)
    assert isinstance(again, AttachConnection)
    try:
        assert initialize(again)["result"]["serverInfo"]["name"] == "mcp-time"
        assert '"timezone": "UTC"' in current_time(again, 2)
        assert runtime.ready() == (True, "")
    finally:
        again.close()


def test_container_exit_is_reported_with_its_code(cluster: Cluster, ns: str, make_runtime: RuntimeFactory) -> None:
    pod = run_server(cluster, ns)
    runtime, ref = ready_runtime(make_runtime, ns)
    conn = runtime.connect(ref)
    assert isinstance(conn, AttachConnection)
    initialize(conn)
    cluster.kubelet.containers[(ns, pod)].proc.kill()
    assert conn.receive() is None
    assert conn.ended is not None and "exit code" in conn.ended
    assert not runtime.ready()[0]
    set_status(cluster.kube, ns, "time", phase="Degraded")  # the hook sees the crash: no longer a live attach
    assert runtime.store.wait_for(lambda: runtime.ready()[0], 30)


def test_logs_stream_from_pods_log_without_protocol_lines(cluster: Cluster, ns: str,
                                                         make_runtime: RuntimeFactory) -> None:
    run_server(cluster, ns)
    runtime, ref = ready_runtime(make_runtime, ns)
    conn = runtime.connect(ref)
    assert isinstance(conn, AttachConnection)
    try:
        initialize(conn)  # stdout now holds JSON-RPC lines, which the container log includes
        lines = list(runtime.logs(ref, follow=False))
        assert "time server starting" in lines
        assert not [line for line in lines if '"jsonrpc"' in line]
        followed = runtime.logs(ref, follow=True)
        assert next(iter(followed)) == "time server starting"
        followed.close()  # type: ignore[attr-defined]
    finally:
        conn.close()
