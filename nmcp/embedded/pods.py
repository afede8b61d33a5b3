"""Desired Pods run as local processes: the part of a kubelet `nmcp up` needs.

A `LocalPod` runs the `server` container of the Pod the pool's sync hook asked for (its command,
args and env) with `nmcp.embedded.process.ServerProcess`. Like a kubelet with `restartPolicy:
Always`, it restarts a process that exits on its own: the first time at once, then after a
back-off that doubles from 10 s up to 5 min, showing
`CrashLoopBackOff` meanwhile (the server is Degraded, and clients are refused with that reason).

The back-off resets after a healthy run, so that a server that crashed on one request is not
refused to every other session for longer and longer: a run is healthy when the process answered
on stdout (a JSON line: it started and spoke MCP, so whatever killed it came later, most likely
one request) or stayed up for BACKOFF_RESET (60 s). A healthy run's exit restarts it at once;
only exits in a row without one back off. (A kubelet waits for 10 minutes of running; a local
server shared by every session of a machine cannot.) A Pod with a tcpSocket
readiness probe (HTTP transports) is Ready once its port accepts connections; a stdio Pod is
Ready as soon as its process runs. `delete()` stops the process (SIGTERM, then SIGKILL after the
Pod's termination grace period) and the Pod is gone once the process has been reaped.

Every state change calls `on_change`, which wakes the reconcile loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import gevent
import gevent.event
import gevent.socket

from gateway.redaction import secret_values
from nmcp.embedded.controller import object_key
from nmcp.embedded.observe import Exit, PodSnapshot
from nmcp.embedded.process import LogBuffer, ServerProcess, environment
from nmcp.model.vocabulary import Kube

log = logging.getLogger("nmcp.up")

BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 60.0  # a process that ran this long (or answered at all) starts its back-off afresh
PROBE_INTERVAL = 0.2
DEFAULT_GRACE = 10.0


class LocalPod:
    """One desired Pod as a supervised local process."""

    def __init__(self, desired: Mapping[str, Any], *, owner: str, log_buffer: LogBuffer,
                 on_change: Callable[[], None], clock: Callable[[], datetime],
                 extra_env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        self.desired: dict[str, Any] = dict(desired)
        self.key = object_key(desired)
        self.owner = owner  # the pool (namespace/name) whose sync created it
        self.uid = str(uuid.uuid4())
        self.log_buffer = log_buffer
        self.process: ServerProcess | None = None
        self._on_change = on_change
        self._clock = clock
        self.created_at = clock()
        self._running_since: datetime | None = None
        self._ready_since: datetime | None = None
        self._waiting: tuple[str, str] | None = None
        self._restarts = 0
        self._last_exit: Exit | None = None
        self._deleting_since: datetime | None = None
        self._wake = gevent.event.Event()  # cuts a back-off short when the Pod is deleted
        self.gone = gevent.event.Event()

        spec = self.desired.get("spec") or {}
        container = (spec.get("containers") or [{}])[0]
        self.command: list[str] = [*container.get("command", []), *container.get("args", [])]
        self.env = {**(extra_env or {}), **environment(container.get("env") or [])}
        self.secrets = secret_values(container.get("env") or [], self.env)
        probe = (container.get("readinessProbe") or {}).get("tcpSocket") or {}
        self.probe_port: int | None = probe.get("port") if isinstance(probe.get("port"), int) else None
        grace = spec.get("terminationGracePeriodSeconds")
        self.grace = float(grace) if isinstance(grace, (int, float)) else DEFAULT_GRACE
        self._cwd = cwd
        self._supervisor = gevent.spawn(self._supervise)

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[1]

    @property
    def deleting(self) -> bool:
        return self._deleting_since is not None

    def snapshot(self) -> PodSnapshot:
        reason, message = self._waiting or (None, "")
        return PodSnapshot(
            desired=self.desired, uid=self.uid, created_at=self.created_at,
            pid=self.process.pid if self.process is not None else None,
            running_since=self._running_since, ready_since=self._ready_since,
            waiting_reason=reason, waiting_message=message, restarts=self._restarts,
            last_exit=self._last_exit, deleting_since=self._deleting_since,
        )

    def ready_process(self) -> ServerProcess | None:
        """The running process once the Pod is Ready (what the gateway connects to). A process that
        has just died is not offered, though the loop may not have seen it exit yet: a client that
        reconnects after a crash waits for the restart instead of meeting a closed port."""
        if self._ready_since is None or self.deleting or self.process is None or not self.process.alive():
            return None
        return self.process

    # -- the kubelet part ----------------------------------------------------------------------
    def _supervise(self) -> None:
        consecutive = 0
        while not self.deleting:
            started = self._clock()
            try:
                proc = ServerProcess(self.name, self.command[:1], self.command[1:], self.env,
                                     log_buffer=self.log_buffer, cwd=self._cwd, stop_grace=self.grace,
                                     secrets=self.secrets)
            except OSError as err:
                finished = self._clock()
                detail = f"cannot run {self.command[0]!r}: {err.strerror or err}"
                self.log_buffer.append(f"[nmcp] {detail}")
                self._last_exit = Exit(128, started, finished, detail)
                reason, healthy = Kube.RUN_CONTAINER_ERROR, False
            else:
                if self.deleting:  # deleted while it was being spawned
                    proc.stop(self.grace)
                    break
                self._started(proc)
                code = proc.wait()
                finished = self._clock()
                healthy = proc.answered or (finished - started).total_seconds() >= BACKOFF_RESET
                self.process, self._running_since, self._ready_since = None, None, None
                if self.deleting:
                    break
                detail = f"exited with status {code}" + _tail(self.log_buffer)
                self._last_exit = Exit(code if code is not None else -1, started, finished, detail)
                reason = Kube.CRASH_LOOP
            self._restarts += 1
            consecutive = 1 if healthy else consecutive + 1
            # The exponent is capped: past a thousand exits in a row 2**n would no longer fit a float.
            delay = 0.0 if consecutive == 1 else min(BACKOFF_START * 2 ** min(consecutive - 2, 16), BACKOFF_MAX)
            log.warning("pod %s: %s; restarting %s", self.key, detail, f"in {delay:g}s" if delay else "now")
            self._waiting = (reason, f"{detail} (back-off {delay:g}s restarting container server)") if delay \
                else (Kube.CONTAINER_CREATING, "restarting after the process exited")
            self._on_change()
            if delay:
                self._wake.wait(delay)

    def _started(self, proc: ServerProcess) -> None:
        self.process, self._running_since, self._waiting = proc, self._clock(), None
        if self.probe_port is None:
            self._ready_since = self._running_since
        else:
            gevent.spawn(self._probe, proc, self.probe_port)
        self._on_change()

    def _probe(self, proc: ServerProcess, port: int) -> None:
        """Ready once the port accepts a connection (the Pod's tcpSocket readiness probe)."""
        while self.process is proc and proc.alive() and not self.deleting:
            try:
                gevent.socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                gevent.sleep(PROBE_INTERVAL)
                continue
            if self.process is proc:
                self._ready_since = self._clock()
                self._on_change()
            return

    def release(self, process: ServerProcess) -> None:
        """The gateway is done with `process` (it closed the connection): the Pod goes, and the
        loop starts a fresh one if the server is still wanted. A process that was used and let go
        cannot serve a new upstream session, and killing it directly would look like a crash."""
        if process is self.process and not self.deleting:
            log.info("pod %s: the gateway closed its connection to process %d; stopping the Pod", self.key, process.pid)
            self.delete()

    def delete(self) -> None:
        """Stop the process in the background; `gone` is set (and on_change called) once it is reaped."""
        if self.deleting:
            return
        self._deleting_since = self._clock()
        self._wake.set()
        self._on_change()
        gevent.spawn(self._stop)

    def _stop(self) -> None:
        proc = self.process
        try:
            if proc is not None:
                code = proc.stop(self.grace)
                log.info("pod %s: process %d stopped (status %s)", self.key, proc.pid, code)
            self._supervisor.join()
        except Exception:  # a Pod must never stay terminating: log, make sure the process is gone
            log.exception("pod %s: stopping failed; killing its processes", self.key)
            self._supervisor.kill()
            if proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        finally:
            self.process = None
            self.gone.set()
            self._on_change()


class PodConnection:
    """The stdio of a Pod's process, as handed to the gateway (a `StdioConnection`)."""

    def __init__(self, pod: LocalPod, process: ServerProcess) -> None:
        self.pod = pod
        self.process = process

    def send(self, message: bytes) -> None:
        self.process.send(message)

    def receive(self) -> bytes | None:
        return self.process.receive()

    def close(self) -> None:
        self.pod.release(self.process)


def _tail(buffer: LogBuffer, lines: int = 3) -> str:
    """The last stderr lines of a process, to say why it exited."""
    text = [line for line in buffer.lines() if line and not line.startswith("[nmcp]")][-lines:]
    return (": " + " | ".join(text)) if text else ""


def search_path(extra: list[str]) -> dict[str, str]:
    """A PATH with `extra` directories first: commands installed next to nmcp are found."""
    current = os.environ.get("PATH", "")
    parts = [d for d in extra if d] + [p for p in current.split(os.pathsep) if p and p not in extra]
    return {"PATH": os.pathsep.join(parts)}
