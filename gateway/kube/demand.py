"""Demand signals: the annotations through which the gateway tells the hooks what clients need.

Metacontroller owns `.status`, so the gateway writes only annotations on the MCPServer
(`nmcp.model.resources.ANN_*`), with JSON merge patches. `plan_write` decides, purely, what to write
and when; `DemandWriter` carries the decisions out.

The rules, in the hooks' terms (`hooks.lifecycle.pending`, `keep_running`):
* A start request (`request()`) on a server that is not Ready or Starting — Idle, Requested,
  Stopping, Degraded — is written at once, unless the stored annotations already hold a request
  the hook still honours (newer than the last activity and any stop, and fresh). So fifty
  clients arriving at an idle server cost one write, and a request that arrives while the server
  is Stopping is never lost: it is newer than the stop, and the hook starts the server again.
* A stop request (`shutdown()`) is written at once.
* Activity (`last-active-at`) and the session count are coalesced: at most one write per
  `interval` per server (and at least three per idle timeout, so activity always lands before
  the hook could call the server idle). Activity is written only while the server is Ready:
  a last-active-at newer than a pending request would cancel that request.
* Nothing wanted is dropped on an API error: it stays wanted and is retried.
* Instances of an isolated server (`instances`, one JSON annotation this gateway owns): a new
  instance, a new request of one and a released one are written at once; only an instance's
  activity waits, coalesced with the rest.

Times are written with microseconds (`format_time_precise`): a stop and a request in the same
second must still be ordered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.kube.client import NotFound
from gateway.runtime import RuntimeError_, ServerRef
from nmcp.model.resources import (
    ANN_INSTANCES,
    ANN_LAST_ACTIVE_AT,
    ANN_REQUESTED_AT,
    ANN_SESSIONS,
    ANN_STOP_REQUESTED_AT,
    Demand,
    InstanceDemand,
    format_time_precise,
    write_instances,
)
from nmcp.model.vocabulary import Phase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    interval: float = 20.0  # seconds between coalesced activity writes of one server
    request_fresh: float = 30.0  # a stored request younger than this still counts (no rewrite)
    retry: float = 2.0  # seconds before a failed deferred write is retried


@dataclass(frozen=True)
class Wanted:
    """What the gateway knows and has not written yet."""

    requested_at: datetime | None = None
    last_active_at: datetime | None = None
    stop_requested_at: datetime | None = None
    sessions: int | None = None
    instances: Mapping[str, InstanceDemand] | None = None  # the whole map, as this gateway holds it


@dataclass(frozen=True)
class WritePlan:
    annotations: dict[str, str] | None  # write these now
    due_in: float | None  # or come back in this many seconds
    wanted: Wanted  # what stays wanted after this plan (requests that need no write are dropped)


def _newer(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and (b is None or a > b)


def request_honoured(stored: Demand, now: datetime, fresh: float) -> bool:
    """The stored annotations already ask for a start the hook still acts on."""
    req = stored.requested_at
    return (req is not None and _newer(req, stored.last_active_at) and not stored.stopped_by_request
            and now - req < timedelta(seconds=fresh))


def plan_write(phase: str, stored: Demand, wanted: Wanted, now: datetime, *, since_last_write: float | None,
               policy: Policy, idle_timeout: float | None = None, start_timeout: float | None = None) -> WritePlan:
    """What to write for one server now, given its phase, its stored annotations and what is wanted.

    A stored request counts for three quarters of the server's start timeout (the hook honours it
    for the whole timeout): rewriting it earlier would move the server back in its pool's queue.
    """
    fresh = start_timeout * 0.75 if start_timeout else policy.request_fresh
    urgent: dict[str, str] = {}
    if _newer(wanted.stop_requested_at, stored.stop_requested_at):
        urgent[ANN_STOP_REQUESTED_AT] = format_time_precise(wanted.stop_requested_at)  # type: ignore[arg-type]
    req = wanted.requested_at
    if req is not None and _newer(wanted.stop_requested_at, req):
        req = None  # a later stop supersedes the request
    if req is not None and phase in Phase.RUNNING:
        # Running already: the request is activity, not a start.
        last = wanted.last_active_at
        wanted = replace(wanted, last_active_at=req if last is None or req > last else last)
        req = None
    if req is not None and not _newer(req, stored.requested_at):
        req = None
    if req is not None and not request_honoured(stored, now, fresh):
        urgent[ANN_REQUESTED_AT] = format_time_precise(req)
    wanted = replace(wanted, requested_at=None)

    deferred: dict[str, str] = {}
    if wanted.instances is not None and dict(wanted.instances) != dict(stored.instances):
        starts = {k: i.requested_at for k, i in wanted.instances.items()}
        stored_starts = {k: i.requested_at for k, i in stored.instances.items()}
        # Activity alone can wait; an instance asked for or released cannot.
        (deferred if starts == stored_starts else urgent)[ANN_INSTANCES] = write_instances(wanted.instances)
    if phase == Phase.READY and _newer(wanted.last_active_at, stored.last_active_at):
        deferred[ANN_LAST_ACTIVE_AT] = format_time_precise(wanted.last_active_at)  # type: ignore[arg-type]
    if wanted.sessions is not None and wanted.sessions != stored.sessions:
        deferred[ANN_SESSIONS] = str(wanted.sessions)

    if urgent:
        return WritePlan({**urgent, **deferred}, None, wanted)
    if not deferred:
        return WritePlan(None, None, wanted)
    interval = policy.interval if not idle_timeout else min(policy.interval, max(1.0, idle_timeout / 3))
    wait = 0.0 if since_last_write is None else max(0.0, interval - since_last_write)
    return WritePlan(deferred if wait == 0 else None, wait or None, wanted)


def merged_demand(a: Demand, b: Demand) -> Demand:
    """The newest of two views of the same annotations (the watch cache and our last patch)."""

    def latest(x: datetime | None, y: datetime | None) -> datetime | None:
        return max((t for t in (x, y) if t is not None), default=None)

    return Demand(requested_at=latest(a.requested_at, b.requested_at),
                  last_active_at=latest(a.last_active_at, b.last_active_at),
                  stop_requested_at=latest(a.stop_requested_at, b.stop_requested_at),
                  sessions=b.sessions, instances=b.instances)


@dataclass(frozen=True)
class Observed:
    """What the writer needs to know of a server from the cache."""

    phase: str
    demand: Demand
    idle_timeout: float | None
    start_timeout: float | None = None


@dataclass
class _Entry:
    wanted: Wanted = field(default_factory=Wanted)
    written: Demand | None = None  # from our last patch's answer (the watch may lag behind it)
    last_write: float | None = None  # monotonic
    due: float | None = None  # monotonic
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class WriterStats:
    writes: int = 0
    failures: int = 0
    per_server: dict[ServerRef, int] = field(default_factory=dict)


class DemandWriter:
    """Carries out `plan_write` for every server: urgent writes in the caller, the rest in one loop."""

    def __init__(self, patch: Callable[[ServerRef, dict[str, Any]], dict[str, Any]],
                 observe: Callable[[ServerRef], Observed | None], policy: Policy | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._patch, self._observe, self.policy, self._clock = patch, observe, policy or Policy(), clock
        self._entries: dict[ServerRef, _Entry] = {}
        self._entries_lock = threading.Lock()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self.stats = WriterStats()
        self._thread = threading.Thread(target=self._loop, name="demand writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()

    def _entry(self, ref: ServerRef) -> _Entry:
        with self._entries_lock:
            return self._entries.setdefault(ref, _Entry())

    # ---- signals ------------------------------------------------------------------------

    def request(self, ref: ServerRef) -> None:
        """A client needs the server running; written before this returns when it must be."""
        entry = self._entry(ref)
        now = self._clock()
        with entry.lock:
            entry.wanted = replace(entry.wanted, requested_at=now)
        self._apply(ref, entry, raise_errors=True)

    def stop(self, ref: ServerRef) -> None:
        entry = self._entry(ref)
        now = self._clock()
        with entry.lock:
            entry.wanted = replace(entry.wanted, stop_requested_at=now, requested_at=None)
        self._apply(ref, entry, raise_errors=True)

    def touch(self, ref: ServerRef, sessions: int) -> None:
        """Activity and the session count; never blocks on the API."""
        entry = self._entry(ref)
        now = self._clock()
        with entry.lock:
            entry.wanted = replace(entry.wanted, last_active_at=now, sessions=max(0, sessions))
            planned = entry.due is not None
        if not planned:  # under constant traffic a write is already planned: nothing to do
            self._schedule(entry, 0.0)

    def instances(self, ref: ServerRef, instances: Mapping[str, InstanceDemand], *, urgent: bool) -> None:
        """The instances this gateway needs of an isolated server (the whole map); an urgent change
        (an instance asked for or released) is written before this returns."""
        entry = self._entry(ref)
        with entry.lock:
            entry.wanted = replace(entry.wanted, instances=dict(instances))
            planned = entry.due is not None
        if urgent:
            self._apply(ref, entry, raise_errors=True)
        elif not planned:
            self._schedule(entry, 0.0)

    def changed(self, ref: ServerRef) -> None:
        """The server changed in the cache (a new phase): plan again soon, outside the watch loop."""
        with self._entries_lock:
            entry = self._entries.get(ref)
        if entry is not None and entry.wanted != Wanted():
            self._schedule(entry, 0.0)

    def stored(self, ref: ServerRef, cached: Demand) -> Demand:
        """The annotations as they stand: the cache's view, or our last write if the watch lags behind."""
        with self._entries_lock:
            entry = self._entries.get(ref)
        written = entry.written if entry is not None else None
        return cached if written is None else merged_demand(cached, written)

    # ---- doing ----------------------------------------------------------------------------

    def _schedule(self, entry: _Entry, delay: float) -> None:
        due = time.monotonic() + delay
        with self._wake:
            if entry.due is None or due < entry.due:
                entry.due = due
            self._wake.notify_all()

    def _apply(self, ref: ServerRef, entry: _Entry, raise_errors: bool) -> None:
        with entry.lock:
            observed = self._observe(ref)
            if observed is None:  # not (or no longer) in the cache: nothing to annotate, nothing to keep
                with self._entries_lock:
                    self._entries.pop(ref, None)
                return
            stored = observed.demand if entry.written is None else merged_demand(observed.demand, entry.written)
            since = None if entry.last_write is None else time.monotonic() - entry.last_write
            plan = plan_write(observed.phase, stored, entry.wanted, self._clock(), since_last_write=since,
                              policy=self.policy, idle_timeout=observed.idle_timeout,
                              start_timeout=observed.start_timeout)
            entry.wanted = plan.wanted
            if plan.annotations:
                try:
                    obj = self._patch(ref, {"metadata": {"annotations": plan.annotations}})
                except NotFound:
                    with self._entries_lock:
                        self._entries.pop(ref, None)
                    if raise_errors:
                        raise
                    return
                except RuntimeError_ as err:  # API errors, Forbidden included
                    self.stats.failures += 1
                    log.warning("%s: writing %s failed: %s", ref, ", ".join(plan.annotations), err.message)
                    self._schedule(entry, self.policy.retry)
                    if raise_errors:
                        raise
                    return
                except Exception:
                    self.stats.failures += 1
                    self._schedule(entry, self.policy.retry)
                    raise
                self.stats.writes += 1
                self.stats.per_server[ref] = self.stats.per_server.get(ref, 0) + 1
                entry.last_write = time.monotonic()
                entry.written = Demand.from_annotations(obj.get("metadata", {}).get("annotations"))
                entry.wanted = _satisfied(entry.wanted, entry.written)
                # Something deferred may still be wanted (e.g. activity while not Ready).
                if entry.wanted.last_active_at is not None or entry.wanted.sessions is not None \
                        or entry.wanted.instances is not None:
                    self._schedule(entry, self.policy.interval)
            elif plan.due_in is not None:
                self._schedule(entry, plan.due_in)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                now = time.monotonic()
                with self._entries_lock:
                    due = [(e.due, ref, e) for ref, e in self._entries.items() if e.due is not None]
                ready = [(ref, e) for when, ref, e in due if when <= now]
                if not ready:
                    wait = min((when for when, _, _ in due), default=now + 60) - now
                    self._wake.wait(max(0.01, wait))
                    continue
                for _, entry in ready:
                    entry.due = None
            for ref, entry in ready:
                try:
                    self._apply(ref, entry, raise_errors=False)
                except Exception:  # a bug must not stop every server's demand signals
                    log.exception("%s: demand write failed", ref)


def _satisfied(wanted: Wanted, written: Demand) -> Wanted:
    """Drop what the stored annotations now say already."""
    return Wanted(
        requested_at=wanted.requested_at if _newer(wanted.requested_at, written.requested_at) else None,
        last_active_at=wanted.last_active_at if _newer(wanted.last_active_at, written.last_active_at) else None,
        stop_requested_at=(wanted.stop_requested_at
                           if _newer(wanted.stop_requested_at, written.stop_requested_at) else None),
        sessions=wanted.sessions if wanted.sessions is not None and wanted.sessions != written.sessions else None,
        instances=(wanted.instances if wanted.instances is not None
                   and dict(wanted.instances) != dict(written.instances) else None),
    )
