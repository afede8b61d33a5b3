"""A watch-backed cache of Kubernetes objects: list once, then follow a watch.

`Informer` keeps every object of one resource type in one namespace (or all) up to date: it
lists, then watches from the list's resourceVersion. A watch that ends or drops is resumed from
the last resourceVersion seen (bookmarks included); a 410 Gone (the version was compacted away)
makes it list again. Readers never call the API: `Store` holds the objects of every informer,
and `Store.wait_for` blocks until a predicate holds, woken by events, never by polling.

The loops are plain threads; under gunicorn's gevent worker `threading` is monkey-patched and
they run as greenlets.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.kube.client import Gone, KubeClient, KubeError, Resource, WatchStream

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (resource plural, namespace, name)


@dataclass
class InformerStats:
    lists: int = 0  # 1 at start, +1 for every relist after a 410
    watches: int = 0  # watch requests made (resumes included)
    gone: int = 0  # 410 answers
    drops: int = 0  # watches that failed mid-stream or could not be opened
    last_error: str = ""


class Store:
    """Objects of every informer, by (plural, namespace, name), with one condition to wait on."""

    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self.generation = 0  # bumped on every change; waiters compare it

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((plural, namespace, name))

    def items(self, plural: str) -> list[dict[str, Any]]:
        return [obj for (kind, _, _), obj in sorted(self._objects.items()) if kind == plural]

    def replace(self, plural: str, namespace: str | None, objects: Iterable[dict[str, Any]]) -> None:
        """Set every object of `plural` in `namespace` (None: all) at once, after a list."""
        fresh = {(plural, o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}
        with self._changed:
            for key in [k for k in self._objects if k[0] == plural and (namespace is None or k[1] == namespace)]:
                if key not in fresh:
                    del self._objects[key]
            self._objects.update(fresh)
            self._bump()

    def put(self, plural: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        with self._changed:
            self._objects[(plural, meta.get("namespace", ""), meta["name"])] = obj
            self._bump()

    def delete(self, plural: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        with self._changed:
            self._objects.pop((plural, meta.get("namespace", ""), meta["name"]), None)
            self._bump()

    def _bump(self) -> None:
        self.generation += 1
        self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """The first truthy value of `predicate()`, re-checked after every change; None at the timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def notify(self) -> None:
        """Wake every waiter (something outside the store changed, e.g. an informer's health)."""
        with self._changed:
            self._bump()


@dataclass
class Informer:
    """List+watch of `resource` in `namespace` (None: all namespaces) into `store`."""

    client: KubeClient
    store: Store
    resource: Resource
    namespace: str | None
    label_selector: str | None = None
    watch_timeout: int = 300  # seconds the API server keeps one watch open (jittered)
    max_backoff: float = 10.0
    on_event: Callable[[str, dict[str, Any]], None] | None = None
    stats: InformerStats = field(default_factory=InformerStats)
    synced: threading.Event = field(default_factory=threading.Event)
    healthy: bool = False
    resource_version: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _stream: WatchStream | None = None

    @property
    def name(self) -> str:
        return f"{self.resource.describe()} in {self.namespace or 'all namespaces'}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer {self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()  # ends the blocked read now, and frees the connection

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                self._watch()
                backoff = 0.5  # a watch that ran and ended normally: resume at once
            except Gone:
                self.stats.gone += 1
                log.info("%s: resourceVersion %s expired (410); listing again", self.name, self.resource_version)
                self.resource_version = None
            except Exception as err:  # API errors, and bugs: neither may leave the cache silently stale
                message = err.message if isinstance(err, KubeError) else f"{type(err).__name__}: {err}"
                if not isinstance(err, KubeError):
                    log.exception("%s: unexpected error", self.name)
                self.stats.drops += 1
                self.stats.last_error = message
                self._set_health(False)
                log.warning("%s: %s; retrying in %.1fs", self.name, message, backoff)
                self._stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)

    def _list(self) -> None:
        body = self.client.list(self.resource, self.namespace, self.label_selector)
        self.stats.lists += 1
        items = body.get("items") or []
        plural = self.resource.plural
        for item in items:  # list items carry no kind; the store's readers do not need one
            item.setdefault("metadata", {}).setdefault("namespace", self.namespace or "")
        self.store.replace(plural, self.namespace, items)
        self.resource_version = str(body.get("metadata", {}).get("resourceVersion") or "0")
        self.synced.set()
        self._set_health(True)

    def _watch(self) -> None:
        self.stats.watches += 1
        timeout = int(self.watch_timeout * random.uniform(0.8, 1.0)) or 1
        assert self.resource_version is not None
        self._stream = self.client.watch(self.resource, self.namespace, self.resource_version,
                                         timeout_seconds=timeout, label_selector=self.label_selector)
        if self._stop.is_set():
            self._stream.close()
        self._set_health(True)  # the API server answers again, even if nothing changes for a while
        for event in self._stream:
            if self._stop.is_set():
                return
            self._set_health(True)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                code = obj.get("code")
                if code == 410:
                    raise Gone(str(obj.get("message", "")), reason="Expired", status=410)
                raise KubeError(f"watch error {code}: {obj.get('message')}", reason=str(obj.get("reason", "")),
                                status=int(code or 0))
            rv = obj.get("metadata", {}).get("resourceVersion")
            if kind in ("ADDED", "MODIFIED"):
                self.store.put(self.resource.plural, obj)
            elif kind == "DELETED":
                self.store.delete(self.resource.plural, obj)
            if rv:
                self.resource_version = str(rv)
            if kind != "BOOKMARK" and self.on_event is not None:
                self.on_event(str(kind), obj)

    def _set_health(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            self.store.notify()
