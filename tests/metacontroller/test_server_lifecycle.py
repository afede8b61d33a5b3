"""One server's life under the real Metacontroller: start on demand, keep its Pod while used, stop
when idle, start again; a spec edit while a client holds a session; deletion."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.kube.client import MCPSERVERS, PODS
from nmcp.model.resources import ANN_SESSIONS
from tests.metacontroller.harness import MCPPOOLS, STEP_TIMEOUT, Gateway, MetaCluster, StatusSampler, mcppool, mcpserver
from tests.metacontroller.kubelet import DELETED, READY, TERMINATING, Kubelet
from tests.support import wait_for

pytestmark = pytest.mark.kube

HOLD = 60.0  # how long a used server must keep its one Pod
TOUCH_EVERY = 2.0  # a client's traffic, as the gateway reports it (it coalesces to one write a second here)


def annotations(mc: MetaCluster, ns: str, name: str) -> dict[str, Any]:
    obj = mc.get(MCPSERVERS, ns, name) or {}
    return (obj.get("metadata") or {}).get("annotations") or {}


def test_a_used_server_keeps_one_pod_until_idle_then_starts_again(
        mc: MetaCluster, ns: str, kubelet: Kubelet, sampler: StatusSampler, demand: Gateway) -> None:
    mc.kube.apply([mcppool("pool", max_active=2), mcpserver("time", "pool", idle_timeout="5s")], namespace=ns)
    sampler.wait_phase("time", "Idle")
    assert not kubelet.created(ns, "time")  # nobody asked: nothing runs

    demand.request(ns, "time")
    sampler.wait_phase("time", "Ready")
    (first,) = kubelet.created(ns, "time")

    # A client holds a session and keeps calling: the gateway reports activity every few seconds.
    until = time.monotonic() + HOLD
    while time.monotonic() < until:
        demand.touch(ns, "time", sessions=1)
        time.sleep(TOUCH_EVERY)
    assert [r.uid for r in kubelet.created(ns, "time")] == [first.uid], "a used server's Pod was replaced"
    assert not kubelet.records(ns, server="time", event=TERMINATING), "a used server's Pod was deleted"
    after_ready = [s for s in sampler.samples("time") if s.rv >= first.rv]
    assert sampler.latest("time").phase == "Ready", after_ready[-5:]

    # The client leaves: after the idle timeout the server stops and its Pod goes.
    demand.touch(ns, "time", sessions=0)
    idle = sampler.wait_phase("time", "Idle")
    assert idle.reason == "IdleTimeout", idle
    kubelet.wait(lambda: not kubelet.alive(ns, "time"), "the idle server's Pod to be gone")
    assert [r.uid for r in kubelet.records(ns, server="time", event=DELETED)] == [first.uid]

    # The next client starts it again, on a new Pod.
    demand.request(ns, "time")
    sampler.wait_phase("time", "Ready")
    pods = kubelet.created(ns, "time")
    assert len(pods) == 2 and pods[1].uid != first.uid, pods
    assert [r.uid for r in kubelet.records(ns, server="time", event=READY)] == [p.uid for p in pods]


def test_a_spec_edit_under_a_session_is_ready_only_on_the_new_pod(
        mc: MetaCluster, ns: str, kubelet: Kubelet, sampler: StatusSampler, demand: Gateway) -> None:
    mc.kube.apply([mcppool("pool", max_active=2), mcpserver("time", "pool", idle_timeout="30s", args=["--v1"])],
                  namespace=ns)
    sampler.wait_phase("time", "Idle")
    demand.request(ns, "time")
    sampler.wait_phase("time", "Ready", generation=1)
    (old,) = kubelet.created(ns, "time")
    # A client holds a session on it, as the gateway reports: sessions 1 and recent activity.
    demand.touch(ns, "time", sessions=1)
    wait_for(lambda: annotations(mc, ns, "time").get(ANN_SESSIONS) == "1", "the gateway to write sessions=1")

    edited = mc.merge_patch(MCPSERVERS, ns, "time", {"spec": {"args": ["--v2"]}})
    new_generation = edited["metadata"]["generation"]
    assert new_generation == 2

    touched = [time.monotonic()]

    def ready_on_new_spec() -> bool:
        if time.monotonic() - touched[-1] >= 1.0:  # the client keeps calling meanwhile
            demand.touch(ns, "time", sessions=1)
            touched.append(time.monotonic())
        latest = sampler.latest("time")
        return latest is not None and latest.phase == "Ready" and latest.observed_generation == new_generation

    wait_for(ready_on_new_spec, "the server to be Ready at the new generation", STEP_TIMEOUT)
    pods = kubelet.created(ns, "time")
    assert len(pods) == 2 and pods[0].uid == old.uid, f"one replacement Pod expected: {pods}"
    new = pods[1]
    (old_gone,) = [r for r in kubelet.records(ns, event=DELETED) if r.uid == old.uid]
    (new_ready,) = [r for r in kubelet.records(ns, event=READY) if r.uid == new.uid]
    # Until the new Pod is Ready and the old one gone, no status says Ready at the new generation.
    early = [s for s in sampler.samples("time") if s.phase == "Ready" and s.observed_generation == new_generation
             and s.rv < max(old_gone.rv, new_ready.rv)]
    assert not early, f"Ready at generation {new_generation} before the new Pod was: {early}"
    pod = mc.get(PODS, ns, new.name)
    assert pod is not None and pod["metadata"]["uid"] == new.uid
    assert pod["spec"]["containers"][0]["args"] == ["--v2"]
    assert sampler.latest("time").phase == "Ready"


def test_deleting_a_running_server_removes_its_pod_first(
        mc: MetaCluster, ns: str, kubelet: Kubelet, sampler: StatusSampler, demand: Gateway) -> None:
    mc.kube.apply([mcppool("pool", max_active=2), mcpserver("time", "pool", idle_timeout="60s")], namespace=ns)
    sampler.wait_phase("time", "Idle")
    demand.request(ns, "time")
    sampler.wait_phase("time", "Ready")
    (pod,) = kubelet.created(ns, "time")

    mc.delete(MCPSERVERS, ns, "time")
    gone = sampler.wait("time", lambda s: s.deleted, "be deleted (finalized)")
    assert mc.get(MCPSERVERS, ns, "time") is None
    (pod_gone,) = kubelet.records(ns, server="time", event=DELETED)
    assert pod_gone.uid == pod.uid
    assert pod_gone.rv < gone.rv, "the MCPServer was finalized while its Pod still existed"
    assert not kubelet.alive(ns)


def test_deleting_a_pool_removes_its_pods_and_the_pool(
        mc: MetaCluster, ns: str, kubelet: Kubelet, sampler: StatusSampler, demand: Gateway) -> None:
    names = ("one", "two")
    mc.kube.apply([mcppool("pool", max_active=3), *(mcpserver(n, "pool", idle_timeout="60s") for n in names)],
                  namespace=ns)
    for name in names:
        sampler.wait_phase(name, "Idle")
        demand.request(ns, name)
    for name in names:
        sampler.wait_phase(name, "Ready")
    assert len(kubelet.alive(ns)) == 2

    mc.delete(MCPPOOLS, ns, "pool")
    wait_for(lambda: mc.get(MCPPOOLS, ns, "pool") is None, "the MCPPool to be finalized and gone", 60)
    kubelet.wait(lambda: not kubelet.alive(ns), "every Pod of the pool to be gone")
    assert {r.server for r in kubelet.records(ns, event=DELETED)} == set(names)
    for name in names:  # the servers stay, and say why they cannot run
        degraded = sampler.wait_phase(name, "Degraded")
        assert degraded.reason == "PoolNotFound", degraded
