"""The reconcile loop of `nmcp up`: Metacontroller's job, in one greenlet, against local processes.

One pass does what Metacontroller does for every parent, in an order that lets one pass carry a
demand all the way to a running process:

1. apply the loaded manifests to the store (create, configure, mark removed ones as deleting);
2. for each MCPPool: customize (which servers it relates), then sync (or finalize) with its owned
   Pods and Services as children; write the returned status; carry out the returned children:
   start a process for each desired Pod that does not exist, stop each owned Pod that is no
   longer desired, and replace a Pod whose desired spec changed (the `Recreate` strategy);
3. for each MCPServer: customize, then sync (or finalize) with its pool and the pool's Pods as
   related objects; write the returned status and log every phase change.

All lifecycle decisions come from `hooks.sync`; `controller.plan_pods` (pure) only compares the desired
children with the observed ones, as Metacontroller's child management does. A pass runs when
something happens (demand, a process starting, exiting or stopping, a manifest changing) and at
the earliest `resyncAfterSeconds` the hooks asked for. The loop is the only writer of statuses and
the only place Pods are created, so pool admission is as race-free as in a cluster, where
Metacontroller never syncs one parent twice at once.

Failures are isolated per object, as Metacontroller isolates them per parent: a pool or server
whose sync raises is logged and marked (Ready=False `ReconcileFailed`, a server Degraded), and the
pass goes on with the others (`_isolated`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import gevent
import gevent.event

from hooks import sync as hooks
from hooks.lifecycle import condition
from nmcp.embedded import controller as mc
from nmcp.embedded.default_pool import with_default_pools
from nmcp.embedded.observe import observed_pod
from nmcp.embedded.pods import LocalPod
from nmcp.embedded.process import LogBuffer
from nmcp.embedded.store import POOL, SERVER, Store
from nmcp.model.manifests import LoadResult, fingerprint, load
from nmcp.model.naming import label_value
from nmcp.model.resources import LABEL_SERVER, format_time_precise
from nmcp.model.vocabulary import Condition, Phase, Reason

log = logging.getLogger("nmcp.up")

MIN_RESYNC = 0.05  # never spin, whatever a hook answers
ERROR_RETRY = 1.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def _clamp(due: float | None) -> float:
    """Seconds to sleep: when the hooks asked, never spinning, never longer than the resync period."""
    return max(MIN_RESYNC, min(due if due is not None else mc.RESYNC_PERIOD, mc.RESYNC_PERIOD))


def _phase_of(obj: Mapping[str, Any] | None) -> tuple[str, str, str]:
    status = (obj or {}).get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c.get("type") == Condition.READY), {})
    return str(status.get("phase") or ""), str(ready.get("reason") or ""), str(ready.get("message") or "")


class Reconciler:
    """The store, the local Pods and the loop that keeps them in line with the hooks' answers."""

    def __init__(self, paths: Sequence[str], *, namespace: str = "default", poll_interval: float = 1.0,
                 log_lines: int = 1000, extra_env: Mapping[str, str] | None = None, cwd: str | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.paths = list(paths)
        self.namespace = namespace
        self.poll_interval = poll_interval
        self.log_lines = log_lines
        self.extra_env = dict(extra_env or {})
        self.cwd = cwd
        self.clock = clock
        self.store = Store()
        self.pods: dict[str, LocalPod] = {}
        self.services: dict[str, dict[str, Any]] = {}  # observed Services (nothing runs for them locally)
        self.service_owner: dict[str, str] = {}
        # By namespace/server label: a server's log survives its restarts, and holds its instances'.
        self.logs: dict[str, LogBuffer] = {}
        self.loaded = LoadResult((), ())
        self.passes_started = 0
        self.passes_completed = 0
        self.last_error: str = ""
        self._failures: dict[str, str] = {}  # "Kind ns/name" -> error, of the objects the last pass failed on
        self._wake = gevent.event.Event()
        self._changed = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []
        self._closed = False

    # -- lifecycle of the loop ---------------------------------------------------------------------
    def start(self) -> None:
        """Load the manifests and run a first pass now (so the gateway lists every server at once),
        then keep reconciling in the background."""
        self.reload()
        self._wake.clear()
        try:
            first = self.reconcile()
        except Exception:
            log.exception("reconcile pass failed")
            first = ERROR_RETRY
        self._greenlets.append(gevent.spawn(self._loop, first))
        if self.poll_interval > 0:
            self._greenlets.append(gevent.spawn(self._watch))

    def kick(self) -> None:
        """Run a pass soon (the loop coalesces kicks that arrive during a pass)."""
        self._wake.set()

    def wait_change(self, timeout: float | None) -> bool:
        """Block the greenlet until a pass completes (True) or `timeout` passes (False)."""
        return self._changed.wait(timeout)

    @property
    def alive(self) -> bool:
        return bool(self._greenlets) and not self._greenlets[0].dead

    def close(self, timeout: float = 30.0) -> None:
        """Stop the loop and every process; returns once all are reaped (or `timeout` passed)."""
        if self._closed:
            return
        self._closed = True
        gevent.killall(self._greenlets)
        pods = list(self.pods.values())
        for pod in pods:
            pod.delete()
        gevent.wait([pod.gone for pod in pods], timeout=timeout)
        log.info("stopped %d server process%s", len(pods), "" if len(pods) == 1 else "es")

    def _loop(self, first: float | None) -> None:
        delay = _clamp(first)
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            started = time.monotonic()
            try:
                due = self.reconcile()
                self.last_error = ""
            except Exception as err:  # a bug in a hook: log it, keep serving, retry soon
                log.exception("reconcile pass failed")
                self.last_error = f"reconcile failed: {err}"
                due = ERROR_RETRY
            delay = max(0.0, _clamp(due) - (time.monotonic() - started))

    def _watch(self) -> None:
        seen = fingerprint(self.paths)
        while True:
            gevent.sleep(self.poll_interval)
            now = fingerprint(self.paths)
            if now != seen:
                seen = now
                log.info("manifests changed; reloading", extra={"event": "reload"})
                self.reload()

    def reload(self) -> None:
        """Read the manifests again; the next pass applies them."""
        result = with_default_pools(load(self.paths, self.namespace))
        for problem in result.problems:
            log.error("invalid manifest %s", problem, extra={
                "event": "invalid_manifest", "file": problem.source, "document": problem.document,
                "field": problem.field, "problem": problem.message, "object": problem.subject})
        servers, pools = len(result.of_kind(SERVER)), len(result.of_kind(POOL))
        log.info("loaded %d MCPServer%s and %d MCPPool%s from %s%s", servers, "" if servers == 1 else "s",
                 pools, "" if pools == 1 else "s", ", ".join(self.paths),
                 f" ({len(result.problems)} invalid)" if result.problems else "",
                 extra={"event": "loaded", "servers": servers, "pools": pools, "invalid": len(result.problems)})
        self.loaded = result
        self.kick()

    # -- one pass ----------------------------------------------------------------------------------
    def reconcile(self) -> float | None:
        """One pass over every pool, then every server; the seconds until the next one is due."""
        self.passes_started += 1
        now = self.clock()
        for change in self.store.apply(self.loaded.manifests, now):
            log.info("%s %s %s%s", change.kind, change.key, change.action,
                     f" from {change.source}" if change.source else "",
                     extra={"event": change.action, "kind": change.kind, "object": change.key})
        resyncs: list[float] = []
        self._collect_garbage()
        failed: dict[str, str] = {}
        for pool in self.store.pools():
            resyncs.append(self._isolated(POOL, pool, now, failed, lambda p=pool: self._sync_pool(p, now)))
        world = self._world()  # after the pools' changes: what every server sync relates
        for server in self.store.servers():
            resyncs.append(self._isolated(SERVER, server, now, failed,
                                          lambda s=server: self._sync_server(s, now, world)))
        self._failures = failed
        self.passes_completed += 1
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()
        due = [r for r in resyncs if r]
        return min(due) if due else None

    def _isolated(self, kind: str, obj: dict[str, Any], now: datetime, failed: dict[str, str],
                  sync: Callable[[], float]) -> float:
        """Run one parent's sync; if it fails, mark that parent and go on with the others.

        As under Metacontroller, where each parent's hook call fails alone: one object the hooks
        cannot handle never stops the reconcile of the rest (their demand, their shutdowns). The
        failed object shows Ready=False `ReconcileFailed` with the error (a server also turns
        Degraded, so a waiting client gets that reason at once), and is retried after ERROR_RETRY.
        What it already runs is left as it is: nothing is created or deleted for it meanwhile.
        """
        key = mc.object_key(obj)
        try:
            return sync()
        except Exception as err:
            detail = f"{type(err).__name__}: {err}"
            failed[f"{kind} {key}"] = detail
            if self._failures.get(f"{kind} {key}") != detail:  # the traceback once, not every second
                log.exception("%s %s: reconcile failed; the other objects go on", kind, key,
                              extra={"event": "reconcile_failed", "kind": kind, "object": key, "error": detail})
            self._mark_failed(kind, key, obj, detail, now)
            return ERROR_RETRY

    def _mark_failed(self, kind: str, key: str, obj: dict[str, Any], detail: str, now: datetime) -> None:
        status = dict(obj.get("status") or {})
        previous = [c for c in status.get("conditions") or () if isinstance(c, Mapping)]
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        ready = condition(Condition.READY, False, Reason.RECONCILE_FAILED, f"the hooks failed on this {kind}: {detail}",
                          generation=generation, previous=previous, now=now)
        status["conditions"] = [ready, *(c for c in previous if c.get("type") != Condition.READY)]
        if kind == SERVER:
            status["phase"] = Phase.DEGRADED
            self._write_server_status(key, obj, status)
        else:
            self.store.set_status(kind, key, status)

    def _world(self) -> dict[str, list[dict[str, Any]]]:
        return {
            mc.SERVERS: self.store.servers(),
            mc.POOLS: self.store.pools(),
            mc.PODS: [observed_pod(pod.snapshot()) for pod in self.pods.values()],
            mc.SERVICES: list(self.services.values()),
        }

    def _collect_garbage(self) -> None:
        """Pods and Services whose pool no longer exists go, as the garbage collector removes them."""
        pools = {mc.object_key(p) for p in self.store.pools()}
        for pod in list(self.pods.values()):
            if pod.owner not in pools and not pod.deleting:
                pod.delete()
        for key in [k for k, owner in self.service_owner.items() if owner not in pools]:
            self.services.pop(key, None)
            self.service_owner.pop(key, None)

    def _sync_pool(self, pool: dict[str, Any], now: datetime) -> float:
        key = mc.object_key(pool)
        world = self._world()
        rules = hooks.customize_pool(mc.customize_request(mc.POOL_CONTROLLER, pool)).get("relatedResources") or []
        related = mc.select_related(rules, world)
        children = {
            mc.PODS: mc.keyed(observed_pod(p.snapshot()) for p in self.pods.values() if p.owner == key),
            mc.SERVICES: mc.keyed(s for k, s in self.services.items() if self.service_owner.get(k) == key),
        }
        request = mc.sync_request(mc.POOL_CONTROLLER, pool, children, related)
        response = hooks.sync_pool(request, now)
        old = dict(pool.get("status") or {})
        self.store.set_status(POOL, key, response.get("status"))
        self._log_pool(key, old, pool.get("status") or {})
        desired = list(response.get("children") or [])
        self._apply_services(key, [c for c in desired if c.get("kind") == "Service"], now)
        observed = {k: mc.ObservedPod(p.desired, p.owner, p.deleting) for k, p in self.pods.items()}
        actions = mc.plan_pods(key, [c for c in desired if c.get("kind") == "Pod"], observed)
        for pod_key in actions.delete:
            log.info("pod %s: stopping", pod_key, extra={"event": "pod_delete", "pod": pod_key, "pool": key})
            self.pods[pod_key].delete()
        for desired_pod in actions.create:
            self._create_pod(key, desired_pod)
        if request["finalizing"] and response.get("finalized"):
            log.info("MCPPool %s deleted", key, extra={"event": "deleted", "kind": POOL, "object": key})
            self.store.remove(POOL, key)
        return float(response.get("resyncAfterSeconds") or 0)

    def _create_pod(self, owner: str, desired: dict[str, Any]) -> None:
        key = mc.object_key(desired)
        meta = desired.get("metadata") or {}
        server = f"{meta.get('namespace', 'default')}/{(meta.get('labels') or {}).get(LABEL_SERVER, '')}"
        buffer = self.logs.setdefault(server, LogBuffer(self.log_lines))
        pod = LocalPod(desired, owner=owner, log_buffer=buffer, on_change=self._pod_changed, clock=self.clock,
                       extra_env=self.extra_env, cwd=self.cwd)
        self.pods[key] = pod
        log.info("pod %s: starting %s", key, " ".join(pod.command),
                 extra={"event": "pod_create", "pod": key, "pool": owner, "command": pod.command})

    def _pod_changed(self) -> None:
        for key in [k for k, p in self.pods.items() if p.gone.is_set()]:
            del self.pods[key]
        self.kick()

    def _apply_services(self, owner: str, desired: Iterable[dict[str, Any]], now: datetime) -> None:
        wanted = {mc.object_key(s): s for s in desired}
        for key in [k for k, o in self.service_owner.items() if o == owner and k not in wanted]:
            self.services.pop(key, None)
            self.service_owner.pop(key, None)
        for key, service in wanted.items():
            if key not in self.services and key not in self.service_owner:
                observed = {**service, "metadata": {**service.get("metadata", {}),
                                                    "creationTimestamp": format_time_precise(now)}}
                self.services[key] = observed
                self.service_owner[key] = owner

    def _sync_server(self, server: dict[str, Any], now: datetime, world: Mapping[str, list[dict[str, Any]]]) -> float:
        key = mc.object_key(server)
        rules = hooks.customize_server(mc.customize_request(mc.SERVER_CONTROLLER, server)).get("relatedResources")
        related = mc.select_related(rules or [], world)
        request = mc.sync_request(mc.SERVER_CONTROLLER, server, {}, related)
        response = hooks.sync_server(request, now)
        self._write_server_status(key, server, response.get("status"))
        if request["finalizing"] and response.get("finalized"):
            log.info("MCPServer %s deleted", key, extra={"event": "deleted", "kind": SERVER, "object": key})
            self.store.remove(SERVER, key)
            self.logs.pop(f"{server['metadata']['namespace']}/{label_value(server['metadata']['name'])}", None)
        return float(response.get("resyncAfterSeconds") or 0)

    def _write_server_status(self, key: str, server: dict[str, Any], status: Mapping[str, Any] | None) -> None:
        """Write a server's status and log its phase change, if any."""
        before = _phase_of(server)
        self.store.set_status(SERVER, key, status)
        after = _phase_of(server)
        if after[0] != before[0]:
            phase, reason, message = after
            log.info("server %s: %s -> %s (%s: %s)", key, before[0] or "New", phase, reason, message, extra={
                "event": "phase", "server": key, "from": before[0] or None, "to": phase,
                "reason": reason, "detail": message})

    def _log_pool(self, key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        counts = ("active", "idle", "waiting", "stopped", "servers")
        # Sessions coming and going flip `idle` all the time; a line is worth it when capacity changes.
        if all(old.get(c) == new.get(c) for c in ("active", "waiting", "servers")):
            return
        log.info("pool %s: %s", key, ", ".join(f"{c} {new.get(c, 0)}" for c in counts),
                 extra={"event": "pool", "pool": key, **{c: new.get(c, 0) for c in counts}})

    # -- what the runtime uses ---------------------------------------------------------------------
    def annotate(self, key: str, values: Mapping[str, str], *, kick: bool = True) -> bool:
        ok = self.store.annotate(SERVER, key, values)
        if ok and kick:
            self.kick()
        return ok

    def pod_of(self, namespace: str, pod_name: str) -> LocalPod | None:
        return self.pods.get(f"{namespace}/{pod_name}")
