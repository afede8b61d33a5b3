"""What Metacontroller would send the hooks, built in-process.

The request bodies are exactly Metacontroller's (hook version v2, `reference/metacontroller.md`
§2.2 and §2.5): the CompositeController object (carrying `nmcp.nwrx.io/runtime: local`, which is
how the hooks know a server runs as a local process), the parent, its owned children keyed
`namespace/name` with one map per child type, and the related objects selected by the rules the
customize hook returned (namespace, names, label selector; §3.2). `plan_pods` is its child
management for the pool's Pods: what to create and what to delete so that the observed Pods
match the desired ones (§2.8, with the `Recreate` update strategy of controllers.yaml).

Pure: objects in, request dicts and plans out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nmcp.model.resources import API_VERSION, GROUP

RUNTIME_ANNOTATION = f"{GROUP}/runtime"

SERVERS = f"MCPServer.{API_VERSION}"
POOLS = f"MCPPool.{API_VERSION}"
PODS = "Pod.v1"
SERVICES = "Service.v1"

# (apiVersion, resource) of a customize rule -> the type key of `children` / `related`.
TYPE_KEYS = {
    (API_VERSION, "mcpservers"): SERVERS,
    (API_VERSION, "mcppools"): POOLS,
    ("v1", "pods"): PODS,
    ("v1", "services"): SERVICES,
}


# Metacontroller re-syncs every parent this often even when nothing changed (controllers.yaml).
RESYNC_PERIOD = 300


def _controller(name: str, parent: str, children: Mapping[str, str]) -> dict[str, Any]:
    """A CompositeController as metacontroller/controllers.yaml declares it (`children`: resource ->
    update method), its hooks called in-process; tests/up checks the two stay the same."""
    hook = {"version": "v2", "webhook": {"url": "in-process"}}
    return {
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "CompositeController",
        "metadata": {"name": name, "annotations": {RUNTIME_ANNOTATION: "local"}},
        "spec": {
            "generateSelector": True,
            "resyncPeriodSeconds": RESYNC_PERIOD,
            "parentResource": {"apiVersion": API_VERSION, "resource": parent},
            "childResources": [{"apiVersion": "v1", "resource": resource, "updateStrategy": {"method": method}}
                               for resource, method in children.items()],
            "hooks": {"sync": hook, "finalize": hook, "customize": hook},
        },
    }


# The same two controllers as metacontroller/controllers.yaml, marked as the local runtime. Pods
# are replaced (`plan_pods`), Services updated in place (`Reconciler`).
POOL_CONTROLLER = _controller("nmcp-mcppool", "mcppools", {"pods": "Recreate", "services": "InPlace"})
SERVER_CONTROLLER = _controller("nmcp-mcpserver", "mcpservers", {})
POOL_CHILD_TYPES = (PODS, SERVICES)


def object_key(obj: Mapping[str, Any]) -> str:
    """The v2 key of a namespaced object: `namespace/name`."""
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"


def keyed(objects: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {object_key(o): copy.deepcopy(dict(o)) for o in objects}


def matches(labels: Mapping[str, str], selector: Mapping[str, Any] | None) -> bool:
    """Kubernetes LabelSelector semantics; an absent or empty selector selects everything."""
    if not selector:
        return True
    for name, value in (selector.get("matchLabels") or {}).items():
        if labels.get(name) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def select_related(rules: Sequence[Mapping[str, Any]],
                   world: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """`related` for a sync request: one map per rule type, filled by each rule's selection."""
    related: dict[str, dict[str, dict[str, Any]]] = {}
    for rule in rules:
        type_key = TYPE_KEYS.get((rule.get("apiVersion"), rule.get("resource")))
        if type_key is None:
            raise ValueError(f"customize rule names a resource nmcp up does not serve: {dict(rule)}")
        chosen = related.setdefault(type_key, {})
        namespace, names = rule.get("namespace") or "", rule.get("names")
        for obj in world.get(type_key, ()):
            meta = obj.get("metadata") or {}
            if namespace and meta.get("namespace") != namespace:
                continue
            if names is not None and meta.get("name") not in names:
                continue
            if not matches(meta.get("labels") or {}, rule.get("labelSelector")):
                continue
            chosen[object_key(obj)] = copy.deepcopy(dict(obj))
    return related


def customize_request(controller: Mapping[str, Any], parent: Mapping[str, Any]) -> dict[str, Any]:
    return {"controller": copy.deepcopy(dict(controller)), "parent": copy.deepcopy(dict(parent))}


def sync_request(controller: Mapping[str, Any], parent: Mapping[str, Any],
                 children: Mapping[str, Mapping[str, Any]], related: Mapping[str, Any]) -> dict[str, Any]:
    """A sync (or, for a parent being deleted, finalize) request."""
    return {
        "controller": copy.deepcopy(dict(controller)),
        "parent": copy.deepcopy(dict(parent)),
        "children": {k: dict(v) for k, v in children.items()},
        "related": dict(related),
        "finalizing": bool((parent.get("metadata") or {}).get("deletionTimestamp")),
    }


@dataclass(frozen=True)
class PodActions:
    """What to do so that the observed Pods of a pool match the desired ones."""

    create: tuple[dict[str, Any], ...]
    delete: tuple[str, ...]  # Pod keys


@dataclass(frozen=True)
class ObservedPod:
    desired: Mapping[str, Any]  # what it runs
    owner: str
    deleting: bool


def plan_pods(owner: str, desired: Sequence[Mapping[str, Any]], observed: Mapping[str, ObservedPod]) -> PodActions:
    """Metacontroller's child management for one parent's Pods, with the `Recreate` strategy.

    An owned Pod not desired is deleted; a desired Pod whose spec differs from the running one is
    deleted and created again by a later pass once it is gone; a desired Pod is created when no
    Pod of that name exists (a terminating one, or one another pool still owns, blocks it).
    """
    wanted = {object_key(pod): pod for pod in desired}
    delete = [key for key, pod in observed.items()
              if pod.owner == owner and not pod.deleting
              and (key not in wanted or _runs(pod.desired) != _runs(wanted[key]))]
    create = [dict(pod) for key, pod in wanted.items() if key not in observed]
    return PodActions(tuple(create), tuple(sorted(delete)))


def _runs(pod: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """The parts of a Pod the hooks write; as under Metacontroller, a change in any replaces it."""
    meta = pod.get("metadata") or {}
    return pod.get("spec"), meta.get("labels"), meta.get("annotations")
