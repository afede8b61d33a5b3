"""Pool admission: which of a pool's servers run, decided in one place.

The MCPPool's sync hook is the only place Pods are decided, and Metacontroller never syncs one
parent twice at once, so this function sees every server of the pool and every Pod at the same
moment. That is what makes `maxActive` hold under concurrent demand:

1. keep the Pods that should keep running (`lifecycle.keep_running`, valid spec);
2. of the kept Pods that are ready with no session and nobody waiting ("idle-running"), keep the
   `maxIdle` most recently active and evict the rest, longest idle first;
3. every observed Pod occupies a slot until it is gone, terminating or just dropped ones too;
4. admit waiting servers (pending, no Pod) into the free slots, first come first served by
   request time, then by namespace/name.

Pure and deterministic: the same servers, Pods and `now` always give the same plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from hooks import lifecycle
from hooks.lifecycle import PodView
from nmcp.naming import label_value
from nmcp.resources import Pool, Server, SpecError


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


def _request_order(server: Server) -> tuple[float, str]:
    """First come first served; equal request times in namespace/name order."""
    requested = server.demand.requested_at
    return (requested.timestamp() if requested else -math.inf, server.key)


def plan_pool(pool: Pool, servers: Sequence[Server], pods: Sequence[PodView],
              problems: Mapping[str, Sequence[SpecError]], now: datetime) -> PoolPlan:
    """Decide the pool's Pods. `servers` are the pool's; `problems` maps server key to its spec problems."""
    by_label = {pod.server_label: pod for pod in pods}
    pod_of = {s.key: by_label.get(label_value(s.name)) for s in servers}

    def runnable(server: Server) -> bool:
        return not problems.get(server.key) and not server.deleting

    kept = [s for s in servers if runnable(s) and lifecycle.keep_running(s, pool, pod_of[s.key], now)]
    idle_running = sorted((s for s in kept if lifecycle.idle_running(s, pod_of[s.key], now)),
                          key=lifecycle.last_demand_key)
    evicted = idle_running[pool.max_idle:]
    evicted_keys = {s.key for s in evicted}
    kept = [s for s in kept if s.key not in evicted_keys]

    occupied = len(pods)
    free = max(pool.max_active - occupied, 0)
    waiting = sorted((s for s in servers if pod_of[s.key] is None and runnable(s) and lifecycle.pending(s, now)),
                     key=_request_order)
    admitted, still_waiting = waiting[:free], waiting[free:]
    pending_keys = {s.key for s in waiting}
    stopped = [s for s in servers if pod_of[s.key] is None and s.key not in pending_keys]

    moments = [m for s in servers for m in lifecycle.deadlines(s, pool, pod_of[s.key])]
    return PoolPlan(
        kept=tuple(kept),
        admitted=tuple(admitted),
        evicted=tuple(evicted),
        waiting=tuple(still_waiting),
        stopped=tuple(stopped),
        idle=tuple(idle_running[: pool.max_idle]),
        occupied=occupied,
        resync_after=lifecycle.resync_after(moments, now),
    )
