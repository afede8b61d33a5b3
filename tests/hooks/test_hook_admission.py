"""Pool admission over time: the pool hook driven like Metacontroller drives it.

A tiny stand-in for the cluster applies each sync response: the pool's status is written back,
desired Pods that do not exist are created (with the annotations the hook gave them), observed
Pods no longer desired get a deletionTimestamp and are gone one step later, and the clock
advances by the `resyncAfterSeconds` the hook asked for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from hooks.sync import sync_pool, sync_server
from nmcp.model.resources import ANN_LAST_ACTIVE_AT, ANN_REQUESTED_AT, ANN_SESSIONS, format_time_precise
from tests.hooks.builders import NOW, at, pod, pool, pool_request, server, server_request, t

pytestmark = pytest.mark.usefixtures("no_network")


@dataclass
class Cluster:
    """MCPServers, the pool and its Pods, as Metacontroller would observe them."""

    pool: dict[str, Any]
    servers: dict[str, dict[str, Any]]
    now: datetime = NOW
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # by server name
    max_seen: int = 0

    def sync(self) -> dict[str, Any]:
        """One pool sync, applied: dropped Pods start terminating, new ones are created."""
        # Pods that were terminating at the previous step are gone now.
        self.pods = {name: p for name, p in self.pods.items() if "deletionTimestamp" not in p["metadata"]}
        response = sync_pool(pool_request(self.pool, list(self.servers.values()), list(self.pods.values())), self.now)
        self.pool["status"] = response["status"]
        desired = {c["metadata"]["labels"]["nmcp.nwrx.io/server"]: c
                   for c in response["children"] if c["kind"] == "Pod"}
        for name, observed in self.pods.items():
            if name not in desired:
                observed["metadata"]["deletionTimestamp"] = t(0, self.now)
        for name in sorted(desired.keys() - self.pods.keys()):
            self.pods[name] = pod(name, created=0, now=self.now)
            self.pods[name]["metadata"]["annotations"].update(desired[name]["metadata"]["annotations"])
        self.max_seen = max(self.max_seen, len(self.pods))
        return response

    def running(self) -> list[str]:
        return sorted(n for n, p in self.pods.items() if "deletionTimestamp" not in p["metadata"])

    def become_ready(self) -> None:
        for name, observed in self.pods.items():
            if "deletionTimestamp" not in observed["metadata"]:
                created = datetime.fromisoformat(observed["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
                self.pods[name] = pod(name, created=(created - self.now).total_seconds(), ready=-1, now=self.now)
                self.pods[name]["metadata"]["annotations"] = observed["metadata"]["annotations"]

    def annotate(self, name: str, key: str, value: str) -> None:
        self.servers[name]["metadata"].setdefault("annotations", {})[key] = value

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _fifty_requested_in_one_second() -> tuple[Cluster, list[str]]:
    rng = random.Random(7)
    names = [f"srv-{i:02d}" for i in range(50)]
    rng.shuffle(names)
    servers = {}
    for order, name in enumerate(names):
        # All in the same second; microseconds give the arrival order.
        requested = format_time_precise(at(-1 + order / 100))
        obj = server(name)
        obj["metadata"]["annotations"] = {ANN_REQUESTED_AT: requested}
        servers[name] = obj
    return Cluster(pool(max_active=5, max_idle=5, idle="60s"), servers), names


def test_fifty_requests_in_one_second_start_exactly_five_then_the_next_five() -> None:
    cluster, order = _fifty_requested_in_one_second()

    first = cluster.sync()
    assert len([c for c in first["children"] if c["kind"] == "Pod"]) == 5
    assert cluster.running() == sorted(order[:5])
    assert first["status"]["waiting"] == 45

    # The same state synced again (Pods observed, not ready yet) admits nobody else.
    cluster.advance(2)
    assert cluster.sync()["status"]["waiting"] == 45
    assert cluster.running() == sorted(order[:5])

    # They become ready and serve their clients; the 45 others keep waiting.
    cluster.advance(2)
    cluster.become_ready()
    for name in order[:5]:
        cluster.annotate(name, ANN_LAST_ACTIVE_AT, format_time_precise(cluster.now))
    response = cluster.sync()
    assert cluster.running() == sorted(order[:5])
    # The hook asks to be called back when the first five reach their idle timeout.
    assert response["resyncAfterSeconds"] == 60.0
    cluster.advance(response["resyncAfterSeconds"])

    # The gateway re-requests for clients still waiting (each message re-requests).
    for name in order[5:]:
        cluster.annotate(name, ANN_REQUESTED_AT, format_time_precise(at(-1 + order.index(name) / 100, cluster.now)))
    cluster.sync()  # idle deadline passed: the five Pods are dropped, but still hold their slots
    assert cluster.running() == []
    assert len(cluster.pods) == 5
    cluster.advance(1)
    cluster.sync()  # gone: the next five start, in request order
    assert cluster.running() == sorted(order[5:10])
    assert cluster.max_seen == 5


def test_max_active_holds_under_random_demand() -> None:
    rng = random.Random(11)
    names = [f"s{i}" for i in range(30)]
    cluster = Cluster(pool(max_active=4, max_idle=1, idle="30s"), {n: server(n, idle="30s") for n in names})
    for _ in range(200):
        for name in rng.sample(names, 3):
            action = rng.random()
            if action < 0.5:
                cluster.annotate(name, ANN_REQUESTED_AT, format_time_precise(cluster.now))
            elif action < 0.8:
                cluster.annotate(name, ANN_LAST_ACTIVE_AT, format_time_precise(cluster.now))
            else:
                cluster.annotate(name, ANN_SESSIONS, str(rng.randint(0, 2)))
        if rng.random() < 0.5:
            cluster.become_ready()
        response = cluster.sync()
        assert len(cluster.pods) <= 4
        assert response["status"]["active"] <= 4
        cluster.advance(rng.choice([0.5, 1, 5, response.get("resyncAfterSeconds") or 3]))
    assert cluster.max_seen == 4  # the limit was reached, and held


def test_max_idle_evicts_longest_idle_first_and_they_stay_stopped() -> None:
    names = ["a", "b", "c", "d", "e"]
    servers = {n: server(n, requested=-100, active=-(10 * (i + 1))) for i, n in enumerate(names)}  # a most recent
    cluster = Cluster(pool(max_active=10, max_idle=2, idle="5m"), servers)
    cluster.pods = {n: pod(n, created=-95, ready=-90) for n in names}

    response = cluster.sync()
    assert cluster.running() == ["a", "b"]
    assert response["status"]["idle"] == 2
    evicted = sorted(n for n, p in cluster.pods.items() if "deletionTimestamp" in p["metadata"])
    assert evicted == ["c", "d", "e"]

    # While their Pods terminate, the servers say why they stop.
    verdict = sync_server(server_request(servers["e"], cluster.pool, list(cluster.pods.values())), cluster.now)
    ready = next(c for c in verdict["status"]["conditions"] if c["type"] == "Ready")
    assert (verdict["status"]["phase"], ready["reason"]) == ("Stopping", "Evicted")

    cluster.advance(1)
    cluster.sync()
    assert sorted(cluster.pods) == ["a", "b"]
    # Their requests were served already: eviction is not undone by old demand.
    cluster.advance(1)
    cluster.sync()
    assert sorted(cluster.pods) == ["a", "b"]
    after = sync_server(server_request(servers["e"], cluster.pool, list(cluster.pods.values())), cluster.now)
    assert after["status"]["phase"] == "Idle"

    # A new request brings one back.
    cluster.annotate("e", ANN_REQUESTED_AT, format_time_precise(cluster.now))
    cluster.sync()
    assert cluster.running() == ["a", "b", "e"]


def test_a_session_keeps_a_server_out_of_the_idle_count() -> None:
    servers = {n: server(n, requested=-100, active=-(10 * (i + 1))) for i, n in enumerate("abc")}
    servers["c"]["metadata"]["annotations"][ANN_SESSIONS] = "1"  # the longest idle, but a client is connected
    cluster = Cluster(pool(max_active=10, max_idle=1, idle="5m"), servers)
    cluster.pods = {n: pod(n, created=-95, ready=-90) for n in "abc"}
    cluster.sync()
    assert cluster.running() == ["a", "c"]


def test_a_server_just_started_for_a_waiting_client_is_not_evicted() -> None:
    # maxIdle 0: only servers somebody is waiting for or talking to may run.
    servers = {"fresh": server("fresh", requested=-3), "served": server("served", requested=-100, active=-50)}
    cluster = Cluster(pool(max_active=10, max_idle=0), servers)
    cluster.pods = {"fresh": pod("fresh", created=-2, ready=-1), "served": pod("served", created=-95, ready=-90)}
    cluster.sync()
    assert cluster.running() == ["fresh"]
