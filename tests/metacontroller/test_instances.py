"""An isolated server's instances under the real Metacontroller: each instance the gateway asks
for is a Pod the pool hook admits against `maxActive`, released instances and abandoned ones
(unused for the idle timeout) lose their Pods, and `status` counts them."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.kube.client import MCPSERVERS
from gateway.runtime import StartFailed
from tests.metacontroller.harness import STEP_TIMEOUT, Gateway, MetaCluster, StatusSampler, mcppool, mcpserver
from tests.metacontroller.kubelet import Kubelet
from tests.support import wait_for

pytestmark = pytest.mark.kube


def status(mc: MetaCluster, ns: str, name: str) -> dict[str, Any]:
    return (mc.get(MCPSERVERS, ns, name) or {}).get("status") or {}


def instance(mc: MetaCluster, ns: str, name: str, key: str) -> dict[str, Any]:
    return (status(mc, ns, name).get("instances") or {}).get(key) or {}


def test_instances_are_pods_the_pool_admits_and_reaps(
        mc: MetaCluster, ns: str, kubelet: Kubelet, sampler: StatusSampler, demand: Gateway) -> None:
    mc.kube.apply([mcppool("pool", max_active=2, max_idle=2, idle_timeout="1h"),
                   mcpserver("own", "pool", idle_timeout="8s", isolation="session", startTimeout="1h")], namespace=ns)
    sampler.wait_phase("own", "Idle")
    ref = demand.ref(ns, "own")
    runtime = demand.runtime

    for key in ("aaa1", "bbb2", "ccc3"):
        runtime.request(ref, key)
    # Two instances fit the pool; the third waits, and a client waiting on it is told why.
    kubelet.wait(lambda: len(kubelet.alive(ns, "own")) == 2, "two instance Pods")
    ready = runtime.wait_ready(ref, STEP_TIMEOUT, "aaa1")
    assert ready.phase == "Ready"
    wait_for(lambda: instance(mc, ns, "own", "ccc3").get("reason") == "WaitingForCapacity",
             "the third instance to wait for capacity", STEP_TIMEOUT)
    with pytest.raises(StartFailed) as waiting:
        runtime.wait_ready(ref, 2, "ccc3")
    assert waiting.value.reason == "WaitingForCapacity"
    wait_for(lambda: status(mc, ns, "own").get("runningInstances") == 2, "status to count two instances")
    assert sampler.latest("own").phase == "Ready"

    # A released instance's Pod goes at once (the idle timeout is 8 s, the pool's an hour), and the
    # waiting one gets the slot.
    runtime.release(ref, "aaa1")
    runtime.wait_ready(ref, STEP_TIMEOUT, "ccc3")
    names = {r.name for r in kubelet.created(ns, "own")}
    assert names == {"mcp-own-aaa1", "mcp-own-bbb2", "mcp-own-ccc3"}, names

    # Nobody uses the other two: each stops after the server's idle timeout.
    kubelet.wait(lambda: not kubelet.alive(ns, "own"), "the abandoned instances' Pods to be gone", 60)
    wait_for(lambda: status(mc, ns, "own").get("runningInstances") == 0, "status to count no instance")
    assert kubelet.max_alive(ns) == 2  # never more than maxActive, at any moment
