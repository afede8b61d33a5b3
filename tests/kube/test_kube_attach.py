"""stdio over `pods/attach`, through the real API server, to a fake kubelet in front of a real
MCP server process (`mcp-server-time`): MCP spoken end to end over the channel framing.

The API server proxies attach and log requests of Pods bound to our fake Node to the fake
kubelet (tests/kube/fakekubelet.py), exactly as it would to a real one.
"""

from __future__ import annotations

import pytest

from gateway.kube.attach import AttachConnection
from gateway.runtime import ServerRef
from gateway.runtimes.kubernetes import KubernetesRuntime
from tests.kube.conftest import RuntimeFactory
from tests.kube.kube_cluster import (
    Cluster,
    call,
    current_time,
    initialize,
    patch_pod_status,
    pod_status,
    receive,
    run_server,
)
from tests.kube.kube_objects import set_status
from tests.support import wait_for

pytestmark = pytest.mark.kube


def ready_runtime(make_runtime: RuntimeFactory, ns: str,
                  ping_interval: float = 5.0) -> tuple[KubernetesRuntime, ServerRef]:
    # Pinging through the tests, but not so often that a loaded machine's pause looks like a dead attach.
    runtime = make_runtime((ns,), ping_interval=ping_interval)
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
        wait_for(lambda: conn.reattached == 1, "the attach to reconnect", 30)
        # No new initialize: the same (already initialized) process answers.
        assert '"timezone": "UTC"' in current_time(conn, 2)
        assert conn.alive
        assert runtime.ready() == (True, "")
    finally:
        conn.close()


def test_a_silent_attach_is_found_by_its_pings_and_replaced(cluster: Cluster, ns: str,
                                                           make_runtime: RuntimeFactory) -> None:
    run_server(cluster, ns)
    runtime, ref = ready_runtime(make_runtime, ns, ping_interval=1.0)
    conn = runtime.connect(ref)
    assert isinstance(conn, AttachConnection)
    try:
        initialize(conn)
        assert cluster.kubelet.freeze_attaches() == 1  # open, but nothing answers: no FIN will come
        wait_for(lambda: conn.reattached >= 1, "the pings to give up on the silent attach", 30)
        assert '"timezone": "UTC"' in current_time(conn, 2)
        assert conn.alive
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
    assert receive(conn, "end of the stream") is None  # the session sees the end: no zombie
    assert receive(conn, "end of the stream") is None  # and keeps seeing it
    assert not conn.alive
    with pytest.raises(ConnectionError, match="ended"):
        conn.send(b'{"jsonrpc": "2.0", "id": 9, "method": "ping"}')
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
    assert receive(conn, "end of the stream") is None
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
