"""`EmbeddedRuntime`: the gateway's `Runtime` for `nmcp up`.

The gateway talks to it as to any runtime; underneath, demand is written the way the gateway
writes it in a cluster (annotations on the MCPServer, here in memory) and the reconcile loop's
passes, driven by the hooks, decide what runs:

* `request` sets `requested-at` and wakes the loop; `shutdown` sets `stop-requested-at`;
* `touch` records the open sessions and, while the server runs, `last-active-at` (activity on a
  server that is not running yet is not "served": writing it would make the pending request look
  served, and the pool would withdraw its admission; a session ending is not activity either: it
  would cancel a stop requested just before);
* `wait_ready` waits, woken by each completed pass, for a pass that saw the demand to report
  Ready, and fails at once with the Ready condition's reason and message when the server is
  Degraded or will not start, or after the timeout with the reason it is still waiting
  (e.g. `WaitingForCapacity`, "pool default has 2/2 servers running");
* `connect` hands over the Pod's process (its stdio), or the URL of an HTTP server, and records
  the activity (the waiting client is served now); closing the connection ends the Pod, and the
  loop starts a fresh one if the server is still wanted.
* An isolated server (`isolation: session | identity`) runs instances: `request`, `touch`,
  `wait_ready` and `connect` with an instance key write and read that instance's entry of the
  `instances` annotation and its status (`status.instances`), so the pool admits each instance's
  Pod against `maxActive` like any other and stops it after the idle timeout; `release` drops the
  entry, and the pool drops its Pod.

Configuration: the `(local)` rows of the gateway's settings table (gateway/config.py), read once
by `create_runtime`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.runtime import (
    HttpEndpoint,
    ServerNotFound,
    ServerRef,
    ServerState,
    StartFailed,
    StdioConnection,
    pick,
)
from nmcp.embedded import logs
from nmcp.embedded.pods import PodConnection, search_path
from nmcp.embedded.process import LogBuffer
from nmcp.embedded.reconcile import Reconciler
from nmcp.embedded.store import SERVER
from nmcp.model.naming import child_name, label_value, pod_name
from nmcp.model.resources import (
    ANN_INSTANCES,
    ANN_LAST_ACTIVE_AT,
    ANN_REQUESTED_AT,
    ANN_SESSIONS,
    ANN_STOP_REQUESTED_AT,
    InstanceDemand,
    format_time_precise,
    read_server,
    write_instances,
)
from nmcp.model.vocabulary import Condition, Phase, Reason

if TYPE_CHECKING:
    from gateway.config import Config

log = logging.getLogger("nmcp.up")


def _ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or () if c.get("type") == Condition.READY), {})


class EmbeddedRuntime:
    """Servers of `nmcp up` (see the module docstring)."""

    isolates_sessions = True  # isolated servers run instances (gateway.runtime)

    def __init__(self, reconciler: Reconciler) -> None:
        self.loop = reconciler

    # -- what exists ---------------------------------------------------------------------------
    def _object(self, ref: ServerRef) -> dict[str, Any]:
        obj = self.loop.store.get(SERVER, str(ref))
        if obj is None:
            raise ServerNotFound(f"no MCPServer {ref}")
        return obj

    def _state(self, obj: dict[str, Any]) -> ServerState:
        server = read_server(obj)
        status = obj.get("status") or {}
        ready = _ready_condition(status)
        pod = self.loop.pod_of(server.namespace, child_name(server.name))
        extra: dict[str, Any] = {
            "pool": server.pool,
            "generation": server.generation,
            "conditions": status.get("conditions") or [],
        }
        for name in ("requestedAt", "startedAt", "stoppedAt", "podName"):
            if status.get(name):
                extra[name] = status[name]
        if pod is not None and pod.process is not None:
            extra["pid"] = pod.process.pid
        if server.isolated:
            extra["runningInstances"] = int(status.get("runningInstances") or 0)
        if obj["metadata"].get("deletionTimestamp"):
            extra["deleting"] = True
        return ServerState(
            server=server,
            phase=str(status.get("phase") or Phase.IDLE),
            reason=str(ready.get("reason") or ""),
            message=str(ready.get("message") or ""),
            sessions=server.demand.sessions,
            last_active_at=server.demand.last_active_at,
            extra=extra,
        )

    def list_servers(self) -> list[ServerState]:
        servers = sorted(self.loop.store.servers(), key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
        return [self._state(obj) for obj in servers]

    def resolve(self, name: str, namespace: str | None = None) -> ServerRef:
        found = [ServerRef(o["metadata"]["namespace"], o["metadata"]["name"]) for o in self.loop.store.servers()]
        return pick(found, name, namespace)

    def get(self, ref: ServerRef) -> ServerState:
        return self._state(self._object(ref))

    # -- demand --------------------------------------------------------------------------------
    def _now(self) -> str:
        return format_time_precise(self.loop.clock())

    def request(self, ref: ServerRef, instance: str | None = None, *, spare: bool = False) -> None:
        self._object(ref)
        if instance is not None:
            self._annotate_instance(ref, instance, requested=True, spare=spare)
            return
        log.info("server %s requested", ref, extra={"event": "request", "server": str(ref)})
        self.loop.annotate(str(ref), {ANN_REQUESTED_AT: self._now()})

    def _annotate_instance(self, ref: ServerRef, instance: str, *, requested: bool = False, spare: bool = False,
                           active: bool = False, kick: bool = True) -> None:
        """Set an instance's request or activity time in the instances annotation."""
        demand = read_server(self._object(ref)).demand
        entries = dict(demand.instances)
        entry = entries.get(instance, InstanceDemand())
        now = self.loop.clock()
        if requested:
            entry = dataclasses.replace(entry, requested_at=now, spare=spare)
            log.info("server %s: %s %s requested", ref, "spare instance" if spare else "instance", instance,
                     extra={"event": "request", "server": str(ref), "instance": instance})
        if active:
            entry = dataclasses.replace(entry, last_active_at=now)
        entries[instance] = entry
        self.loop.annotate(str(ref), {ANN_INSTANCES: write_instances(entries)}, kick=kick)

    def release(self, ref: ServerRef, instance: str) -> None:
        """The instance's client is gone: its Pod stops now, whatever its idle timeout says."""
        obj = self.loop.store.get(SERVER, str(ref))
        if obj is None:
            return
        entries = dict(read_server(obj).demand.instances)
        if entries.pop(instance, None) is not None:
            log.info("server %s: instance %s released", ref, instance,
                     extra={"event": "release", "server": str(ref), "instance": instance})
            self.loop.annotate(str(ref), {ANN_INSTANCES: write_instances(entries)})

    def shutdown(self, ref: ServerRef) -> None:
        self._object(ref)
        log.info("server %s: stop requested", ref, extra={"event": "shutdown", "server": str(ref)})
        self.loop.annotate(str(ref), {ANN_STOP_REQUESTED_AT: self._now()})

    def touch(self, ref: ServerRef, sessions: int, instance: str | None = None) -> None:
        obj = self._object(ref)
        annotations = obj["metadata"].get("annotations") or {}
        values = {ANN_SESSIONS: str(max(0, sessions))}
        try:
            before = int(annotations.get(ANN_SESSIONS, 0))
        except ValueError:
            before = 0
        if instance is not None:
            # As for a server: activity counts only once the instance runs (before, it would read
            # as its request served).
            if self._instance_status(obj, instance).get("phase") == Phase.READY and sessions >= before:
                self._annotate_instance(ref, instance, active=True, kick=False)
        # A session that ends is not activity: counting it would cancel a stop requested just before.
        elif (obj.get("status") or {}).get("phase") == Phase.READY and sessions >= before:
            values[ANN_LAST_ACTIVE_AT] = self._now()
        # Activity only moves the idle deadline, which the loop reads when it wakes anyway; a new
        # session count can change maxIdle eviction, so that one wakes it now.
        self.loop.annotate(str(ref), values, kick=annotations.get(ANN_SESSIONS) != values[ANN_SESSIONS])

    @staticmethod
    def _instance_status(obj: dict[str, Any], instance: str) -> dict[str, Any]:
        instances = (obj.get("status") or {}).get("instances") or {}
        return instances.get(instance) or {}

    def wait_ready(self, ref: ServerRef, timeout: float, instance: str | None = None) -> ServerState:
        deadline = time.monotonic() + timeout
        seen_by = self.loop.passes_started + 1  # the first pass to start from now sees the demand
        while True:
            state = self.get(ref)
            if instance is not None:
                own = self._instance_status(self._object(ref), instance)
                phase = str(own.get("phase") or Phase.REQUESTED)
                reason, message = str(own.get("reason") or ""), str(own.get("message") or "")
                what = f"{ref} (instance {instance})"
            else:
                phase, reason, message, what = state.phase, state.reason, state.message, str(ref)
            if self.loop.passes_completed >= seen_by:
                if phase == Phase.READY and self._reachable(ref, instance):
                    return state
                if phase == Phase.DEGRADED:
                    raise StartFailed(f"{what} cannot start: {message}", reason=reason)
                if phase == Phase.IDLE:
                    raise StartFailed(f"{what} is not starting: {message}", reason=reason)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = f"{phase}, {reason}: {message}" if reason else phase
                raise StartFailed(f"{what} was not ready within {timeout:g}s ({why})",
                                  reason=reason if phase == Phase.REQUESTED else Reason.START_TIMEOUT)
            self.loop.wait_change(min(remaining, 1.0))

    def _reachable(self, ref: ServerRef, instance: str | None = None) -> bool:
        pod = self.loop.pod_of(ref.namespace, pod_name(ref.name, instance or ""))
        return pod is not None and pod.ready_process() is not None

    def connect(self, ref: ServerRef, instance: str | None = None) -> StdioConnection | HttpEndpoint:
        server = read_server(self._object(ref))
        pod = self.loop.pod_of(ref.namespace, pod_name(ref.name, instance or ""))
        process = pod.ready_process() if pod is not None else None
        if pod is None or process is None:
            what = f"{ref} (instance {instance})" if instance else str(ref)
            raise StartFailed(f"{what} is not running", reason=Reason.NOT_RUNNING)
        # The client that asked is being served now: recording it as activity marks the request as
        # served, so the pool does not start the server again for it once it stops.
        if instance is not None:
            self._annotate_instance(ref, instance, active=True, kick=False)
        else:
            self.loop.annotate(str(ref), {ANN_LAST_ACTIVE_AT: self._now()}, kick=False)
        transport = server.transport
        if transport.is_http:
            return HttpEndpoint(f"http://127.0.0.1:{transport.port}{transport.path}", transport.type)
        return PodConnection(pod, process)

    def logs(self, ref: ServerRef, follow: bool) -> Iterator[str]:
        self._object(ref)
        key = f"{ref.namespace}/{label_value(ref.name)}"
        buffer = self.loop.logs.setdefault(key, LogBuffer(self.loop.log_lines))
        return buffer.lines(follow, poll=1.0 if follow else None)

    def ready(self) -> tuple[bool, str]:
        if not self.loop.alive:
            return False, "the reconcile loop is not running"
        if self.loop.last_error:
            return False, self.loop.last_error
        return True, ""

    def close(self) -> None:
        self.loop.close()


def create_runtime(config: Config) -> EmbeddedRuntime:
    """The local runtime (`NMCP_RUNTIME=local`, what `nmcp up` runs); starts the loop."""
    logs.configure(config.log_format)
    # Commands installed next to nmcp (the venv's bin) are found without activating the venv.
    path = search_path([str(Path(sys.executable).parent)])
    loop = Reconciler(list(config.manifests), namespace=config.up_namespace, poll_interval=config.up_poll_interval,
                      log_lines=config.log_lines, extra_env=path, cwd=os.getcwd())
    loop.start()
    return EmbeddedRuntime(loop)
