"""The local runtime: servers from MCPServer manifests, run as child processes of the gateway.

A server's process starts when a client needs it (scale from zero: `request`), is restarted by
the next request after it exited, and is stopped by `shutdown`, by its idle timeout (no client
session and no activity for `idleTimeout`), and when the gateway exits. A server with
`isolation: session` gets one process per client session (`connect(ref, session)`); those end
with their session. A server without a `command` (image-only) cannot run here: StartFailed
with reason NotRunnable, at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import gevent
import gevent.socket

from gateway.config import Config
from gateway.process import LogBuffer, ServerProcess, environment
from gateway.redaction import secret_values
from gateway.runtime import (
    HttpEndpoint,
    ServerNotFound,
    ServerRef,
    ServerState,
    StartFailed,
    StdioConnection,
    pick,
)
from nmcp.model import manifests
from nmcp.model.resources import DEFAULT_IDLE_TIMEOUT, Server, read_server

log = logging.getLogger(__name__)

IDLE_CHECK_INTERVAL = 5.0
HTTP_READY_TIMEOUT = 30.0


class ManifestError(ValueError):
    """Manifests that cannot be served; the message names each file, document and field."""


def load_servers(paths: Iterable[str], namespace: str = "default") -> list[Server]:
    """Every MCPServer in the manifests, validated like `kubectl apply` would; ManifestError otherwise.

    MCPPool documents are accepted and ignored: the local runtime has no pools.
    """
    loaded = manifests.load(list(paths), namespace)
    if loaded.problems:
        raise ManifestError("invalid manifests:\n  " + "\n  ".join(map(str, loaded.problems)))
    return [read_server(m.obj, namespace) for m in loaded.of_kind("MCPServer")]


@dataclass
class _Entry:
    server: Server
    logs: LogBuffer
    process: ServerProcess | None = None
    isolated: list[ServerProcess] = field(default_factory=list)
    sessions: int = 0
    last_active: float = 0.0  # monotonic
    last_active_at: datetime | None = None
    failure: StartFailed | None = None
    last_exit: int | None = None


class LocalRuntime:
    """Servers as local child processes (see the module docstring)."""

    isolates_sessions = True

    def __init__(self, servers: Iterable[Server], *, stop_grace: float = 5.0, log_lines: int = 1000) -> None:
        self.stop_grace = stop_grace
        self._entries = {ServerRef(s.namespace, s.name): _Entry(s, LogBuffer(log_lines)) for s in servers}
        self._reaper: gevent.Greenlet | None = None

    # -- what exists ---------------------------------------------------------------------------
    def list_servers(self) -> list[ServerState]:
        return [self._state(ref) for ref in sorted(self._entries, key=str)]

    def resolve(self, name: str, namespace: str | None = None) -> ServerRef:
        return pick(self._entries, name, namespace)

    def get(self, ref: ServerRef) -> ServerState:
        self._entry(ref)
        return self._state(ref)

    def _entry(self, ref: ServerRef) -> _Entry:
        entry = self._entries.get(ref)
        if entry is None:
            raise ServerNotFound(f"no MCPServer {ref}")
        return entry

    def _state(self, ref: ServerRef) -> ServerState:
        entry = self._entries[ref]
        extra = {"pid": entry.process.pid} if entry.process and entry.process.alive() else {}
        if entry.isolated:
            extra["processes"] = len([p for p in entry.isolated if p.alive()])
        if entry.process is not None and entry.process.alive():
            phase, reason, message = "Ready", "Running", ""
        elif entry.failure is not None:
            phase, reason, message = "Degraded", entry.failure.reason, entry.failure.message
        elif entry.last_exit not in (None, 0, -15):
            phase, reason, message = "Idle", "Exited", f"the last process exited with status {entry.last_exit}"
        else:
            phase, reason, message = "Idle", "", ""
        return ServerState(entry.server, phase, reason, message, entry.sessions, entry.last_active_at, extra)

    # -- demand --------------------------------------------------------------------------------
    def request(self, ref: ServerRef) -> None:
        entry = self._entry(ref)
        self._start_reaper()
        entry.last_active, entry.last_active_at = time.monotonic(), datetime.now(UTC)
        if entry.process is not None and entry.process.alive():
            return
        self._forget_process(entry)
        entry.failure = None
        try:
            if entry.server.isolation == "session":
                self._check_runnable(entry.server)  # each session's connect() starts its own process
            else:
                entry.process = self._spawn(entry)
        except StartFailed as err:
            entry.failure = err

    def _check_runnable(self, server: Server) -> None:
        if not server.command:
            raise StartFailed(f"{server.key} has no command: the local runtime runs spec.command (with spec.args "
                              f"and spec.env); an image-only server needs the kubernetes runtime",
                              reason="NotRunnable")
        if server.problems:
            raise StartFailed(f"{server.key}: " + "; ".join(str(p) for p in server.problems), reason="InvalidSpec")

    def _spawn(self, entry: _Entry) -> ServerProcess:
        server = entry.server
        self._check_runnable(server)
        try:
            env = environment(server.env)
            return ServerProcess(server.key, server.command, server.args, env, log_buffer=entry.logs,
                                 stop_grace=self.stop_grace, secrets=secret_values(server.env, env))
        except OSError as err:
            entry.logs.append(f"[nmcp] cannot start {' '.join(server.command)}: {err}")
            raise StartFailed(f"{server.key}: cannot start {server.command[0]!r}: {err}", reason="SpawnFailed") from err

    def _forget_process(self, entry: _Entry) -> None:
        if entry.process is not None and not entry.process.alive():
            entry.last_exit = entry.process.returncode
            entry.process = None

    def shutdown(self, ref: ServerRef) -> None:
        entry = self._entry(ref)
        process, entry.process = entry.process, None
        isolated, entry.isolated = entry.isolated, []
        stopping = [p for p in [process, *isolated] if p is not None]
        gevent.joinall([gevent.spawn(p.stop) for p in stopping])
        if process is not None:
            entry.last_exit = process.returncode

    def touch(self, ref: ServerRef, sessions: int) -> None:
        entry = self._entry(ref)
        entry.sessions = sessions
        entry.last_active, entry.last_active_at = time.monotonic(), datetime.now(UTC)

    def wait_ready(self, ref: ServerRef, timeout: float) -> ServerState:
        entry = self._entry(ref)
        if entry.failure is not None:
            raise entry.failure
        if entry.server.isolation == "session":
            return self._state(ref)
        if entry.process is None or not entry.process.alive():
            self.request(ref)
            if entry.failure is not None:
                raise entry.failure
        if entry.server.transport.is_http:
            self._wait_http(entry, timeout)
        return self._state(ref)

    def _wait_http(self, entry: _Entry, timeout: float) -> None:
        """An HTTP server is ready once its port accepts connections."""
        port = entry.server.transport.port
        deadline = time.monotonic() + min(timeout, HTTP_READY_TIMEOUT)
        while time.monotonic() < deadline:
            if entry.process is None or not entry.process.alive():
                raise StartFailed(f"{entry.server.key} exited while starting", reason="ExitedDuringStart")
            try:
                gevent.socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                gevent.sleep(0.1)
        raise StartFailed(f"{entry.server.key} did not listen on port {port} in time", reason="StartTimeout")

    def connect(self, ref: ServerRef, session: str | None = None) -> StdioConnection | HttpEndpoint:
        entry = self._entry(ref)
        server = entry.server
        if server.transport.is_http:
            if session is not None:
                raise StartFailed(f"{server.key}: isolation: session needs a stdio server locally",
                                  reason="NotRunnable")
            return HttpEndpoint(f"http://127.0.0.1:{server.transport.port}{server.transport.path}",
                                server.transport.type)
        if session is not None:
            entry.isolated = [p for p in entry.isolated if p.alive()]
            process = self._spawn(entry)
            entry.isolated.append(process)
            return process
        if entry.process is None or not entry.process.alive():
            raise StartFailed(f"{server.key} is not running", reason="NotRunning")
        return entry.process

    def logs(self, ref: ServerRef, follow: bool) -> Iterator[str]:
        return self._entry(ref).logs.lines(follow, poll=1.0 if follow else None)

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.kill(block=False)
        gevent.joinall([gevent.spawn(self.shutdown, ref) for ref in self._entries])

    # -- idle stop -----------------------------------------------------------------------------
    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = gevent.spawn(self._reap_idle)

    def _reap_idle(self) -> None:
        while True:
            gevent.sleep(IDLE_CHECK_INTERVAL)
            now = time.monotonic()
            for ref, entry in self._entries.items():
                process = entry.process
                idle = entry.server.idle_timeout or DEFAULT_IDLE_TIMEOUT
                if process is not None and process.alive() and entry.sessions == 0 \
                        and now - entry.last_active > idle:
                    log.info("%s: idle for %.0fs with no session; stopping it", ref, now - entry.last_active)
                    self.shutdown(ref)


def create_runtime(config: Config) -> LocalRuntime:
    """The local runtime over the servers in `config.manifests`."""
    return LocalRuntime(load_servers(config.manifests), stop_grace=config.stop_grace, log_lines=config.log_lines)
