"""Following objects of the area's API server with the gateway's own list+watch (`Informer`).

Tests need every event, in the API server's order, including what a relist after a 410 Gone
brings (the Informer reports only watch events to `on_event`; a relist goes to its Store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway.kube.cache import Informer, Store
from gateway.kube.client import KubeClient, Resource


class WatchError(RuntimeError):
    """A watch could not even list its objects."""


class _ListingStore(Store):
    """A Store that also reports what a (re)list brought: the gateway's Informer calls `on_event`
    only for watch events, and after a 410 a relist would otherwise pass unnoticed."""

    def __init__(self, on_list: Callable[[list[dict[str, Any]]], None]) -> None:
        super().__init__()
        self._on_list = on_list

    def replace(self, plural: str, namespace: str | None, objects: Iterable[dict[str, Any]]) -> None:
        items = list(objects)
        self._on_list(items)
        super().replace(plural, namespace, items)


def watch(client: KubeClient, resource: Resource, namespace: str | None,
          on_event: Callable[[str, dict[str, Any]], None],
          on_list: Callable[[list[dict[str, Any]]], None]) -> Informer:
    """A started list+watch (the gateway's own Informer) calling back for every event and list."""
    informer = Informer(client, _ListingStore(on_list), resource, namespace, watch_timeout=120, on_event=on_event)
    informer.start()
    if not informer.synced.wait(60):
        informer.stop()
        raise WatchError(f"listing {informer.name} failed: {informer.stats.last_error or 'no answer'}")
    return informer


def resource_version(obj: Mapping[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
