"""Metacontroller's change detection for children (its default `dynamic-apply` strategy), in Python.

Metacontroller v4.17.2 (`pkg/controller/common/manage_children.go` `ApplyUpdate`, and
`pkg/dynamic/apply/apply.go` `Merge`) decides whether a child changed like this:

1. merge the desired object onto the observed one, 3-way against the last applied desired object
   (kept in the `metacontroller.k8s.io/last-applied-configuration` annotation): a field in the last
   applied object but not in the desired one is deleted; every desired field is written; maps merge
   key by key; a list whose items all share a known key (`containerPort`, `port`, `mountPath`,
   `name`, `uid`, `ip`, `path`, in that order) merges item by item, any other list is replaced;
2. put back the observed object's system metadata and status, set the annotation to the desired
   object;
3. compare with the observed object: any difference is a change (`Recreate` deletes the Pod).

The tests use this to check that what the hooks return survives a round trip through the real API
server; the end-to-end proof is tests/metacontroller/, against the real binary.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

LAST_APPLIED = "metacontroller.k8s.io/last-applied-configuration"
MERGE_KEYS = ("containerPort", "port", "mountPath", "name", "uid", "ip", "path")
SYSTEM_FIELDS = ("selfLink", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                 "deletionGracePeriodSeconds", "managedFields")


def last_applied(desired: Mapping[str, Any]) -> str:
    """The annotation value Metacontroller stores: the desired object as compact JSON, keys sorted."""
    return json.dumps(desired, sort_keys=True, separators=(",", ":"))


def _merge(destination: Any, last: Any, desired: Any) -> Any:
    if isinstance(destination, dict) and isinstance(desired, dict):
        return _merge_object(destination, last if isinstance(last, dict) else {}, desired)
    if isinstance(destination, list) and isinstance(desired, list):
        last_list = last if isinstance(last, list) else []
        key = _list_map_key(destination, last_list, desired)
        if key is not None:
            return _merge_list_map(key, destination, last_list, desired)
    return copy.deepcopy(desired)


def _merge_object(destination: dict[str, Any], last: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    for key in last:
        if key not in desired:
            destination.pop(key, None)
    for key, value in desired.items():
        destination[key] = _merge(destination.get(key), last.get(key), value)
    return destination


def _list_map_key(*lists: list[Any]) -> str | None:
    common: set[str] | None = None
    for items in lists:
        for item in items:
            if not isinstance(item, dict):
                return None
            common = set(item) if common is None else common & set(item)
    return next((key for key in MERGE_KEYS if common and key in common), None)


def _merge_list_map(key: str, destination: list[Any], last: list[Any], desired: list[Any]) -> list[Any]:
    def by_key(items: list[Any]) -> dict[str, Any]:
        return {str(item[key]): item for item in items}

    merged = _merge_object(by_key(destination), by_key(last), by_key(desired))
    order = [str(item[key]) for item in destination] + [str(item[key]) for item in desired]
    result, seen = [], set()
    for name in order:
        if name in merged and name not in seen:
            result.append(merged[name])
            seen.add(name)
    return result


def apply_update(observed: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The object Metacontroller would write for `desired` over `observed`."""
    meta = observed.get("metadata") or {}
    last = json.loads((meta.get("annotations") or {}).get(LAST_APPLIED) or "{}")
    merged = _merge(copy.deepcopy(dict(observed)), last, dict(desired))
    new_meta = merged.setdefault("metadata", {})
    for name in SYSTEM_FIELDS:
        if name in meta:
            new_meta[name] = copy.deepcopy(meta[name])
        else:
            new_meta.pop(name, None)
    if "status" in observed:
        merged["status"] = copy.deepcopy(observed["status"])
    else:
        merged.pop("status", None)
    new_meta.setdefault("annotations", {})[LAST_APPLIED] = last_applied(desired)
    return merged


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two JSON values differ (empty when equal), for readable failures."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                found.append(f"{path}.{key}: {a.get(key, '<absent>')!r} vs {b.get(key, '<absent>')!r}")
            else:
                found += differences(a[key], b[key], f"{path}.{key}")
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    # Go compares JSON numbers by type: 1 and 1.0 differ there, so they differ here too.
    same = a == b and type(a) is type(b)
    return [] if same else [f"{path}: {a!r} vs {b!r}"]
