"""Finding the cluster: kubeconfig users (token, client certificate), KUBECONFIG lists and
contexts, the in-cluster service account with a rotating token, and the REQUESTS_CA_BUNDLE
pitfall — each checked by talking to the real API server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.config import Config, ConfigError
from gateway.kube.client import MCPSERVERS, KubeClient, KubeError
from gateway.kube.config import ClusterConfigError, from_kubeconfig, in_cluster, load_cluster
from gateway.runtimes.kubernetes import create_runtime
from tests.kube.kube_objects import mcpserver
from tests.support.kubeapi import KubeAPI

pytestmark = pytest.mark.kube


def grant_read(kube: KubeAPI, ns: str, user: str) -> None:
    """Let `user` read MCPServers in `ns` (RBAC), nothing more."""
    kube.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": f"read-{user}"},
         "rules": [{"apiGroups": ["nmcp.nwrx.io"], "resources": ["mcpservers"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": f"read-{user}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"read-{user}"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
    ], namespace=ns)


def names(client: KubeClient, ns: str) -> list[str]:
    return [item["metadata"]["name"] for item in client.list(MCPSERVERS, ns)["items"]]


def test_client_certificate_user(kube: KubeAPI, ns: str, tmp_path: Path) -> None:
    kube.apply(mcpserver("time"), namespace=ns)
    grant_read(kube, ns, "cert-user")
    path = kube.write_kubeconfig(tmp_path / "cert.kubeconfig", client_cert=kube.client_certificate("cert-user"),
                                 namespace=ns)
    cluster = from_kubeconfig([path])
    assert cluster.namespace == ns and cluster.client_cert is not None and cluster.token is None
    assert names(KubeClient(cluster), ns) == ["time"]


def test_kubeconfig_list_context_and_token_file(kube: KubeAPI, ns: str, tmp_path: Path) -> None:
    kube.apply(mcpserver("time"), namespace=ns)
    grant_read(kube, ns, "alice")
    # Two files as KUBECONFIG lists them: the first names the current context, the second holds it,
    # with a user whose token is in a file relative to the kubeconfig.
    (tmp_path / "alice.token").write_text(kube.static_tokens["alice"] + "\n")
    second = yaml.safe_load(kube.write_kubeconfig(tmp_path / "x", token="unused").read_text())
    second["users"][0]["user"] = {"tokenFile": "alice.token"}
    second["contexts"][0]["name"] = "alice"
    second["contexts"][0]["context"]["namespace"] = ns
    second.pop("current-context")
    (tmp_path / "second").write_text(yaml.safe_dump(second))
    (tmp_path / "first").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "alice"}))
    env = {"KUBECONFIG": f"{tmp_path / 'first'}:{tmp_path / 'second'}", "HOME": str(tmp_path)}
    cluster = load_cluster(env)
    assert cluster.namespace == ns
    assert names(KubeClient(cluster), ns) == ["time"]


def test_in_cluster_token_is_reread_when_it_rotates(kube: KubeAPI, ns: str, tmp_path: Path) -> None:
    kube.apply(mcpserver("time"), namespace=ns)
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "ca.crt").write_bytes(kube.ca_file.read_bytes())
    (account / "namespace").write_text(ns)
    (account / "token").write_text("expired-token")
    cluster = in_cluster({"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kube.port)}, account)
    assert (cluster.namespace, cluster.server) == (ns, kube.base_url)
    client = KubeClient(cluster)
    with pytest.raises(KubeError, match="did not accept the gateway's credentials"):
        client.list(MCPSERVERS, ns)
    # The kubelet swaps the projected token file; the next call uses the new token, no restart.
    token = kube.service_account_token(ns, "gateway")
    grant_read(kube, ns, f"system:serviceaccount:{ns}:gateway")
    (account / "token.new").write_text(token)
    (account / "token.new").rename(account / "token")
    assert names(client, ns) == ["time"]


def test_the_cluster_ca_wins_over_requests_ca_bundle(kube: KubeAPI, ns: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """REQUESTS_CA_BUNDLE (set on these machines) must not replace the cluster's CA (psf/requests#3829)."""
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(kube.client_certificate("nobody")[0].read_bytes())  # a certificate, but no CA of ours
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other_ca))
    client = KubeClient(from_kubeconfig([kube.kubeconfig]))
    assert isinstance(names(client, ns), list)


def test_unusable_configurations_are_named(kube: KubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClusterConfigError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster({}, tmp_path)
    with pytest.raises(ClusterConfigError, match="no Kubernetes configuration"):
        load_cluster({"HOME": str(tmp_path)})
    exec_user = tmp_path / "exec.kubeconfig"
    exec_user.write_text(yaml.safe_dump({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"exec": {"command": "aws"}}}]}))
    with pytest.raises(ClusterConfigError, match="exec plugin"):
        from_kubeconfig([exec_user])
    config = Config.from_env({"NMCP_RUNTIME": "kubernetes", "NMCP_KUBECONFIG": str(kube.kubeconfig),
                              "NMCP_KUBE_CONTEXT": "nope"})
    with pytest.raises(ConfigError, match=r"kubernetes runtime: .*context 'nope' not found"):
        create_runtime(config)
