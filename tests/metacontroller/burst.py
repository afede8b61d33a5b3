"""Fifty servers requested within one second into a pool that runs five at once.

The scenario of the test (test_burst.py) and of the benchmark (bench/metacontroller_burst.py):
every server is requested once, as the gateway would on a client's first message, and nobody
uses any of them afterwards, so each runs until its idle timeout and hands its slot on. The pool
must never run more than `max_active` Pods, must start each server exactly once, and every
server's status must show Ready at some point.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.metacontroller.harness import MetaCluster, mcppool, mcpserver
from tests.metacontroller.kubelet import CREATED, READY

SERVERS = 50
MAX_ACTIVE = 5
IDLE_TIMEOUT = "3s"
# Longer than the whole queue takes: a request must still be waiting when its turn comes.
START_TIMEOUT = "10m"


@dataclass
class BurstResult:
    """What a user of the pool would see, and how long each server waited."""

    namespace: str
    servers: list[str]
    request_spread: float  # seconds between the first and the last request
    settled: bool  # every server ran and stopped again within the time allowed
    pods_per_server: dict[str, int] = field(default_factory=dict)
    max_alive: int = 0
    seen_ready: set[str] = field(default_factory=set)
    ready_after: dict[str, float] = field(default_factory=dict)  # request to first Ready status, seconds
    pod_ready_after: dict[str, float] = field(default_factory=dict)  # request to its first Pod Ready, seconds
    duration: float = 0.0  # first request to settled

    @property
    def pods(self) -> int:
        return sum(self.pods_per_server.values())

    def summary(self) -> dict[str, object]:
        waits = sorted(self.ready_after.values())
        pod_waits = sorted(self.pod_ready_after.values())
        return {
            "servers": len(self.servers), "pods_created": self.pods, "max_alive": self.max_alive,
            "seen_ready": len(self.seen_ready), "servers_with_more_than_one_pod":
                sorted(s for s, n in self.pods_per_server.items() if n > 1),
            "median_ready_s": round(statistics.median(waits), 2) if waits else None,
            "worst_ready_s": round(waits[-1], 2) if waits else None,
            "median_pod_ready_s": round(statistics.median(pod_waits), 2) if pod_waits else None,
            "worst_pod_ready_s": round(pod_waits[-1], 2) if pod_waits else None,
            "request_spread_s": round(self.request_spread, 3), "settled": self.settled,
            "duration_s": round(self.duration, 1),
        }


def run_burst(cluster: MetaCluster, *, servers: int = SERVERS, max_active: int = MAX_ACTIVE,
              idle_timeout: str = IDLE_TIMEOUT, settle_within: float = 240) -> BurstResult:
    """Create the pool and servers, request them all at once, wait until the queue has drained."""
    assert cluster.kubelet is not None
    kubelet = cluster.kubelet
    ns = cluster.namespace("burst")
    names = [f"s{i:02d}" for i in range(servers)]
    cluster.kube.apply([mcppool("pool", max_active=max_active, max_idle=0),
                        *(mcpserver(n, "pool", idle_timeout=idle_timeout, startTimeout=START_TIMEOUT) for n in names)],
                       namespace=ns)
    sampler = cluster.sampler(ns)
    gateway = cluster.gateway([ns])
    try:
        for name in names:  # every server synced once (Idle) and known to the gateway
            sampler.wait_phase(name, "Idle", 120)
        refs = [gateway.ref(ns, name) for name in names]
        requested: dict[str, float] = {}

        def request(index: int) -> None:
            requested[names[index]] = time.monotonic()
            gateway.runtime.request(refs[index])

        with ThreadPoolExecutor(max_workers=10) as pool:
            list(pool.map(request, range(servers)))
        first = min(requested.values())
        result = BurstResult(namespace=ns, servers=names, request_spread=max(requested.values()) - first,
                             settled=False)

        def settled() -> bool:
            started = {r.server for r in kubelet.created(ns)}
            phases = {name: sampler.latest(name) for name in names}
            return (started >= set(names) and not kubelet.alive(ns)
                    and all(s is not None and s.phase == "Idle" for s in phases.values()))

        deadline = time.monotonic() + settle_within
        while time.monotonic() < deadline and not settled():
            time.sleep(0.2)
        result.settled = settled()
        result.duration = time.monotonic() - first
        for name in names:
            result.pods_per_server[name] = len(kubelet.records(ns, server=name, event=CREATED))
            ready = [s for s in sampler.samples(name) if s.phase == "Ready"]
            if ready:
                result.seen_ready.add(name)
                result.ready_after[name] = ready[0].at - requested[name]
            pod_ready = kubelet.records(ns, server=name, event=READY)
            if pod_ready:
                result.pod_ready_after[name] = pod_ready[0].at - requested[name]
        result.max_alive = kubelet.max_alive(ns)
        return result
    finally:
        gateway.close()
        sampler.stop()
