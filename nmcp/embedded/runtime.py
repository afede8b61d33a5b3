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
  loop starts a fresh one if the server is still wanted. Under `isolation: session` each client
  session gets a process of its own, started from the Pod's container while the Pod runs (the
  Pod holds the server's place in the pool) and stopped with the session or the Pod.

Configuration: the `(local)` rows of the gateway's settings table (gateway/config.py), read once
by `create_runtime`.
"""

from __future__ import annotations

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
from nmcp.model.naming import child_name
from nmcp.model.resources import (
    ANN_LAST_ACTIVE_AT,
    ANN_REQUESTED_AT,
    ANN_SESSIONS,
    ANN_STOP_REQUESTED_AT,
    format_time_precise,
    read_server,
)
from nmcp.model.vocabulary import Condition, Kube, Phase, Reason

if TYPE_CHECKING:
    from gateway.config import Config

log = logging.getLogger("nmcp.up")


def _ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or () if c.get("type") == Condition.READY), {})


class EmbeddedRuntime:
    """Servers of `nmcp up` (see the module docstring)."""

    isolates_sessions = True  # connect(ref, session) starts the session's own process (gateway.runtime)

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
        if pod is not None and pod.session_processes:
            extra["sessionProcesses"] = pod.session_processes
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

    def request(self, ref: ServerRef) -> None:
        self._object(ref)
        log.info("server %s requested", ref, extra={"event": "request", "server": str(ref)})
        self.loop.annotate(str(ref), {ANN_REQUESTED_AT: self._now()})

    def shutdown(self, ref: ServerRef) -> None:
        self._object(ref)
        log.info("server %s: stop requested", ref, extra={"event": "shutdown", "server": str(ref)})
        self.loop.annotate(str(ref), {ANN_STOP_REQUESTED_AT: self._now()})

    def touch(self, ref: ServerRef, sessions: int) -> None:
        obj = self._object(ref)
        annotations = obj["metadata"].get("annotations") or {}
        values = {ANN_SESSIONS: str(max(0, sessions))}
        try:
            before = int(annotations.get(ANN_SESSIONS, 0))
        except ValueError:
            before = 0
        # A session that ends is not activity: counting it would cancel a stop requested just before.
        if (obj.get("status") or {}).get("phase") == Phase.READY and sessions >= before:
            values[ANN_LAST_ACTIVE_AT] = self._now()
        # Activity only moves the idle deadline, which the loop reads when it wakes anyway; a new
        # session count can change maxIdle eviction, so that one wakes it now.
        self.loop.annotate(str(ref), values, kick=annotations.get(ANN_SESSIONS) != values[ANN_SESSIONS])

    def wait_ready(self, ref: ServerRef, timeout: float) -> ServerState:
        deadline = time.monotonic() + timeout
        seen_by = self.loop.passes_started + 1  # the first pass to start from now sees the demand
        while True:
            state = self.get(ref)
            if self.loop.passes_completed >= seen_by:
                if state.phase == Phase.READY and self._reachable(ref):
                    return state
                if state.phase == Phase.DEGRADED:
                    raise StartFailed(f"{ref} cannot start: {state.message}", reason=state.reason)
                if state.phase == Phase.IDLE:
                    raise StartFailed(f"{ref} is not starting: {state.message}", reason=state.reason)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = f"{state.phase}, {state.reason}: {state.message}" if state.reason else state.phase
                raise StartFailed(f"{ref} was not ready within {timeout:g}s ({why})",
                                  reason=state.reason if state.phase == Phase.REQUESTED else Reason.START_TIMEOUT)
            self.loop.wait_change(min(remaining, 1.0))

    def _reachable(self, ref: ServerRef) -> bool:
        pod = self.loop.pod_of(ref.namespace, child_name(ref.name))
        return pod is not None and pod.ready_process() is not None

    def connect(self, ref: ServerRef, session: str | None = None) -> StdioConnection | HttpEndpoint:
        server = read_server(self._object(ref))
        pod = self.loop.pod_of(ref.namespace, child_name(ref.name))
        process = pod.ready_process() if pod is not None else None
        if pod is None or process is None:
            raise StartFailed(f"{ref} is not running", reason=Reason.NOT_RUNNING)
        # The client that asked is being served now: recording it as activity marks the request as
        # served, so the pool does not start the server again for it once it stops.
        self.loop.annotate(str(ref), {ANN_LAST_ACTIVE_AT: self._now()}, kick=False)
        transport = server.transport
        if transport.is_http:
            if session is not None:
                raise StartFailed(f"{ref}: isolation: session needs a stdio server (an HTTP server has one port)",
                                  reason=Reason.NOT_RUNNABLE)
            return HttpEndpoint(f"http://127.0.0.1:{transport.port}{transport.path}", transport.type)
        if session is not None:
            try:
                return PodConnection(pod, pod.session_process(), session=True)
            except OSError as err:
                raise StartFailed(f"{ref}: cannot start a process for the session: {err}",
                                  reason=Kube.RUN_CONTAINER_ERROR) from err
        return PodConnection(pod, process)

    def logs(self, ref: ServerRef, follow: bool) -> Iterator[str]:
        self._object(ref)
        key = f"{ref.namespace}/{child_name(ref.name)}"
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
