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


def _with_answer(server: Server, pod: PodView | None, pool: Pool | None) -> Server:
    """`server` with the latest request a start of it answered, from its Pod and the pool's record."""
    times = [t for t in (pod.answered_at if pod else None, pool.answered.get(server.name) if pool else None) if t]
    return dataclasses.replace(server, answered_at=max(times)) if times else server


def _answers(server: Server, pods: Mapping[str, PodView]) -> str | None:
    """The answers-request annotation of a server's desired Pod.

    A Pod that runs keeps the value it was made with (a changed annotation would read as a change
    of the Pod, and `Recreate` would replace it); a new Pod answers the latest request.
    """
    pod = pods.get(label_value(server.name))
    if pod is not None:
        return pod.answers or None
    requested = server.demand.requested_at
    return format_time_precise(requested) if requested else None


def _answered_requests(servers: Sequence[Server], now: datetime) -> dict[str, str]:
    """What the pool remembers in its status once a Pod is gone: each answered request that is
    still recent enough to ask for a start (older ones cannot, so the record stays small)."""
    return {s.name: format_time_precise(s.answered_at) for s in servers
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

    by_label = {pod.server_label: pod for pod in pods}
    servers = [_with_answer(s, by_label.get(label_value(s.name)), pool) for s in servers]
    problems = {s.key: lifecycle.spec_problems(s, runtime) + _trial(s, pool, by_label.get(label_value(s.name)), now)
                for s in servers}
    # A server nmcp cannot compute with stays out of the plan (no Pod, counted as stopped):
    # one server's data never fails its pool's sync, which would stop every other server's.
    broken = [s for s in servers if any(p.field == UNRECONCILABLE for p in problems[s.key])]
    servers = [s for s in servers if s not in broken]
    plan = plan_pool(pool, servers, pods, problems, now)
    waiting = len(plan.waiting)
    if pool.problems:
        # Each problem says what is used instead (nmcp.model.resources.read_pool).
        ready = (False, Reason.INVALID_SPEC, "; ".join(f"{p.field}: {p.message}" for p in pool.problems))
    else:
        ready = (True, Reason.RECONCILED, f"{plan.occupied}/{pool.max_active} servers running, {waiting} waiting")
    status = _pool_status(pool, active=plan.occupied, idle=len(plan.idle), waiting=waiting,
                          stopped=len(plan.stopped) + len(broken), servers=len(servers) + len(broken), ready=ready,
                          previous=previous, now=now,
                          answered=_answered_requests(servers, now))
    response: SyncResponse = {
        "status": status,
        "children": [child for server in plan.running
                     for child in desired_children(server, pool, _answers(server, by_label))],
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
    """MCPServer sync (phase, conditions, timestamps) and finalize (done once its Pod is gone)."""
    parent = request["parent"]
    server = read_server(parent)
    pool = _related_pool(request, server)
    pod = lifecycle.own_pod(server, (read_pod(obj) for obj in objects(request.get("related"), "Pod")))
    server = _with_answer(server, pod, pool)
    trial = _trial(server, pool, pod, now)
    problems = lifecycle.spec_problems(server, lifecycle.runtime_of(request.get("controller"))) + trial
    outdated = not trial and pod is not None and pod.spec_hash != spec_hash(new_pod_spec(server, pool))
    # How full the pool is only shapes a message (WaitingForCapacity), so the pool's own last
    # count will do; counting its Pods here would re-sync every server on every Pod event.
    verdict = lifecycle.verdict(server, pool, pod, pool_pods=pool.active if pool else 0, problems=problems,
                                now=now, outdated=outdated)
    response: SyncResponse = {
        "status": _server_status(server, pool, verdict, pod, previous=_previous_status(parent), now=now),
        "children": [],
    }
    if request.get("finalizing"):
        # The pool drops the Pod of a server being deleted; done once it is observed gone.
        response["finalized"] = pod is None
        return response
    resync = None if trial else lifecycle.resync_after(lifecycle.deadlines(server, pool, pod), now)
    if resync:
        response["resyncAfterSeconds"] = resync
    return response


def customize_server(request: Mapping[str, Any]) -> CustomizeResponse:
    """A server relates its pool and its own Pod, both by name: no other Pod's events sync it."""
    server = read_server(request["parent"])
    return {"relatedResources": [
        {"apiVersion": API_VERSION, "resource": "mcppools", "namespace": server.namespace, "names": [server.pool]},
        {"apiVersion": "v1", "resource": "pods", "namespace": server.namespace, "names": [child_name(server.name)]},
    ]}
