"""What a server shows while its Pod is slow or cannot run, as the kubelet reports it and the real
Metacontroller carries it to the hooks."""

from __future__ import annotations

import pytest

from tests.metacontroller.harness import Gateway, MetaCluster, StatusSampler, mcppool, mcpserver
from tests.metacontroller.kubelet import Kubelet

pytestmark = pytest.mark.kube


def test_a_slow_pod_shows_starting_then_ready(
        mc: MetaCluster, ns: str, kubelet: Kubelet, sampler: StatusSampler, demand: Gateway) -> None:
    kubelet.control(ns, "slow", hold=True)  # the container takes its time (until released)
    mc.kube.apply([mcppool("pool"), mcpserver("slow", "pool", idle_timeout="60s")], namespace=ns)
    sampler.wait_phase("slow", "Idle")
    demand.request(ns, "slow")
    starting = sampler.wait_phase("slow", "Starting")
    assert starting.pod_name == "mcp-slow", starting
    kubelet.control(ns, "slow", hold=False)
    sampler.wait_phase("slow", "Ready")
    assert len(kubelet.created(ns, "slow")) == 1


@pytest.mark.parametrize("case", [
    pytest.param(("ErrImagePull", "ImagePullFailing"), id="image-pull"),
    pytest.param(("ImagePullBackOff", "ImagePullFailing"), id="image-pull-backoff"),
    pytest.param(("CrashLoopBackOff", "CrashLoopBackOff"), id="crash-loop"),
])
def test_a_pod_that_cannot_run_degrades_the_server(
        mc: MetaCluster, kubelet: Kubelet, sampler: StatusSampler, demand: Gateway, case: tuple[str, str]) -> None:
    failure, reason = case  # what the kubelet reports, and the reason the server shows
    ns = sampler.namespace
    kubelet.control(ns, "broken", failure=failure)
    mc.kube.apply([mcppool("pool"), mcpserver("broken", "pool", idle_timeout="60s")], namespace=ns)
    sampler.wait_phase("broken", "Idle")
    demand.request(ns, "broken")
    degraded = sampler.wait_phase("broken", "Degraded")
    assert degraded.reason == reason, degraded
    assert not sampler.seen("broken", "Ready")
