"""The hook entry points: one Metacontroller request body in, one response body out.

    sync_pool(request, now)      MCPPool sync and finalize (request["finalizing"])
    sync_server(request, now)    MCPServer sync and finalize
    customize_pool(request)      MCPPool relates the MCPServers of its namespace
    customize_server(request)    MCPServer relates its pool and the pool's Pods

The pool is the one decision point for Pods (`admission.plan_pool`); a server only reports its
own phase (`lifecycle.verdict`). Both read the same definitions, so they agree. `nmcp up` builds
Metacontroller-shaped requests and calls these functions directly.

Hook versions: the keys of `children` and `related` differ between v1 (`name`) and v2
(`namespace/name`), so they are never read; objects are found by their type's kind and checked
by their own metadata. Responses hold only documented keys (v2 decodes them strictly).

Status is computed from what was observed, and is identical on repeated syncs of the same
state (condition times are carried over), so a sync never triggers another one by itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from hooks import lifecycle
from hooks.admission import plan_pool
from hooks.children import desired_children
from hooks.lifecycle import PodView, read_pod
from hooks.schemas import CustomizeResponse, SyncResponse
from nmcp.naming import label_value
from nmcp.resources import (
    API_VERSION,
    LABEL_POOL,
    Pool,
    Server,
    format_time,
    format_time_precise,
    parse_time,
    read_pool,
    read_server,
)


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


# --- MCPPool --------------------------------------------------------------------------------------


def _pool_status(pool: Pool, *, active: int, idle: int, waiting: int, stopped: int, servers: int,
                 ready: tuple[bool, str, str], previous: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    old = previous.get("conditions")
    full = active >= pool.max_active
    running = f"{active}/{pool.max_active} servers running"
    capacity = (True, "PoolFull", f"{running}, {waiting} waiting") if full else (False, "HasCapacity", running)
    return {
        "active": active,
        "idle": idle,
        "waiting": waiting,
        "stopped": stopped,
        "servers": servers,
        "conditions": [
            lifecycle.condition("Ready", *ready, generation=pool.generation, previous=old, now=now),
            lifecycle.condition("AtCapacity", *capacity, generation=pool.generation, previous=old, now=now),
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
        ready = (False, "Deleting", message)
        with_pod = {pod.server_label for pod in pods}
        stopped = sum(1 for s in servers if label_value(s.name) not in with_pod)
        status = _pool_status(pool, active=len(pods), idle=0, waiting=0, stopped=stopped, servers=len(servers),
                              ready=ready, previous=previous, now=now)
        return {"status": status, "children": [], "finalized": left == 0}

    problems = {s.key: lifecycle.spec_problems(s, runtime) for s in servers}
    plan = plan_pool(pool, servers, pods, problems, now)
    waiting = len(plan.waiting)
    ready = (True, "Reconciled", f"{plan.occupied}/{pool.max_active} servers running, {waiting} waiting")
    status = _pool_status(pool, active=plan.occupied, idle=len(plan.idle), waiting=waiting,
                          stopped=len(plan.stopped), servers=len(servers), ready=ready, previous=previous, now=now)
    response: SyncResponse = {
        "status": status,
        "children": [child for server in plan.running for child in desired_children(server, pool)],
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


def _server_status(server: Server, verdict: lifecycle.Verdict, pod: PodView | None,
                   previous: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    old = previous.get("conditions")
    gen = server.generation
    status: dict[str, Any] = {
        "phase": verdict.phase,
        "conditions": [
            lifecycle.condition("Ready", verdict.phase == lifecycle.READY, verdict.reason, verdict.message,
                                generation=gen, previous=old, now=now),
            lifecycle.condition("Admitted", verdict.admitted, verdict.admitted_reason, verdict.admitted_message,
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
        # Sub-second precision where the Pod has it (nmcp up's do): whether a start answered a
        # request (lifecycle.started_since_request) can hinge on the fraction.
        status["startedAt"] = format_time_precise(started) if started.microsecond else format_time(started)
    # A Pod seen last time and gone now has just stopped; otherwise keep the last known stop.
    stopped = now if pod is None and previous.get("podName") else parse_time(previous.get("stoppedAt"))
    if stopped:
        status["stoppedAt"] = format_time(stopped)
    status["sessions"] = demand.sessions
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


def _pool_pods(request: Mapping[str, Any], server: Server) -> Sequence[PodView]:
    label = label_value(server.pool)
    pods = (read_pod(obj) for obj in objects(request.get("related"), "Pod"))
    return [p for p in pods if p.pool_label == label and p.namespace in ("", server.namespace)]


def sync_server(request: Mapping[str, Any], now: datetime) -> SyncResponse:
    """MCPServer sync (phase, conditions, timestamps) and finalize (done once its Pod is gone)."""
    parent = request["parent"]
    server = read_server(parent)
    pool = _related_pool(request, server)
    pool_pods = _pool_pods(request, server)
    pod = lifecycle.own_pod(server, pool_pods)
    problems = lifecycle.spec_problems(server, lifecycle.runtime_of(request.get("controller")))
    verdict = lifecycle.verdict(server, pool, pod, pool_pods=len(pool_pods), problems=problems, now=now)
    response: SyncResponse = {
        "status": _server_status(server, verdict, pod, _previous_status(parent), now),
        "children": [],
    }
    if request.get("finalizing"):
        # The pool drops the Pod of a server being deleted; done once it is observed gone.
        response["finalized"] = pod is None
        return response
    resync = lifecycle.resync_after(lifecycle.deadlines(server, pool, pod), now)
    if resync:
        response["resyncAfterSeconds"] = resync
    return response


def customize_server(request: Mapping[str, Any]) -> CustomizeResponse:
    """A server relates its pool (by name) and the Pods of that pool (by label)."""
    server = read_server(request["parent"])
    return {"relatedResources": [
        {"apiVersion": API_VERSION, "resource": "mcppools", "namespace": server.namespace, "names": [server.pool]},
        {"apiVersion": "v1", "resource": "pods", "namespace": server.namespace,
         "labelSelector": {"matchLabels": {LABEL_POOL: label_value(server.pool)}}},
    ]}
