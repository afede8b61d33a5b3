"""The gateway under the Helm chart's own gateway RBAC (rendered from helm/nmcp) and nothing else:
everything the runtime does works with it, and a missing permission is named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.kube.attach import AttachConnection
from gateway.runtime import Forbidden
from nmcp.model.resources import ANN_REQUESTED_AT
from tests.kube.conftest import RuntimeFactory
from tests.kube.kube_cluster import Cluster, initialize, render_gateway_rbac, run_server
from tests.kube.kube_objects import annotations, mcpserver
from tests.support.kubeapi import KubeAPI

pytestmark = pytest.mark.kube

def test_the_charts_gateway_role_is_enough(cluster: Cluster, ns: str, gateway_kubeconfig: Path,
                                           make_runtime: RuntimeFactory) -> None:
    run_server(cluster, ns, "time")
    cluster.kube.apply(mcpserver("idle"), namespace=ns)
    runtime = make_runtime((ns,), kubeconfig=gateway_kubeconfig)
    assert runtime.ready() == (True, "")  # list + watch of MCPServers and Pods
    assert sorted(s.server.name for s in runtime.list_servers()) == ["idle", "time"]
    runtime.request(runtime.resolve("idle"))  # patch
    assert ANN_REQUESTED_AT in annotations(cluster.kube, ns, "idle")
    ref = runtime.resolve("time")
    conn = runtime.connect(ref)  # pods/attach
    assert isinstance(conn, AttachConnection)
    try:
        assert initialize(conn)["result"]["serverInfo"]["name"] == "mcp-time"
    finally:
        conn.close()
    assert "time server starting" in list(runtime.logs(ref, follow=False))  # pods/log
    runtime.shutdown(ref)
    assert runtime.ready() == (True, "")


def test_a_missing_permission_is_named(kube: KubeAPI, ns: str, tmp_path: Path, make_runtime: RuntimeFactory) -> None:
    """The chart's Role without `patch`: a request fails naming the verb, resource and namespace."""
    release_ns = kube.create_namespace("release")
    docs = render_gateway_rbac(release_ns, [ns], tmp_path)
    for doc in docs:
        if doc["kind"] == "Role":
            doc["rules"] = [r for r in doc["rules"] if "patch" not in r["verbs"]]
    kube.apply(docs)
    (account,) = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    token = kube.service_account_token(release_ns, account["metadata"]["name"])
    kubeconfig = kube.write_kubeconfig(tmp_path / "no-patch.kubeconfig", token=token)
    kube.apply(mcpserver("time"), namespace=ns)
    runtime = make_runtime((ns,), kubeconfig=kubeconfig)
    with pytest.raises(Forbidden) as err:
        runtime.request(runtime.resolve("time"))
    assert err.value.code == "forbidden"
    assert f"may not patch mcpservers.nmcp.nwrx.io in namespace {ns}" in err.value.message


def test_an_unserved_namespace_shows_in_readiness(kube: KubeAPI, ns: str, gateway_kubeconfig: Path,
                                                  make_runtime: RuntimeFactory) -> None:
    other = kube.create_namespace("other")
    runtime = make_runtime((ns, other), kubeconfig=gateway_kubeconfig, sync_timeout=5)
    ready, reason = runtime.ready()
    assert not ready
    assert f"may not list mcpservers.nmcp.nwrx.io in namespace {other}" in reason


def test_all_namespaces_under_the_charts_cluster_role(kube: KubeAPI, tmp_path: Path,
                                                       make_runtime: RuntimeFactory) -> None:
    release_ns = kube.create_namespace("release")
    docs = render_gateway_rbac(release_ns, ["*"], tmp_path, release=release_ns)  # unique cluster-wide names
    # The role for every namespace, and the TokenReview one.
    assert sorted(doc["kind"] for doc in docs) == ["ClusterRole"] * 2 + ["ClusterRoleBinding"] * 2 + ["ServiceAccount"]
    kube.apply(docs)
    (account,) = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    token = kube.service_account_token(release_ns, account["metadata"]["name"])
    kubeconfig = kube.write_kubeconfig(tmp_path / "all.kubeconfig", token=token)
    one, two = kube.create_namespace("team"), kube.create_namespace("team")
    kube.apply(mcpserver("a"), namespace=one)
    kube.apply(mcpserver("b"), namespace=two)
    runtime = make_runtime(None, kubeconfig=kubeconfig)
    assert runtime.ready() == (True, "")
    refs = {str(state.ref) for state in runtime.list_servers()}
    assert {f"{one}/a", f"{two}/b"} <= refs
    runtime.request(runtime.resolve("b"))
    assert ANN_REQUESTED_AT in annotations(kube, two, "b")
