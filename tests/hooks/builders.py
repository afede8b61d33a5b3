"""Builders of Metacontroller hook requests, in exactly the shape Metacontroller posts.

Objects look like what an informer cache holds (uid, resourceVersion, creationTimestamp,
ownerReferences, status), and the `controller` is the CompositeController from
metacontroller/controllers.yaml. Times are offsets in seconds from a fixed NOW so that every
request and its response are reproducible.

`rekey(request, version)` rewrites the keys of `children` / `related` for hook version v1
(`name`) or v2 (`namespace/name`); the hooks must answer both alike.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from hooks.children import new_pod_spec, spec_hash
from nmcp.model.naming import child_name, label_value, pod_name
from nmcp.model.resources import (
    ANN_ANSWERS_REQUEST,
    ANN_INSTANCES,
    ANN_LAST_ACTIVE_AT,
    ANN_REQUESTED_AT,
    ANN_SESSIONS,
    ANN_SPEC_HASH,
    ANN_STOP_REQUESTED_AT,
    API_VERSION,
    LABEL_INSTANCE,
    LABEL_POOL,
    LABEL_SERVER,
    InstanceDemand,
    format_time,
    format_time_precise,
    read_pool,
    read_server,
    write_instances,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
NS = "team"
SERVER_KEY = f"MCPServer.{API_VERSION}"
POOL_KEY = f"MCPPool.{API_VERSION}"
POD_KEY = "Pod.v1"
SERVICE_KEY = "Service.v1"
IMAGE = "ghcr.io/example/mcp-time:1.2.0"

_CONTROLLERS = {doc["metadata"]["name"]: doc for doc in
                yaml.safe_load_all((ROOT / "metacontroller" / "controllers.yaml").read_text())}


def at(offset: float, now: datetime = NOW) -> datetime:
    return now + timedelta(seconds=offset)


def t(offset: float, now: datetime = NOW) -> str:
    """A Kubernetes timestamp `offset` seconds from now (negative: in the past)."""
    return format_time(at(offset, now))


def tp(offset: float, now: datetime = NOW) -> str:
    """An annotation timestamp as the gateway writes it (microseconds)."""
    return format_time_precise(at(offset, now))


def uid(*parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def controller(kind: str, runtime: str | None = None) -> dict[str, Any]:
    """The CompositeController object as Metacontroller sends it (kind: pool or server)."""
    doc = copy.deepcopy(_CONTROLLERS[f"nmcp-mcp{kind}"])
    doc["metadata"].update({"uid": uid("controller", kind), "resourceVersion": "101", "generation": 1,
                            "creationTimestamp": t(-86400)})
    if runtime:
        doc["metadata"]["annotations"] = {"nmcp.nwrx.io/runtime": runtime}
    doc["status"] = {}
    return doc


def server(name: str, *, pool: str = "default", ns: str = NS, image: str | None = IMAGE,
           command: list[str] | None = None, transport: dict[str, Any] | None = None,
           idle: Any = "60s", start: Any = "2m", requested: float | None = None, active: float | None = None,
           stop: float | None = None, sessions: int | None = None, deleting: bool = False,
           generation: int = 1, status: dict[str, Any] | None = None, now: datetime = NOW,
           instances: dict[str, tuple[float | None, ...]] | None = None,
           **spec: Any) -> dict[str, Any]:
    """An MCPServer as stored (CRD defaults applied); demand as annotation offsets from now.
    `instances`: instance key -> (requested, active) offsets, for an isolated server, and
    optionally True for a spare instance: (requested, None, True)."""
    annotations: dict[str, str] = {}
    if requested is not None:
        annotations[ANN_REQUESTED_AT] = tp(requested, now)
    if active is not None:
        annotations[ANN_LAST_ACTIVE_AT] = tp(active, now)
    if stop is not None:
        annotations[ANN_STOP_REQUESTED_AT] = tp(stop, now)
    if sessions is not None:
        annotations[ANN_SESSIONS] = str(sessions)
    if instances is not None:
        annotations[ANN_INSTANCES] = write_instances({
            key: InstanceDemand(None if r is None else at(r, now), None if a is None else at(a, now), *spare)
            for key, (r, a, *spare) in instances.items()})
    body: dict[str, Any] = {"pool": pool, "transport": transport or {"type": "stdio"}, "isolation": "shared"}
    if image:
        body["image"] = image
    if command:
        body["command"] = command
    if idle is not None:
        body["idleTimeout"] = idle
    if start is not None:
        body["startTimeout"] = start
    body.update(spec)
    meta: dict[str, Any] = {
        "name": name, "namespace": ns, "uid": uid("server", ns, name), "resourceVersion": "2001",
        "generation": generation, "creationTimestamp": t(-3600, now),
        "finalizers": ["metacontroller.io/compositecontroller-nmcp-mcpserver"],
    }
    if annotations:
        meta["annotations"] = annotations
    if deleting:
        meta["deletionTimestamp"] = t(-1, now)
        meta["deletionGracePeriodSeconds"] = 0
    obj = {"apiVersion": API_VERSION, "kind": "MCPServer", "metadata": meta, "spec": body}
    if status is not None:
        obj["status"] = status
    return obj


def pool(name: str = "default", *, ns: str = NS, max_active: int = 5, max_idle: int = 2, idle: Any = "60s",
         resources: dict[str, Any] | None = None, deleting: bool = False, generation: int = 1,
         status: dict[str, Any] | None = None, now: datetime = NOW) -> dict[str, Any]:
    spec: dict[str, Any] = {"maxActive": max_active, "maxIdle": max_idle, "defaultIdleTimeout": idle}
    if resources:
        spec["defaultResources"] = resources
    meta: dict[str, Any] = {
        "name": name, "namespace": ns, "uid": uid("pool", ns, name), "resourceVersion": "3001",
        "generation": generation, "creationTimestamp": t(-86400, now),
        "finalizers": ["metacontroller.io/compositecontroller-nmcp-mcppool"],
    }
    if deleting:
        meta["deletionTimestamp"] = t(-1, now)
    obj = {"apiVersion": API_VERSION, "kind": "MCPPool", "metadata": meta, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


def pod(server_name: str, *, pool_name: str = "default", ns: str = NS, created: float = -30,
        ready: float | None = None, phase: str | None = None, waiting: tuple[str, str] | None = None,
        terminating: bool = False, unschedulable: str | None = None, restarts: int = 0,
        exit_code: int | None = None, failed: tuple[str, str] | None = None, answers: float | None = None,
        built_for: dict[str, Any] | None = None, instance: str = "", now: datetime = NOW) -> dict[str, Any]:
    """An observed Pod of a server. `ready`: seconds offset of its Ready transition (None: not ready);
    `answers`: offset of the request it was made for; `built_for`: the MCPServer whose spec it runs
    (default: `server(server_name)`, so a server of another spec sees it as outdated); `instance`:
    the instance of an isolated server it runs."""
    name = pod_name(server_name, instance)
    source = built_for or server(server_name, pool=pool_name, ns=ns)
    annotations = {"metacontroller.k8s.io/last-applied-configuration": "{}",
                   ANN_SPEC_HASH: spec_hash(new_pod_spec(read_server(source), read_pool(pool(pool_name, ns=ns))))}
    if answers is not None:
        annotations[ANN_ANSWERS_REQUEST] = tp(answers, now)
    conditions: list[dict[str, Any]] = []
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": unschedulable, "lastTransitionTime": t(created, now)})
    else:
        conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": t(created, now)})
        conditions.append({"type": "Initialized", "status": "True", "lastTransitionTime": t(created, now)})
        conditions.append({"type": "Ready", "status": "True" if ready is not None else "False",
                           "lastTransitionTime": t(ready if ready is not None else created, now),
                           **({} if ready is not None else {"reason": "ContainersNotReady",
                                                             "message": "containers with unready status: [server]"})})
    state: dict[str, Any]
    if waiting:
        state = {"waiting": {"reason": waiting[0], **({"message": waiting[1]} if waiting[1] else {})}}
    elif ready is not None:
        state = {"running": {"startedAt": t(ready, now)}}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    cstatus: dict[str, Any] = {"name": "server", "image": IMAGE, "imageID": "", "ready": ready is not None,
                               "restartCount": restarts, "started": ready is not None, "state": state,
                               "lastState": {}}
    if exit_code is not None:
        cstatus["lastState"] = {"terminated": {"exitCode": exit_code, "reason": "Error",
                                               "startedAt": t(-20, now), "finishedAt": t(-10, now)}}
    status: dict[str, Any] = {"phase": phase or ("Running" if ready is not None else "Pending"),
                              "conditions": conditions, "qosClass": "BestEffort"}
    if not unschedulable:
        status.update({"hostIP": "10.0.0.5", "podIP": "10.244.1.7", "startTime": t(created, now),
                       "containerStatuses": [cstatus]})
    if failed:
        status.update({"phase": "Failed", "reason": failed[0], "message": failed[1]})
        status["containerStatuses"] = [{**cstatus, "ready": False, "started": False,
                                        "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]
    meta: dict[str, Any] = {
        "name": name, "namespace": ns, "uid": uid("pod", ns, name), "resourceVersion": "4001",
        "creationTimestamp": t(created, now),
        "labels": {LABEL_SERVER: label_value(server_name), LABEL_POOL: label_value(pool_name),
                   "app.kubernetes.io/name": "mcp-server", "app.kubernetes.io/instance": label_value(server_name),
                   "app.kubernetes.io/managed-by": "nmcp", "controller-uid": uid("pool", ns, pool_name),
                   **({LABEL_INSTANCE: instance} if instance else {})},
        "annotations": annotations,
        "ownerReferences": [{"apiVersion": API_VERSION, "kind": "MCPPool", "name": pool_name,
                             "uid": uid("pool", ns, pool_name), "controller": True, "blockOwnerDeletion": True}],
    }
    if terminating:
        meta["deletionTimestamp"] = t(-1, now)
        meta["deletionGracePeriodSeconds"] = 10
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "server", "image": IMAGE}], "restartPolicy": "Always",
                     "nodeName": "node-1"},
            "status": status}


def service(server_name: str, *, pool_name: str = "default", ns: str = NS, port: int = 8080) -> dict[str, Any]:
    name = child_name(server_name)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "uid": uid("svc", ns, name), "resourceVersion": "5001",
                         "labels": {LABEL_SERVER: label_value(server_name), LABEL_POOL: label_value(pool_name)},
                         "ownerReferences": [{"apiVersion": API_VERSION, "kind": "MCPPool", "name": pool_name,
                                              "uid": uid("pool", ns, pool_name), "controller": True}]},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.12",
                     "selector": {LABEL_SERVER: label_value(server_name)},
                     "ports": [{"name": "mcp", "port": port, "targetPort": port, "protocol": "TCP"}]},
            "status": {"loadBalancer": {}}}


def _keyed(objs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in objs}


def pool_request(parent: dict[str, Any], servers: Sequence[dict[str, Any]], pods: Sequence[dict[str, Any]] = (),
                 services: Sequence[dict[str, Any]] = (), *, finalizing: bool = False,
                 runtime: str | None = None) -> dict[str, Any]:
    """A v2 MCPPool sync (or finalize) request."""
    return {"controller": controller("pool", runtime), "parent": parent,
            "children": {POD_KEY: _keyed(list(pods)), SERVICE_KEY: _keyed(list(services))},
            "related": {SERVER_KEY: _keyed(list(servers))}, "finalizing": finalizing}


def server_request(parent: dict[str, Any], pool_obj: dict[str, Any] | None, pods: Sequence[dict[str, Any]] = (),
                   *, finalizing: bool = False, runtime: str | None = None) -> dict[str, Any]:
    """A v2 MCPServer sync (or finalize) request: it owns nothing, relates its pool and its own Pod."""
    return {"controller": controller("server", runtime), "parent": parent, "children": {},
            "related": {POOL_KEY: _keyed([pool_obj] if pool_obj else []), POD_KEY: _keyed(list(pods))},
            "finalizing": finalizing}


def customize_request(kind: str, parent: dict[str, Any]) -> dict[str, Any]:
    return {"controller": controller(kind), "parent": parent}


def rekey(request: dict[str, Any], version: str) -> dict[str, Any]:
    """The same request with `children` / `related` keyed as hook version v1 or v2 does."""
    out = dict(request)
    for field in ("children", "related"):
        if field not in request:
            continue
        out[field] = {
            type_key: {(f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" if version == "v2"
                        else o["metadata"]["name"]): o for o in objs.values()}
            for type_key, objs in request[field].items()
        }
    return out
