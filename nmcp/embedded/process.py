"""One MCP server as a local child process, and the bounded log its stderr goes to.

`ServerProcess` spawns a server from `command`/`args`/`env` with gevent's subprocess module, so
every pipe read blocks only the calling greenlet. Its stdin/stdout form a `StdioConnection`
(newline-delimited JSON-RPC); its stderr is pumped line by line into a `LogBuffer` (what
`GET .../logs` shows) and the gateway's own log, never to a client, with the values of the
server's secret variables redacted (`gateway.redaction`). `stop()` sends SIGTERM, then SIGKILL after a
grace period, and always waits for the child: gevent's child watcher reaps it, so a server that
dies on its own never lingers as a zombie either.

A server gets a minimal environment (`base_environment`: PATH, HOME, locale and the like) plus
its manifest's variables, never the gateway's whole environment. It runs in a process group of
its own, which is ended with it, and which `nmcp.embedded.reaper` ends even if the gateway is killed.

Used by the embedded runtime's local Pods (`nmcp.embedded.pods`); the gateway itself starts no process.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import gevent
import gevent.event
import gevent.lock
from gevent import subprocess

from gateway.redaction import redact
from nmcp.embedded.reaper import Watchdog, group_alive

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
    """In the child before exec: get SIGTERM if the gateway dies without stopping us (Linux).

    Only the direct child gets it; the rest of its process group is `nmcp.embedded.reaper`'s job."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


# What a local server inherits from the gateway's environment, and why; nothing else passes
# (never an NMCP_* setting, a cloud credential or a token the gateway was started with). A
# manifest adds its own variables; `valueFrom` takes a named variable from the gateway's
# environment (see `environment`), which is how a local server is handed a secret.
INHERITED = (
    "PATH",  # to find the command and what it runs (npx finds node); nmcp up puts its venv's bin first
    "HOME",  # where per-user caches and configuration live (npm's cache for npx, uv, pip)
    "USER", "LOGNAME",  # who runs it: some tools name files or defaults after the user
    "LANG", "LANGUAGE", "TZ",  # text encoding, messages and local time, as the user has them
    "TMPDIR",  # the user's temporary directory (per-user on macOS)
    "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME",  # moved per-user directories
    "XDG_RUNTIME_DIR",
)
INHERITED_PREFIXES = ("LC_",)  # the locale categories, like LANG
# `valueFrom` never reads these from the gateway's environment: they are the gateway's own settings.
GATEWAY_PREFIX = "NMCP_"


def base_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The part of `source` (the gateway's environment) a local server inherits: INHERITED only."""
    source = os.environ if source is None else source
    return {name: value for name, value in source.items()
            if name in INHERITED or name.startswith(INHERITED_PREFIXES)}


def _spawn_env(env: Mapping[str, str] | None) -> dict[str, str]:
    return {**base_environment(), **(env or {})}


class ServerProcess:
    """A running server process; its stdio is a `StdioConnection` (send/receive/close)."""

    def __init__(self, name: str, command: Sequence[str], args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, *, log_buffer: LogBuffer | None = None,
                 cwd: str | None = None, stop_grace: float = DEFAULT_STOP_GRACE,
                 secrets: Sequence[str] = ()) -> None:
        """Spawn the process now; OSError (e.g. FileNotFoundError) if it cannot be started.

        `env` is all the process gets besides `base_environment()`; `secrets` (see
        `gateway.redaction.secret_values`) are redacted from every line it logs."""
        self.name = name
        self.secrets = tuple(secrets)
        self.answered = False  # wrote a JSON line on stdout: it ran far enough to speak MCP
        self.log_buffer = log_buffer if log_buffer is not None else LogBuffer()
        self.stop_grace = stop_grace
        self._log = logging.getLogger(f"nmcp.server.{name}")
        self._write_lock = gevent.lock.Semaphore()
        self._stopping = False
        self._eof = False  # stdout ended: the server can no longer answer
        try:
            self._proc = subprocess.Popen(
                [*command, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=_spawn_env(env), cwd=cwd, close_fds=True, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except ValueError as err:  # a NUL byte in the command, an argument or the environment
            raise OSError(errno.EINVAL, f"invalid command or environment: {err}") from err
        self.pid: int = self._proc.pid
        _watchdog.register(self.pid)  # start_new_session made pid its group id
        self._group_ended = False
        self._exit_watch = gevent.spawn(self._watch_exit)
        self._stderr_pump = gevent.spawn(self._pump_stderr)
        started = redact(f"[nmcp] started pid {self.pid}: {' '.join([*command, *args])}", self.secrets)
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
        if line.startswith(b"{"):
            self.answered = True
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
        deadline = time.monotonic() + grace
        code = self.wait(grace)
        if code is None:
            self._log.warning("pid %d did not exit %.1fs after SIGTERM; killing it", self.pid, grace)
            self._signal(signal.SIGKILL)
            code = self.wait()
        # The rest of its group got the SIGTERM too: the same grace, then SIGKILL.
        while not self._group_ended and group_alive(self.pid) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        self._end_group()
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

    def _watch_exit(self) -> None:
        # Not at the end of stderr: a child left behind (npx's node) holds the pipe open.
        # A stop in progress gives the group its grace period itself.
        self._proc.wait()
        if not self._stopping:
            self._end_group()

    def _end_group(self) -> None:
        """Once the server itself has exited: SIGKILL what it left in its group (npx's node, a
        shell's children: every process a server starts dies with it), and tell the watchdog."""
        if self._group_ended:
            return
        self._group_ended = True
        self._signal(signal.SIGKILL)
        _watchdog.forget(self.pid)

    def _pump_stderr(self) -> None:
        stderr = self._proc.stderr
        if stderr is None:
            return
        try:
            for raw in stderr:
                line = redact(raw.decode("utf-8", "replace").rstrip("\r\n"), self.secrets)
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
    taken from `source` (the gateway's own environment) when set there, and otherwise left out;
    never one of the gateway's own `NMCP_*` settings.
    """
    source = os.environ if source is None else source
    out: dict[str, str] = {}
    for item in env:
        name = str(item.get("name", ""))
        if not name:
            continue
        if "value" in item:
            out[name] = str(item["value"])
        elif name in source and not name.startswith(GATEWAY_PREFIX):
            out[name] = source[name]
    return out


_watchdog = Watchdog()
