"""Fixtures of the Metacontroller tests: one `MetaCluster` for the area, a namespace per test.

The cluster is the area's own (an API server nobody else writes to; see harness.py) and lives for
the session: starting it and waiting for Metacontroller's first syncs takes a while, and a
namespace per test keeps tests apart. It FAILS, never skips, when a part is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube.kube_cluster import render_gateway_rbac
from tests.metacontroller.harness import RECOMMENDED_FLAGS, Gateway, HarnessError, MetaCluster, StatusSampler
from tests.metacontroller.kubelet import Kubelet
from tests.metacontroller.watching import WatchError
from tests.support.kubeapi import KubeAPIError


@pytest.fixture(scope="session")
def mc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetaCluster]:
    """The real Metacontroller (with the recommended flags) and the real hooks on an API server of their own."""
    cluster = MetaCluster(tmp_path_factory.mktemp("metacontroller"), RECOMMENDED_FLAGS)
    try:
        cluster.start()
    except (HarnessError, KubeAPIError, WatchError) as err:
        cluster.stop()
        pytest.fail(str(err), pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def kubelet(mc: MetaCluster) -> Kubelet:
    assert mc.kubelet is not None
    return mc.kubelet


@pytest.fixture
def ns(mc: MetaCluster) -> str:
    return mc.namespace()


@pytest.fixture
def sampler(mc: MetaCluster, ns: str) -> Iterator[StatusSampler]:
    sampler = mc.sampler(ns)
    yield sampler
    sampler.stop()


@pytest.fixture
def demand(mc: MetaCluster, ns: str) -> Iterator[Gateway]:
    """The gateway's demand signals for `ns` (coalesced activity writes at most once a second)."""
    gateway = mc.gateway([ns], write_interval=1.0)
    yield gateway
    gateway.close()


@pytest.fixture
def gateway_kubeconfig(mc: MetaCluster, ns: str, tmp_path: Path) -> Path:
    """A kubeconfig with a token of the chart's gateway ServiceAccount, bound to the chart's Role in `ns`."""
    release_ns = mc.namespace("release")
    docs = render_gateway_rbac(release_ns, [ns], tmp_path)
    mc.kube.apply(docs)
    (account,) = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    token = mc.kube.service_account_token(release_ns, account["metadata"]["name"])
    return mc.kube.write_kubeconfig(tmp_path / "gateway.kubeconfig", token=token)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test shows the tails of Metacontroller's and the operator's logs, and kubelet errors."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    cluster = getattr(item, "funcargs", {}).get("mc")
    if report.failed and isinstance(cluster, MetaCluster):
        text = cluster.diagnostics()
        if cluster.kubelet is not None and cluster.kubelet.errors:
            text += "\n--- stand-in kubelet errors ---\n" + "\n".join(cluster.kubelet.errors[-20:])
        report.sections.append(("Metacontroller cluster logs", text))
