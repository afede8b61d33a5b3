"""The MCPServer lifecycle: when a server should run, and what phase and conditions it shows.

Both hooks use these definitions, so the pool (which creates and drops Pods) and the server
(which reports its phase) always agree on what "idle", "pending" and "keep running" mean.

* Demand comes from the gateway's annotations (`nmcp.model.resources.Demand`): a request newer than
  the last activity is *pending* until the start timeout passes (the gateway holds a waiting
  client at most that long and re-requests on its next message).
* A running server stops after its idle timeout without requests; open sessions do not keep it
  alive (the gateway restarts it on the next message). A Pod still starting is kept until its
  start deadline whatever the idle timeout says.
* The runtime decides what a spec needs. It is named by the annotation `nmcp.nwrx.io/runtime`
  on the request's `controller` object: `local` (set by `nmcp up`) runs `command` as a process,
  anything else (absent, `kubernetes`) runs `image` in a Pod. So an image-only server under the
  local runtime is a clear InvalidSpec, not a hang. The response still depends only on the
  request body.

Pure: no clock reads (`now` is a parameter), no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nmcp.model.naming import child_name, label_value
from nmcp.model.resources import (
    ANN_ANSWERS_REQUEST,
    ANN_SPEC_HASH,
    GROUP,
    LABEL_INSTANCE,
    LABEL_POOL,
    LABEL_SERVER,
    Pool,
    Server,
    SpecError,
    format_time,
    parse_time,
)
from nmcp.model.vocabulary import Kube, Phase, Reason

RUNTIME_ANNOTATION = f"{GROUP}/runtime"
RUNTIMES = ("kubernetes", "local")


def runtime_of(controller: Mapping[str, Any] | None) -> str:
    """The runtime named on the controller object (`kubernetes` when absent)."""
    meta = (controller or {}).get("metadata") or {}
    annotations = meta.get("annotations") or {} if isinstance(meta, Mapping) else {}
    value = annotations.get(RUNTIME_ANNOTATION) if isinstance(annotations, Mapping) else None
    return value if value in RUNTIMES else "kubernetes"


def spec_problems(server: Server, runtime: str) -> tuple[SpecError, ...]:
    """What makes this server unrunnable under `runtime`, each naming its field."""
    # The model's generic "image or command" problem is replaced by the runtime's precise one.
    problems = [p for p in server.problems if p.field != "spec"]
    if runtime == "local" and not server.command:
        problems.append(SpecError(
            "spec.command",
            "the local runtime runs a command; this server only names an image" if server.image
            else "the local runtime runs a command; set spec.command"))
    elif runtime != "local" and not server.image:
        problems.append(SpecError("spec.image", "the Kubernetes runtime needs an image"))
    return tuple(problems)


@dataclass(frozen=True)
class PodView:
    """What the hooks read from an observed Pod."""

    name: str
    namespace: str
    server_label: str
    pool_label: str
    created_at: datetime | None
    ready_at: datetime | None  # lastTransitionTime of Ready=True; None while not ready
    terminating: bool
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    waiting_reason: str | None  # of the `server` container (or the first one waiting)
    waiting_message: str
    restarts: int
    last_exit_code: int | None
    unschedulable_message: str | None
    status_reason: str  # Pod-level status.reason / message, e.g. Evicted
    status_message: str
    answers: str = ""  # the request it was started for (annotation, as written by the pool)
    spec_hash: str = ""  # of the Pod spec it was built with (annotation)
    instance_label: str = ""  # the instance it runs, for an isolated server

    @property
    def unit(self) -> tuple[str, str]:
        """What the Pod runs: its server's label value and its instance key ("" when shared)."""
        return (self.server_label, self.instance_label)

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    @property
    def failed(self) -> bool:
        """Failed (or Succeeded): with restartPolicy Always its containers will not run again."""
        return self.phase in (Kube.POD_FAILED, Kube.POD_SUCCEEDED)

    @property
    def starting(self) -> bool:
        """Exists, not ready, not terminating, not failed."""
        return not self.ready and not self.terminating and not self.failed

    @property
    def started_at(self) -> datetime | None:
        return self.ready_at or self.created_at

    @property
    def answered_at(self) -> datetime | None:
        return parse_time(self.answers)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else ()


def read_pod(obj: Mapping[str, Any]) -> PodView:
    """Read an observed Pod dict; missing parts read as "not yet".

    Callers that build Pods themselves (`nmcp up`) must set `metadata.creationTimestamp` and the
    Ready condition's `lastTransitionTime`: without them a Pod that never gets ready is never
    timed out, and its idle timeout counts from the last request only.
    """
    meta, status = _map(obj.get("metadata")), _map(obj.get("status"))
    labels, annotations = _map(meta.get("labels")), _map(meta.get("annotations"))
    ready_at = unschedulable = None
    for raw in _list(status.get("conditions")):
        cond = _map(raw)
        if cond.get("type") == Kube.READY and cond.get("status") == "True":
            # A Ready condition without a time is still ready; fall back to the creation time.
            ready_at = parse_time(cond.get("lastTransitionTime")) or parse_time(meta.get("creationTimestamp"))
        elif cond.get("type") == Kube.POD_SCHEDULED and cond.get("status") == "False" \
                and cond.get("reason") == Kube.UNSCHEDULABLE:
            unschedulable = str(cond.get("message") or "no node can run it")
    statuses = [_map(c) for c in _list(status.get("containerStatuses"))]
    statuses.sort(key=lambda c: c.get("name") != "server")  # ours first
    waiting_reason, waiting_message, restarts, exit_code = None, "", 0, None
    for cstatus in statuses:
        waiting = _map(_map(cstatus.get("state")).get("waiting"))
        count = cstatus.get("restartCount")
        restarts = max(restarts, count if isinstance(count, int) else 0)
        terminated = _map(_map(cstatus.get("lastState")).get("terminated"))
        if exit_code is None and isinstance(terminated.get("exitCode"), int):
            exit_code = terminated["exitCode"]
        if waiting_reason is None and waiting.get("reason"):
            waiting_reason, waiting_message = str(waiting["reason"]), str(waiting.get("message") or "")
    return PodView(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        server_label=str(labels.get(LABEL_SERVER, "")),
        pool_label=str(labels.get(LABEL_POOL, "")),
        created_at=parse_time(meta.get("creationTimestamp")),
        ready_at=ready_at,
        terminating=bool(meta.get("deletionTimestamp")),
        phase=str(status.get("phase") or Kube.POD_PENDING),
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        restarts=restarts,
        last_exit_code=exit_code,
        unschedulable_message=unschedulable,
        status_reason=str(status.get("reason") or ""),
        status_message=str(status.get("message") or ""),
        answers=str(annotations.get(ANN_ANSWERS_REQUEST) or ""),
        spec_hash=str(annotations.get(ANN_SPEC_HASH) or ""),
        instance_label=str(labels.get(LABEL_INSTANCE, "")),
    )


# --- deadlines and predicates -------------------------------------------------------------------


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def start_deadline(server: Server, pod: PodView) -> datetime | None:
    """When a Pod that is still not ready counts as failed to start."""
    return pod.created_at + _seconds(server.start_timeout) if pod.created_at else None


def idle_deadline(server: Server, pool: Pool | None, pod: PodView) -> datetime | None:
    """When a running server stops for want of requests."""
    times = [t for t in (server.demand.requested_at, server.demand.last_active_at, pod.started_at) if t]
    return max(times) + _seconds(server.idle_timeout_in(pool)) if times else None


def request_expiry(server: Server) -> datetime | None:
    """When an unserved request stops asking for a start (nobody waits longer)."""
    requested = server.demand.requested_at
    return requested + _seconds(server.start_timeout) if requested else None


def within_start(server: Server, pod: PodView, now: datetime) -> bool:
    """A starting Pod still inside its start deadline (an unknown creation time counts as inside)."""
    deadline = start_deadline(server, pod)
    return pod.starting and (deadline is None or now < deadline)


def keep_running(server: Server, pool: Pool | None, pod: PodView | None, now: datetime) -> bool:
    """Whether the pool keeps this server's Pod (not counting spec problems or maxIdle)."""
    if pod is None or pod.terminating or pod.failed or server.deleting or server.demand.stopped_by_request:
        return False
    if within_start(server, pod, now):
        return True
    deadline = idle_deadline(server, pool, pod)
    return deadline is not None and now < deadline


def unserved(server: Server) -> bool:
    """A request newer than the last activity: somebody asked, and has not been served since."""
    demand = server.demand
    return demand.requested_at is not None and (demand.last_active_at is None
                                                or demand.requested_at > demand.last_active_at)


def awaited(server: Server, now: datetime) -> bool:
    """A request no client has been served on yet, still inside the start timeout."""
    if server.deleting or server.demand.stopped_by_request or not unserved(server):
        return False
    expiry = request_expiry(server)
    return expiry is not None and now < expiry


def request_answered(server: Server) -> bool:
    """A start answered the latest request, even if no client used it since (a REST `request`).

    `answered_at` is a request time recorded when its Pod was made, so the comparison is exact:
    a request that came after that start is not answered.
    """
    requested, answered = server.demand.requested_at, server.answered_at
    return requested is not None and answered is not None and answered >= requested


def in_use(server: Server, pool: Pool | None, now: datetime) -> bool:
    """Clients hold sessions on it and it is inside its idle window.

    Such a server wants to run even with no Pod: its Pod was replaced for a spec change
    (Metacontroller's Recreate deletes now and creates at a later sync), deleted by hand, or
    failed. maxIdle never evicts a server with sessions, so this cannot bring an evicted one back.
    """
    last = server.demand.last_demand
    if server.deleting or server.demand.stopped_by_request or server.demand.sessions == 0 or last is None:
        return False
    return now < last + _seconds(server.idle_timeout_in(pool))


def pending(server: Server, now: datetime, pool: Pool | None = None) -> bool:
    """A server with no Pod that wants one: a request no start has answered yet (within the
    start timeout), or a server in use whose Pod went away.

    A served request does not count, so old demand never brings back a server that maxIdle
    eviction or its idle timeout stopped.
    """
    return (awaited(server, now) and not request_answered(server)) or in_use(server, pool, now)


def idle_running(server: Server, pod: PodView | None, now: datetime) -> bool:
    """Running with no open session and nobody waiting for it: a candidate for maxIdle eviction.

    A client that asked for the start has not opened its session yet while its request is still
    awaited: a server just started for it is not idle. A spare instance waits for no one.
    """
    return pod is not None and pod.ready and server.demand.sessions == 0 and (server.demand.spare
                                                                               or not awaited(server, now))


def last_demand_key(server: Server) -> tuple[float, str]:
    """Sort key: most recently active first, then by name (for a deterministic order)."""
    last = server.demand.last_demand
    return (-last.timestamp() if last else math.inf, server.key)


def deadlines(server: Server, pool: Pool | None, pod: PodView | None) -> list[datetime]:
    """Every moment at which this server's phase or the pool's plan for it may change by itself."""
    demand = server.demand
    if server.deleting or demand.stopped_by_request:
        return []  # only new demand changes anything, and an annotation change syncs anyway
    found: list[datetime | None] = []
    if pod is not None and not pod.terminating and not pod.failed:
        found.append(idle_deadline(server, pool, pod))
        if pod.starting:
            found.append(start_deadline(server, pod))
    if unserved(server) and not request_answered(server):
        found.append(request_expiry(server))  # an unanswered request stops asking
    elif pod is None and demand.last_demand is not None:
        found.append(demand.last_demand + _seconds(server.idle_timeout_in(pool)))  # Stopped -> IdleTimeout
    return [d for d in found if d is not None]


def resync_after(moments: Iterable[datetime], now: datetime) -> float | None:
    """Whole seconds until the earliest future moment (at least 1), or None when there is none."""
    future = [m for m in moments if m > now]
    if not future:
        return None
    return float(max(1, math.ceil((min(future) - now).total_seconds())))


# --- phase and conditions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A server's phase, why, and whether its pool has given it a Pod."""

    phase: str
    reason: str
    message: str
    admitted: bool
    admitted_reason: str
    admitted_message: str


def _pod_failure(server: Server, pod: PodView, now: datetime) -> tuple[str, str] | None:
    """(reason, message) when the Pod shows a problem an operator must act on."""
    waiting, detail = pod.waiting_reason, pod.waiting_message
    suffix = f": {detail}" if detail else ""
    if waiting in Kube.IMAGE_FAILURES:
        image = server.image or "(none)"
        return Reason.IMAGE_PULL_FAILING, f"cannot pull image {image} ({waiting}){suffix}"
    if waiting == Kube.CRASH_LOOP:
        code = f", last exit code {pod.last_exit_code}" if pod.last_exit_code is not None else ""
        return Reason.CRASH_LOOP, f"the server keeps exiting (restarted {pod.restarts} times{code}){suffix}"
    if waiting and waiting not in Kube.NORMAL_WAITING:
        return waiting, f"container server cannot start ({waiting}){suffix}"
    if pod.unschedulable_message is not None:
        return Reason.UNSCHEDULABLE, f"Pod {pod.name} cannot be scheduled: {pod.unschedulable_message}"
    if pod.starting and not within_start(server, pod, now):
        return Reason.START_TIMEOUT, \
            f"Pod {pod.name} was not ready within the start timeout of {server.start_timeout:g}s"
    return None


def _stopping_reason(server: Server, pool: Pool | None, pod: PodView, *, pool_pods: int, outdated: bool,
                     now: datetime) -> tuple[str, str] | None:
    """(reason, message) when the Pod is on its way out (or will be at the pool's next sync)."""
    pool_name = server.pool
    if server.deleting:
        return Reason.DELETING, f"the MCPServer is being deleted; stopping Pod {pod.name}"
    if server.demand.stopped_by_request:
        return Reason.STOPPED_BY_REQUEST, f"a stop was requested; stopping Pod {pod.name}"
    deadline = idle_deadline(server, pool, pod)
    timed_out = not within_start(server, pod, now) and (deadline is None or now >= deadline)
    if timed_out:
        timeout = server.idle_timeout_in(pool)
        return Reason.IDLE_TIMEOUT, f"no requests for the idle timeout of {timeout:g}s; stopping Pod {pod.name}"
    if outdated:
        if in_use(server, pool, now):
            return None  # replaced, not stopped: the verdict says Updating
        return Reason.SPEC_CHANGED, (f"the spec changed and no client holds a session; Pod {pod.name} stops and "
                               "the next request starts the new spec")
    if pod.terminating:
        # The pool evicts only while it runs more Pods than maxIdle; otherwise someone else
        # (a drain, a `kubectl delete pod`, the local runtime closing a connection) stops it.
        if pool is not None and pod.ready and server.demand.spare:
            return Reason.EVICTED, (f"spare stopped by pool {pool_name}: a client needed its slot, or more than "
                                    f"maxIdle={pool.max_idle} idle")
        if pool is not None and pod.ready and server.demand.sessions == 0 and pool_pods > pool.max_idle:
            return Reason.EVICTED, f"stopped by pool {pool_name}: more than maxIdle={pool.max_idle} idle servers"
        return Reason.POD_TERMINATING, f"Pod {pod.name} is terminating"
    return None


def verdict(server: Server, pool: Pool | None, pod: PodView | None, *, pool_pods: int,
            problems: Sequence[SpecError], now: datetime, outdated: bool = False) -> Verdict:
    """The phase of one server, from its demand, its pool (None: missing), its Pod and the pool's Pod count.

    `outdated`: the Pod was built from an earlier spec (or pool defaults) than the current one.
    Metacontroller replaces such a Pod; until the new one is ready the server is `Updating`, never
    `Ready` at the new generation.
    """
    pod_name = pod.name if pod else child_name(server.name)
    if pod is not None:
        admitted = (True, Reason.POD_CREATED, f"pool {server.pool} runs it in Pod {pod.name}")
    elif problems:
        admitted = (False, Reason.INVALID_SPEC, "the pool does not start a server whose spec is invalid")
    elif pool is None:
        admitted = (False, Reason.POOL_NOT_FOUND, f"pool {server.pool!r} not found in namespace {server.namespace!r}")
    elif pending(server, now, pool) and pool_pods >= pool.max_active:
        admitted = (False, Reason.WAITING_FOR_CAPACITY,
                    f"pool {pool.name} has {pool_pods}/{pool.max_active} servers running")
    elif pending(server, now, pool):
        admitted = (False, Reason.SCHEDULING, f"waiting for pool {pool.name} to create the Pod")
    else:
        admitted = (False, Reason.NOT_REQUESTED, "no client is waiting for it")

    def result(phase: str, reason: str, message: str) -> Verdict:
        return Verdict(phase, reason, message, *admitted)

    if problems:
        return result(Phase.DEGRADED, Reason.INVALID_SPEC, "; ".join(f"{p.field}: {p.message}" for p in problems))
    if pool is None:
        return result(Phase.DEGRADED, Reason.POOL_NOT_FOUND,
                      f"pool {server.pool!r} not found in namespace {server.namespace!r}")
    if pod is not None:
        if pod.failed:
            why = ": ".join(s for s in (pod.status_reason, pod.status_message) if s) or "its containers exited"
            return result(Phase.DEGRADED, Reason.POD_FAILED, f"Pod {pod.name} failed: {why}")
        if pod.terminating or outdated or not keep_running(server, pool, pod, now):
            stopping = _stopping_reason(server, pool, pod, pool_pods=pool_pods, outdated=outdated, now=now)
            if stopping is not None:
                return result(Phase.STOPPING, *stopping)
        if outdated:
            return result(Phase.STARTING, Reason.UPDATING, f"Pod {pod.name} runs an earlier spec; it is being replaced")
        failure = _pod_failure(server, pod, now)
        if failure is not None:
            return result(Phase.DEGRADED, *failure)
        if pod.ready:
            return result(Phase.READY, Reason.RUNNING, f"Pod {pod.name} is ready")
        if pod.waiting_reason:
            return result(Phase.STARTING, pod.waiting_reason, f"Pod {pod.name}: container server {pod.waiting_reason}")
        if pod.phase == Kube.POD_PENDING:
            return result(Phase.STARTING, Reason.POD_PENDING, f"Pod {pod.name} is pending")
        return result(Phase.STARTING, Reason.CONTAINERS_NOT_READY, f"Pod {pod.name} is running but not ready yet")
    if server.deleting:
        return result(Phase.IDLE, Reason.DELETING, "the MCPServer is being deleted; no Pod is left")
    if pending(server, now, pool):
        if pool_pods >= pool.max_active:
            return result(Phase.REQUESTED, Reason.WAITING_FOR_CAPACITY,
                          f"pool {pool.name} has {pool_pods}/{pool.max_active} servers running")
        return result(Phase.REQUESTED, Reason.SCHEDULING, f"waiting for pool {pool.name} to create Pod {pod_name}")
    demand = server.demand
    if demand.stopped_by_request:
        return result(Phase.IDLE, Reason.STOPPED_BY_REQUEST, "stopped by request; the next request starts it again")
    last = demand.last_demand
    if last is None:
        return result(Phase.IDLE, Reason.NEVER_REQUESTED, "no client has requested it yet")
    if unserved(server) and not request_answered(server) and demand.requested_at is not None:
        return result(Phase.IDLE, Reason.REQUEST_EXPIRED, f"requested at {format_time(demand.requested_at)} but "
                      f"not started within the start timeout of {server.start_timeout:g}s")
    timeout = server.idle_timeout_in(pool)
    if now >= last + _seconds(timeout):
        return result(Phase.IDLE, Reason.IDLE_TIMEOUT,
                      f"no requests since {format_time(last)} (idle timeout {timeout:g}s)")
    return result(Phase.IDLE, Reason.STOPPED, "not running; the next request starts it again")


def condition(type_: str, status: bool, reason: str, message: str, *, generation: int,
              previous: Any, now: datetime) -> dict[str, Any]:
    """A Kubernetes Condition; lastTransitionTime is kept from `previous` (the parent's last
    status.conditions) while the status does not change."""
    text = "True" if status else "False"
    since = now
    for old in previous if isinstance(previous, list) else ():
        if isinstance(old, Mapping) and old.get("type") == type_ and old.get("status") == text:
            since = parse_time(old.get("lastTransitionTime")) or now
            break
    return {"type": type_, "status": text, "reason": reason, "message": message,
            "lastTransitionTime": format_time(since), "observedGeneration": generation}


def unit_of(server: Server) -> tuple[str, str]:
    """The labels the Pod of a server (or of one instance of it) carries: `PodView.unit`."""
    return (label_value(server.name), server.instance)


def own_pod(server: Server, pods: Iterable[PodView]) -> PodView | None:
    """The server's (or the instance's) Pod among observed ones, matched by label as the pool names them."""
    unit = unit_of(server)
    for pod in pods:
        if pod.unit == unit and (not pod.namespace or pod.namespace == server.namespace):
            return pod
    return None
