"""Pool admission: which of a pool's servers run, decided in one place.

The MCPPool's sync hook is the only place Pods are decided, and Metacontroller never syncs one
parent twice at once, so this function sees every server of the pool and every Pod at the same
moment. That is what makes `maxActive` hold under concurrent demand:

1. keep the Pods that should keep running (`lifecycle.keep_running`, valid spec);
2. of the kept Pods that are ready with no session and nobody waiting ("idle-running"), keep the
   `maxIdle` most recently active and evict the rest, longest idle first; while a client's unit
   waits for a slot, evict idle spare instances too (a spare never keeps a client waiting);
3. every observed Pod occupies a slot until it is gone, terminating or just dropped ones too;
4. admit waiting servers (pending, no Pod) into the free slots, first come first served by
   request time, then by namespace/name; spare instances only after every client's unit.

Pure and deterministic: the same servers, Pods and `now` always give the same plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from hooks import lifecycle
from hooks.lifecycle import PodView
from nmcp.model.resources import Pool, Server, SpecError


@dataclass(frozen=True)
class PoolPlan:
    """What the pool runs after this sync, and why the others do not run."""

    kept: tuple[Server, ...]  # keep their Pods
    admitted: tuple[Server, ...]  # get a Pod now
    evicted: tuple[Server, ...]  # idle-running beyond maxIdle: Pods dropped
    waiting: tuple[Server, ...]  # pending, no free slot
    stopped: tuple[Server, ...]  # no Pod, not pending
    idle: tuple[Server, ...]  # kept and idle-running
    occupied: int  # observed Pods (each holds a slot until it is gone)
    resync_after: float | None

    @property
    def running(self) -> tuple[Server, ...]:
        """Servers whose Pod (and Service) are desired, in a stable order."""
        return tuple(sorted(self.kept + self.admitted, key=lambda s: s.key))


def _request_order(server: Server) -> tuple[bool, float, str]:
    """Clients before spares, then first come first served; equal request times in namespace/name order."""
    requested = server.demand.requested_at
    return (server.demand.spare, requested.timestamp() if requested else -math.inf, server.key)


def plan_pool(pool: Pool, servers: Sequence[Server], pods: Sequence[PodView],
              problems: Mapping[str, Sequence[SpecError]], now: datetime) -> PoolPlan:
    """Decide the pool's Pods. `servers` are the pool's units: its shared servers and one view per
    instance of its isolated ones (`Server.instance_view`); `problems` maps unit key to its spec problems."""
    by_unit = {pod.unit: pod for pod in pods}
    # One pass over the servers: a pool sync may carry thousands of them.
    kept: list[Server] = []
    idle_running: list[Server] = []
    waiting: list[Server] = []
    stopped: list[Server] = []
    moments: list[datetime] = []
    for server in servers:
        pod = by_unit.get(lifecycle.unit_of(server))
        runnable = not problems.get(server.key) and not server.deleting
        if pod is not None:
            if runnable and lifecycle.keep_running(server, pool, pod, now):
                kept.append(server)
                if lifecycle.idle_running(server, pod, now):
                    idle_running.append(server)
        elif runnable and lifecycle.pending(server, now, pool):
            waiting.append(server)
        else:
            stopped.append(server)
        moments.extend(lifecycle.deadlines(server, pool, pod))

    idle_running.sort(key=lifecycle.last_demand_key)
    evicted = idle_running[pool.max_idle:]
    occupied = len(pods)
    free = max(pool.max_active - occupied, 0)
    waiting.sort(key=_request_order)
    admitted, still_waiting = waiting[:free], waiting[free:]
    # Clients left waiting: the idle spares make room (their slots free once their Pods are gone).
    clients_waiting = sum(1 for s in still_waiting if not s.demand.spare)
    if clients_waiting:
        spares = [s for s in idle_running[: pool.max_idle] if s.demand.spare]
        evicted += spares[-clients_waiting:]  # the least recently asked for first
    evicted_keys = {s.key for s in evicted}
    kept = [s for s in kept if s.key not in evicted_keys]

    return PoolPlan(
        kept=tuple(kept),
        admitted=tuple(admitted),
        evicted=tuple(evicted),
        waiting=tuple(still_waiting),
        stopped=tuple(stopped),
        idle=tuple(s for s in idle_running if s.key not in evicted_keys),
        occupied=occupied,
        resync_after=lifecycle.resync_after(moments, now),
    )
