"""Fixtures of the Kubernetes tests: the real API server (tests/support/kubeapi.py) with the CRDs,
a fresh namespace per test, and Kubernetes runtimes that are always closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.kube.client import KubeClient
from gateway.kube.config import from_kubeconfig
from gateway.runtimes.kubernetes import KubernetesRuntime, KubeSettings
from tests.kube.kube_cluster import Cluster, make_kubelet, render_gateway_rbac
from tests.support.kubeapi import KubeAPI, kube_api  # noqa: F401  (kube_api is a fixture, registered by import)

RuntimeFactory = Callable[..., KubernetesRuntime]


@pytest.fixture(scope="session")
def kube(kube_api: KubeAPI) -> KubeAPI:  # noqa: F811
    """The API server with the CRDs installed."""
    kube_api.install_crds()
    return kube_api


@pytest.fixture
def ns(kube: KubeAPI) -> str:
    return kube.create_namespace("rt")


@pytest.fixture
def make_runtime(kube: KubeAPI, tmp_path: Path) -> Iterator[RuntimeFactory]:
    """Build and start KubernetesRuntimes (admin unless a kubeconfig is given); all closed at the end."""
    made: list[KubernetesRuntime] = []

    def make(namespaces: tuple[str, ...] | None, *, kubeconfig: Path | None = None, start: bool = True,
             **settings: float) -> KubernetesRuntime:
        cluster = from_kubeconfig([kubeconfig or kube.kubeconfig])
        runtime = KubernetesRuntime(KubeClient(cluster), KubeSettings(namespaces=namespaces, **settings))
        made.append(runtime)
        if start:
            runtime.start()
        return runtime

    yield make
    for runtime in made:
        runtime.close()


@pytest.fixture
def cluster(kube: KubeAPI) -> Iterator[Cluster]:
    """A fake kubelet (v5 and v4 channel protocols) behind a Node of the API server."""
    yield from make_kubelet(kube, ("v5.channel.k8s.io", "v4.channel.k8s.io"))


@pytest.fixture
def cluster_v4(kube: KubeAPI) -> Iterator[Cluster]:
    """A kubelet of the API server's own era (1.20): v4 only."""
    yield from make_kubelet(kube, ("v4.channel.k8s.io",))


@pytest.fixture
def gateway_kubeconfig(kube: KubeAPI, ns: str, tmp_path: Path) -> Path:
    """A kubeconfig holding a token of the chart's gateway ServiceAccount, bound to the chart's Role in `ns`."""
    release_ns = kube.create_namespace("release")
    docs = render_gateway_rbac(release_ns, [ns], tmp_path)
    kinds = sorted(doc["kind"] for doc in docs)
    # The Role in `ns`, and the cluster-wide permission to verify callers' tokens (TokenReview).
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"], kinds
    kube.apply(docs)
    (account,) = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    token = kube.service_account_token(release_ns, account["metadata"]["name"])
    return kube.write_kubeconfig(tmp_path / "gateway.kubeconfig", token=token)
