"""One MCP server as a local child process, and the bounded log its stderr goes to.

`ServerProcess` spawns a server from `command`/`args`/`env` with gevent's subprocess module, so
every pipe read blocks only the calling greenlet. Its stdin/stdout form a `StdioConnection`
(newline-delimited JSON-RPC); its stderr is pumped line by line into a `LogBuffer` (what
`GET .../logs` shows) and the gateway's own log, never to a client. `stop()` sends SIGTERM, then
SIGKILL after a grace period, and always waits for the child: gevent's child watcher reaps it, so
a server that dies on its own never lingers as a zombie either.

Used by the local runtime and by `nmcp up`'s embedded runtime.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import gevent
import gevent.event
import gevent.lock
from gevent import subprocess

log = logging.getLogger(__name__)

DEFAULT_LOG_LINES = 1000
DEFAULT_STOP_GRACE = 5.0
PR_SET_PDEATHSIG = 1


class LogBuffer:
    """The last `max_lines` log lines of one server, across its restarts, with follow support."""

    def __init__(self, max_lines: int = DEFAULT_LOG_LINES) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._next = 0  # absolute number of the next line appended
        self._changed = gevent.event.Event()

    def append(self, line: str) -> None:
        self._lines.append(line)
        self._next += 1
        # Wake every follower, then arm a fresh event for the next line.
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def lines(self, follow: bool = False, poll: float | None = None) -> Iterator[str]:
        """The retained lines; with `follow`, then every new line as it comes (until closed).

        With `poll`, yields "" whenever `poll` seconds pass without a line, so a streaming HTTP
        response can write a keep-alive and notice a client that went away.
        """
        index = self._next - len(self._lines)
        while True:
            first = self._next - len(self._lines)
            index = max(index, first)  # lines dropped from the front while we waited are gone
            while index < self._next:
                yield self._lines[index - first]
                index += 1
            if not follow:
                return
            if not self._changed.wait(poll) and poll is not None:
                yield ""


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the gateway dies without stopping us (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn_env(env: Mapping[str, str] | None) -> dict[str, str]:
    # The server inherits the gateway's environment (PATH, HOME, proxies) with its own on top.
    return {**os.environ, **(env or {})}


class ServerProcess:
    """A running server process; its stdio is a `StdioConnection` (send/receive/close)."""

    def __init__(self, name: str, command: Sequence[str], args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, *, log_buffer: LogBuffer | None = None,
                 cwd: str | None = None, stop_grace: float = DEFAULT_STOP_GRACE) -> None:
        """Spawn the process now; OSError (e.g. FileNotFoundError) if it cannot be started."""
        self.name = name
        self.log_buffer = log_buffer if log_buffer is not None else LogBuffer()
        self.stop_grace = stop_grace
        self._log = logging.getLogger(f"nmcp.server.{name}")
        self._write_lock = gevent.lock.Semaphore()
        self._stopping = False
        self._eof = False  # stdout ended: the server can no longer answer
        self._proc = subprocess.Popen(
            [*command, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_spawn_env(env), cwd=cwd, close_fds=True, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.pid: int = self._proc.pid
        self._stderr_pump = gevent.spawn(self._pump_stderr)
        started = f"[nmcp] started pid {self.pid}: {' '.join([*command, *args])}"
        self.log_buffer.append(started)
        self._log.info("%s", started)

    # -- StdioConnection -------------------------------------------------------------------------
    def send(self, message: bytes) -> None:
        """Write one message and its newline; ConnectionError once the process's stdin is gone."""
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            raise ConnectionError(f"{self.name}: stdin is closed")
        with self._write_lock:  # a large message is written in parts; never interleave two
            try:
                stdin.write(message + b"\n")
                stdin.flush()
            except (OSError, ValueError) as err:
                raise ConnectionError(f"{self.name}: cannot write to the server: {err}") from err

    def receive(self) -> bytes | None:
        """The next stdout line without its newline; None at end of stream."""
        stdout = self._proc.stdout
        if stdout is None:
            return None
        try:
            line = stdout.readline()
        except (OSError, ValueError):
            self._eof = True
            return None
        if not line:
            self._eof = True
            return None
        return line.rstrip(b"\r\n") if line.endswith(b"\n") else line

    def close(self) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def alive(self) -> bool:
        """Running, with its stdout open. (Its stdout can end before the loop has seen it exit.)"""
        return not self._eof and self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status once the process has ended (and been reaped); None on timeout."""
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float | None = None) -> int | None:
        """End the process: close stdin, SIGTERM its process group, SIGKILL after `grace` seconds."""
        grace = self.stop_grace if grace is None else grace
        if not self._stopping:
            self._stopping = True
            if self._proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self._proc.stdin.close()
            if self._proc.poll() is None:
                self._signal(signal.SIGTERM)
        code = self.wait(grace)
        if code is None:
            self._log.warning("pid %d did not exit %.1fs after SIGTERM; killing it", self.pid, grace)
            self._signal(signal.SIGKILL)
            code = self.wait()
        # Child processes left behind by the server (npx, shells) share its group.
        self._signal(signal.SIGKILL)
        self._stderr_pump.join(timeout=1)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                # RuntimeError ("reentrant call"): another greenlet is blocked reading the stream
                # (the bridge's upstream reader); it gets end-of-file now that the process is gone.
                with contextlib.suppress(OSError, RuntimeError):
                    stream.close()
        return code

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)  # start_new_session made pid its group id

    def _pump_stderr(self) -> None:
        stderr = self._proc.stderr
        if stderr is None:
            return
        try:
            for raw in stderr:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.log_buffer.append(line)
                self._log.info("%s", line)
        except (OSError, ValueError):
            pass  # the pipe closed under us: the process is gone
        code = self.wait()
        note = f"[nmcp] process {self.pid} exited with status {code}"
        self.log_buffer.append(note)
        self._log.info("%s", note)

    def __repr__(self) -> str:
        return f"ServerProcess({self.name!r}, pid={self.pid})"


def environment(env: Sequence[Mapping[str, Any]], source: Mapping[str, str] | None = None) -> dict[str, str]:
    """A Kubernetes EnvVar list as a plain dict for a local process.

    `value` is taken as is. `valueFrom` cannot be resolved without a cluster, so such a variable is
    taken from `source` (the gateway's own environment) when set there, and otherwise left out.
    """
    source = os.environ if source is None else source
    out: dict[str, str] = {}
    for item in env:
        name = str(item.get("name", ""))
        if not name:
            continue
        if "value" in item:
            out[name] = str(item["value"])
        elif name in source:
            out[name] = source[name]
    return out
