"""Fixtures of the Kubernetes tests: the real API server (tests/support/kubeapi.py) with the CRDs,
a fresh namespace per test, and Kubernetes runtimes that are always closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.kube.client import KubeClient
from gateway.kube.config import from_kubeconfig
from gateway.runtimes.kubernetes import KubernetesRuntime, KubeSettings
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
