"""The hook entry points: one Metacontroller request body in, one response body out.

    sync_pool(request, now)      MCPPool sync and finalize (request["finalizing"])
    sync_server(request, now)    MCPServer sync and finalize
    customize_pool(request)      MCPPool relates the MCPServers of its namespace
    customize_server(request)    MCPServer relates its pool and its own Pod

The pool is the one decision point for Pods (`admission.plan_pool`); a server only reports its
own phase (`lifecycle.verdict`). Both read the same definitions, so they agree. `nmcp up` builds
Metacontroller-shaped requests and calls these functions directly.

Each controller decides from data it owns or observes directly, never from the other's status,
which lags by seconds to a minute under load. Whether a start answered a request is recorded by
the pool itself: on the Pod it makes (annotation `answers-request`) and, once that Pod is gone,
in its own `status.answeredRequests` for as long as the request could still ask for a start.

Hook versions: the keys of `children` and `related` differ between v1 (`name`) and v2
(`namespace/name`), so they are never read; objects are found by their type's kind and checked
by their own metadata. Responses hold only documented keys (v2 decodes them strictly).

Status is computed from what was observed, and is identical on repeated syncs of the same
state (condition times are carried over), so a sync never triggers another one by itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from hooks import lifecycle
from hooks.admission import plan_pool
from hooks.children import desired_children, new_pod_spec, spec_hash
from hooks.lifecycle import PodView, read_pod
from hooks.schemas import CustomizeResponse, SyncResponse
from nmcp.model.naming import child_name, label_value
from nmcp.model.resources import (
    API_VERSION,
    LABEL_SERVER,
    Demand,
    Pool,
    Server,
    SpecError,
    format_time,
    format_time_precise,
    parse_time,
    read_pool,
    read_server,
)
from nmcp.model.vocabulary import Condition, Phase, Reason


def objects(groups: Any, kind: str) -> Iterator[Mapping[str, Any]]:
    """The objects of one kind in a `children` / `related` map, whatever the keys' format."""
    if not isinstance(groups, Mapping):
        return
    for type_key, items in groups.items():
        # "Kind.version" or "Kind.group/version": the kind never contains a dot.
        if str(type_key).split(".", 1)[0] == kind and isinstance(items, Mapping):
            yield from (obj for obj in items.values() if isinstance(obj, Mapping))


def _previous_status(parent: Mapping[str, Any]) -> Mapping[str, Any]:
    status = parent.get("status")
    return status if isinstance(status, Mapping) else {}


def _namespace(parent: Mapping[str, Any]) -> str:
    meta = parent.get("metadata")
    return str((meta or {}).get("namespace") or "default") if isinstance(meta, Mapping) else "default"


# The field of the problem `_trial` reports: not a spec field, the server as a whole.
UNRECONCILABLE = "(server)"


def _trial(server: Server, pool: Pool | None, pod: PodView | None, now: datetime) -> tuple[SpecError, ...]:
    """A problem when nmcp cannot compute with this server's data, else nothing.

    Defence in depth: `nmcp.model.resources` caps every value the schema lets through, so this should
    never find anything. If a value slips past the caps anyway, the server shows Degraded with
    the error named, instead of its hook (and its pool's, which would stop every other server of
    the pool) answering 500 on every sync. Runs the per-server time arithmetic once, result unused.
    """
    try:
        lifecycle.deadlines(server, pool, pod)
        lifecycle.keep_running(server, pool, pod, now)
        lifecycle.pending(server, now, pool)
        lifecycle.awaited(server, now)
    except (ArithmeticError, ValueError, TypeError) as err:
        return (SpecError(UNRECONCILABLE, f"nmcp cannot reconcile this server ({type(err).__name__}: {err}); "
                                          "check its spec and annotations"),)
    return ()


# --- MCPPool --------------------------------------------------------------------------------------


def _pool_status(pool: Pool, *, active: int, idle: int, waiting: int, stopped: int, servers: int,
                 ready: tuple[bool, str, str], previous: Mapping[str, Any], now: datetime,
                 answered: Mapping[str, str] | None = None) -> dict[str, Any]:
    old = previous.get("conditions")
    full = active >= pool.max_active
    running = f"{active}/{pool.max_active} servers running"
    capacity = (True, Reason.POOL_FULL, f"{running}, {waiting} waiting") if full \
        else (False, Reason.HAS_CAPACITY, running)
    status: dict[str, Any] = {
        "active": active,
        "idle": idle,
        "waiting": waiting,
        "stopped": stopped,
        "servers": servers,
    }
    if answered:
        status["answeredRequests"] = dict(sorted(answered.items()))
    return status | {
        "conditions": [
            lifecycle.condition(Condition.READY, *ready, generation=pool.generation, previous=old, now=now),
            lifecycle.condition(Condition.AT_CAPACITY, *capacity, generation=pool.generation, previous=old, now=now),
        ],
        "observedGeneration": pool.generation,
    }


def _pool_servers(request: Mapping[str, Any], pool: Pool) -> list[Server]:
    servers: dict[str, Server] = {}
    for obj in objects(request.get("related"), "MCPServer"):
        spec = obj.get("spec")
        if isinstance(spec, Mapping) and str(spec.get("pool") or "default") != pool.name:
            continue  # another pool's server: cheap to skip before reading it in full
        server = read_server(obj, pool.namespace)
        if server.pool == pool.name and server.namespace == pool.namespace:
            servers[server.key] = server
    return [servers[key] for key in sorted(servers)]


def _units(server: Server) -> list[Server]:
    """What of a server its pool runs: the server itself, or, isolated, each instance asked for."""
    if not server.isolated:
        return [server]
    return [server.instance_view(key) for key in sorted(server.demand.instances)]


def _answer_key(server: Server) -> str:
    """A server's (or an instance's) key in the pool's `status.answeredRequests`."""
    return f"{server.name}#{server.instance}" if server.instance else server.name


def _with_answer(server: Server, pod: PodView | None, pool: Pool | None) -> Server:
    """`server` with the latest request a start of it answered, from its Pod and the pool's record."""
    recorded = pool.answered.get(_answer_key(server)) if pool else None
    times = [t for t in (pod.answered_at if pod else None, recorded) if t]
    return dataclasses.replace(server, answered_at=max(times)) if times else server


def _answers(server: Server, pods: Mapping[tuple[str, str], PodView]) -> str | None:
    """The answers-request annotation of a server's desired Pod.

    A Pod that runs keeps the value it was made with (a changed annotation would read as a change
    of the Pod, and `Recreate` would replace it); a new Pod answers the latest request.
    """
    pod = pods.get(lifecycle.unit_of(server))
    if pod is not None:
        return pod.answers or None
    requested = server.demand.requested_at
    return format_time_precise(requested) if requested else None


def _answered_requests(servers: Sequence[Server], now: datetime) -> dict[str, str]:
    """What the pool remembers in its status once a Pod is gone: each answered request that is
    still recent enough to ask for a start (older ones cannot, so the record stays small)."""
    return {_answer_key(s): format_time_precise(s.answered_at) for s in servers
            if s.answered_at is not None and lifecycle.request_answered(s) and lifecycle.awaited(s, now)}


def sync_pool(request: Mapping[str, Any], now: datetime) -> SyncResponse:
    """MCPPool sync (admission: the desired Pods and Services) and finalize (drop them all)."""
    parent = request["parent"]
    pool = read_pool(parent)
    runtime = lifecycle.runtime_of(request.get("controller"))
    children = request.get("children")
    pods = [read_pod(obj) for obj in objects(children, "Pod")]
    services = sum(1 for _ in objects(children, "Service"))
    servers = _pool_servers(request, pool)
    previous = _previous_status(parent)

    if request.get("finalizing"):
        left = len(pods) + services
        message = (f"the pool is being deleted; waiting for {len(pods)} Pods and {services} Services to go"
                   if left else "the pool is being deleted; nothing left")
        ready = (False, Reason.DELETING, message)
        with_pod = {pod.server_label for pod in pods}
        stopped = sum(1 for s in servers if label_value(s.name) not in with_pod)
        status = _pool_status(pool, active=len(pods), idle=0, waiting=0, stopped=stopped, servers=len(servers),
                              ready=ready, previous=previous, now=now)
        return {"status": status, "children": [], "finalized": left == 0}

    by_unit = {pod.unit: pod for pod in pods}
    units_of = {s.key: [_with_answer(u, by_unit.get(lifecycle.unit_of(u)), pool) for u in _units(s)]
                for s in servers}
    units = [u for s in servers for u in units_of[s.key]]
    problems = {u.key: lifecycle.spec_problems(u, runtime) + _trial(u, pool, by_unit.get(lifecycle.unit_of(u)), now)
                for u in units}
    # A unit nmcp cannot compute with stays out of the plan (no Pod, counted as stopped):
    # one server's data never fails its pool's sync, which would stop every other server's.
    broken = {u.key for u in units if any(p.field == UNRECONCILABLE for p in problems[u.key])}
    plan = plan_pool(pool, [u for u in units if u.key not in broken], pods, problems, now)
    waiting = len(plan.waiting)
    stopped_units = broken | {u.key for u in plan.stopped}
    # A server is stopped when none of its units runs or waits (an isolated one with no instance too).
    stopped = sum(1 for s in servers if all(u.key in stopped_units for u in units_of[s.key]))
    if pool.problems:
        # Each problem says what is used instead (nmcp.model.resources.read_pool).
        ready = (False, Reason.INVALID_SPEC, "; ".join(f"{p.field}: {p.message}" for p in pool.problems))
    else:
        ready = (True, Reason.RECONCILED, f"{plan.occupied}/{pool.max_active} servers running, {waiting} waiting")
    status = _pool_status(pool, active=plan.occupied, idle=len(plan.idle), waiting=waiting,
                          stopped=stopped, servers=len(servers), ready=ready,
                          previous=previous, now=now,
                          answered=_answered_requests(units, now))
    response: SyncResponse = {
        "status": status,
        "children": [child for unit in plan.running
                     for child in desired_children(unit, pool, _answers(unit, by_unit))],
    }
    if plan.resync_after:
        response["resyncAfterSeconds"] = plan.resync_after
    return response


def customize_pool(request: Mapping[str, Any]) -> CustomizeResponse:
    """A pool relates every MCPServer of its namespace (filtered by spec.pool in sync)."""
    # spec.pool is not a label, so it cannot be selected on; the filter happens in sync_pool.
    return {"relatedResources": [
        {"apiVersion": API_VERSION, "resource": "mcpservers", "namespace": _namespace(request["parent"]),
         "labelSelector": {}},
    ]}


# --- MCPServer ------------------------------------------------------------------------------------


def _server_status(server: Server, pool: Pool | None, verdict: lifecycle.Verdict, pod: PodView | None, *,
                   previous: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    old = previous.get("conditions")
    gen = server.generation
    status: dict[str, Any] = {
        "phase": verdict.phase,
        "conditions": [
            lifecycle.condition(Condition.READY, verdict.phase == Phase.READY, verdict.reason, verdict.message,
                                generation=gen, previous=old, now=now),
            lifecycle.condition(Condition.ADMITTED, verdict.admitted, verdict.admitted_reason, verdict.admitted_message,
                                generation=gen, previous=old, now=now),
        ],
    }
    demand = server.demand
    if demand.requested_at:
        status["requestedAt"] = format_time(demand.requested_at)
    if demand.last_active_at:
        status["lastActiveAt"] = format_time(demand.last_active_at)
    started = pod.started_at if pod else parse_time(previous.get("startedAt"))
    if started:
        # Sub-second precision where the Pod has it (nmcp up's do).
        status["startedAt"] = format_time_precise(started) if started.microsecond else format_time(started)
    # A Pod seen last time and gone now has just stopped; otherwise keep the last known stop.
    stopped = now if pod is None and previous.get("podName") else parse_time(previous.get("stoppedAt"))
    if stopped:
        status["stoppedAt"] = format_time(stopped)
    status["sessions"] = demand.sessions
    if pool is not None:
        # For the gateway, which reads servers but not pools: its activity writes and session
        # expiry follow the pool's default too.
        status["idleTimeout"] = f"{server.idle_timeout_in(pool):g}s"
        if server.isolation == "session":
            status["warmSpares"] = pool.max_idle  # new sessions take a spare instead of a cold start
    if pod is not None:
        status["podName"] = pod.name
    status["observedGeneration"] = gen
    return status


def _related_pool(request: Mapping[str, Any], server: Server) -> Pool | None:
    for obj in objects(request.get("related"), "MCPPool"):
        pool = read_pool(obj, server.namespace)
        if pool.name == server.pool and pool.namespace == server.namespace:
            return pool
    return None


def sync_server(request: Mapping[str, Any], now: datetime) -> SyncResponse:
    """MCPServer sync (phase, conditions, timestamps) and finalize (done once its Pods are gone)."""
    parent = request["parent"]
    server = read_server(parent)
    pool = _related_pool(request, server)
    pods = [read_pod(obj) for obj in objects(request.get("related"), "Pod")]
    if server.isolated:
        return _sync_isolated(request, server, pool, pods, now)
    pod = lifecycle.own_pod(server, pods)
    server = _with_answer(server, pod, pool)
    trial = _trial(server, pool, pod, now)
    problems = lifecycle.spec_problems(server, lifecycle.runtime_of(request.get("controller"))) + trial
    outdated = not trial and pod is not None and pod.spec_hash != spec_hash(new_pod_spec(server, pool))
    # How full the pool is only shapes a message (WaitingForCapacity), so the pool's own last
    # count will do; counting its Pods here would re-sync every server on every Pod event.
    verdict = lifecycle.verdict(server, pool, pod, pool_pods=pool.active if pool else 0, problems=problems,
                                now=now, outdated=outdated)
    status = _server_status(server, pool, verdict, pod, previous=_previous_status(parent), now=now)
    status["runningInstances"] = int(pod is not None and not pod.terminating)
    response: SyncResponse = {"status": status, "children": []}
    if request.get("finalizing"):
        # The pool drops the Pod of a server being deleted; done once it is observed gone.
        response["finalized"] = pod is None
        return response
    resync = None if trial else lifecycle.resync_after(lifecycle.deadlines(server, pool, pod), now)
    if resync:
        response["resyncAfterSeconds"] = resync
    return response


# The phase an isolated server shows is that of its most advanced instance.
_PHASE_ORDER = (Phase.READY, Phase.STARTING, Phase.REQUESTED, Phase.DEGRADED, Phase.STOPPING, Phase.IDLE)


def _sync_isolated(request: Mapping[str, Any], server: Server, pool: Pool | None, pods: Sequence[PodView],
                   now: datetime) -> SyncResponse:
    """An isolated server: each instance asked for gets the verdict a server would (`status.instances`,
    which the gateway waits on), and the server shows its most advanced instance's phase."""
    runtime = lifecycle.runtime_of(request.get("controller"))
    own = [pod for pod in pods if pod.server_label == label_value(server.name)]
    pool_pods = pool.active if pool else 0
    instances: dict[str, dict[str, str]] = {}
    verdicts: list[lifecycle.Verdict] = []
    moments: list[datetime] = []
    for key in sorted(server.demand.instances):
        pod = lifecycle.own_pod(server.instance_view(key), own)
        unit = _with_answer(server.instance_view(key), pod, pool)
        trial = _trial(unit, pool, pod, now)
        problems = lifecycle.spec_problems(unit, runtime) + trial
        outdated = not trial and pod is not None and pod.spec_hash != spec_hash(new_pod_spec(unit, pool))
        verdict = lifecycle.verdict(unit, pool, pod, pool_pods=pool_pods, problems=problems, now=now,
                                    outdated=outdated)
        instances[unit.instance] = {"phase": verdict.phase, "reason": verdict.reason, "message": verdict.message}
        if pod is not None:
            instances[unit.instance]["podName"] = pod.name
        verdicts.append(verdict)
        if not trial:
            moments.extend(lifecycle.deadlines(unit, pool, pod))
    # The server as a whole, without an instance: what it shows when none is asked for (Idle, or
    # Degraded for a bad spec or a missing pool, whatever its instances say).
    latest = max((t for i in server.demand.instances.values() for t in (i.requested_at, i.last_active_at) if t),
                 default=server.demand.last_active_at)
    whole = dataclasses.replace(server, demand=Demand(last_active_at=latest,
                                                      stop_requested_at=server.demand.stop_requested_at))
    trial = _trial(whole, pool, None, now)
    problems = lifecycle.spec_problems(whole, runtime) + trial
    verdict = lifecycle.verdict(whole, pool, None, pool_pods=pool_pods, problems=problems, now=now)
    if verdicts and not problems and pool is not None:
        verdict = min(verdicts, key=lambda v: _PHASE_ORDER.index(v.phase))
        if verdict.phase == Phase.READY:
            ready = sum(1 for v in verdicts if v.phase == Phase.READY)
            verdict = dataclasses.replace(verdict, message=f"{ready} of {len(verdicts)} instances ready")
    status = _server_status(whole, pool, verdict, None, previous=_previous_status(request["parent"]), now=now)
    status["sessions"] = server.demand.sessions
    if instances:
        status["instances"] = instances
    status["runningInstances"] = sum(1 for pod in own if not pod.terminating)
    response: SyncResponse = {"status": status, "children": []}
    if request.get("finalizing"):
        response["finalized"] = not own
        return response
    if not trial:
        moments.extend(lifecycle.deadlines(whole, pool, None))
    resync = lifecycle.resync_after(moments, now)
    if resync:
        response["resyncAfterSeconds"] = resync
    return response


def customize_server(request: Mapping[str, Any]) -> CustomizeResponse:
    """A server relates its pool and its own Pod, both by name: no other Pod's events sync it. An
    isolated server relates its instances' Pods by its server label."""
    server = read_server(request["parent"])
    own_pods: dict[str, Any] = (
        {"labelSelector": {"matchLabels": {LABEL_SERVER: label_value(server.name)}}} if server.isolated
        else {"names": [child_name(server.name)]})
    return {"relatedResources": [
        {"apiVersion": API_VERSION, "resource": "mcppools", "namespace": server.namespace, "names": [server.pool]},
        {"apiVersion": "v1", "resource": "pods", "namespace": server.namespace, **own_pods},
    ]}
