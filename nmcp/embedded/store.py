"""The objects `nmcp up` serves, held in memory the way an API server would hold them.

Manifests are applied like `kubectl apply`: a new object gets a uid, generation 1 and a creation
time; a changed spec bumps the generation; annotations written by others (the gateway's demand
signals) survive a re-apply; an object whose manifest disappeared gets a `deletionTimestamp` and
stays until its controller's finalize hook says `finalized` (so its process is stopped first).
Status is written only by the reconcile loop, with what the sync hooks return.

Nothing here survives a restart: every server starts Idle, with no demand recorded.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nmcp.model.manifests import Manifest
from nmcp.model.resources import format_time_precise

SERVER, POOL = "MCPServer", "MCPPool"


@dataclass(frozen=True)
class Change:
    """One thing applying the manifests did, for the log."""

    kind: str
    key: str
    action: str  # created, configured, deleting
    source: str = ""
    generation: int = 0


class Store:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {SERVER: {}, POOL: {}}

    def servers(self) -> list[dict[str, Any]]:
        return list(self.objects[SERVER].values())

    def pools(self) -> list[dict[str, Any]]:
        return list(self.objects[POOL].values())

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.objects[kind].get(key)

    def apply(self, manifests: Iterable[Manifest], now: datetime) -> list[Change]:
        """Make the stored objects match the manifests; idempotent."""
        changes: list[Change] = []
        wanted: dict[str, set[str]] = {SERVER: set(), POOL: set()}
        for manifest in manifests:
            if manifest.kind not in wanted:
                continue  # an MCPAccessPolicy: the gateway reads those itself (gateway.auth.policy)
            wanted[manifest.kind].add(manifest.key)
            change = self._apply_one(manifest, now)
            if change is not None:
                changes.append(change)
        for kind, objects in self.objects.items():
            for key, obj in objects.items():
                meta = obj["metadata"]
                if key not in wanted[kind] and not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = format_time_precise(now)
                    changes.append(Change(kind, key, "deleting"))
        return changes

    def _apply_one(self, manifest: Manifest, now: datetime) -> Change | None:
        objects = self.objects[manifest.kind]
        old = objects.get(manifest.key)
        new_meta = manifest.obj["metadata"]
        if old is None:
            obj = copy.deepcopy(manifest.obj)
            meta = obj["metadata"]
            meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=format_time_precise(now))
            meta.setdefault("annotations", {})
            meta.setdefault("labels", {})
            obj["status"] = {}
            objects[manifest.key] = obj
            return Change(manifest.kind, manifest.key, "created", manifest.where, 1)
        meta = old["metadata"]
        if meta.get("deletionTimestamp"):
            return None  # re-created once the old one is finalized, as in a cluster
        changed = False
        if old.get("spec") != manifest.obj.get("spec"):
            old["spec"] = copy.deepcopy(manifest.obj.get("spec"))
            meta["generation"] = int(meta.get("generation", 1)) + 1
            changed = True
        labels = dict(new_meta.get("labels") or {})
        if meta.get("labels") != labels:
            meta["labels"] = labels
            changed = True
        for name, value in (new_meta.get("annotations") or {}).items():
            if meta["annotations"].get(name) != value:
                meta["annotations"][name] = value
                changed = True
        if not changed:
            return None
        return Change(manifest.kind, manifest.key, "configured", manifest.where, meta["generation"])

    def remove(self, kind: str, key: str) -> None:
        self.objects[kind].pop(key, None)

    def annotate(self, kind: str, key: str, values: Mapping[str, str]) -> bool:
        """Set annotations (like a merge patch); False when the object does not exist."""
        obj = self.objects[kind].get(key)
        if obj is None:
            return False
        obj["metadata"].setdefault("annotations", {}).update(values)
        return True

    def set_status(self, kind: str, key: str, status: Mapping[str, Any] | None) -> None:
        """Replace `.status` wholesale with observedGeneration injected, as Metacontroller does."""
        obj = self.objects[kind].get(key)
        if obj is None:
            return
        new = dict(status or {})
        new["observedGeneration"] = obj["metadata"].get("generation", 1)
        obj["status"] = new
