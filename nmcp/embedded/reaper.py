"""Every process a server starts dies with it, even when the gateway is killed with SIGKILL.

Each server runs in a process group of its own (`start_new_session`), and `ServerProcess` ends
the whole group when it stops the server or sees it exit, so what a server forks (the `node` that
`npx` starts, a shell's children) goes with it. That needs the gateway alive, though. The
parent-death signal (PR_SET_PDEATHSIG) reaches only the direct child, and `npx` does not pass it
on: killing the gateway with SIGKILL used to leave `node` running, reparented to init.

So the first server a process starts also starts this watchdog: a small separate process (this
file run by the same Python with `-I -S`, the standard library only) in a session of its own, so
that a terminal's Ctrl-C or a kill of the gateway's process group does not reach it. It reads a
pipe from the gateway: `+PGID` for every process group the gateway starts, `-PGID` once that group
is gone. When the pipe ends (the gateway exited, however: the kernel closes a dead process's
descriptors even after SIGKILL), the watchdog sends SIGTERM to every group still registered,
SIGKILL to those left after a grace period, and exits. After an orderly shutdown every group has
already been stopped and deregistered, so it simply exits.

Chosen over a subreaper (PR_SET_CHILD_SUBREAPER), which only moves orphans to the gateway and is
no help once the gateway itself is gone, and over reaping leftovers at the next start, which
leaves them running until then. Limits: a process that leaves its group (setsid, a daemon that
double-forks) escapes it, as it escapes `stop()`; and if the watchdog is killed too (SIGKILL to
every process of the machine's user), nothing is left to clean up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time

log = logging.getLogger(__name__)

GRACE = 3.0  # seconds between SIGTERM and SIGKILL once the gateway is gone


class Watchdog:
    """The gateway's side of the pipe: one watchdog per process (started on first use, again after a fork)."""

    def __init__(self) -> None:
        self._owner = 0  # the pid that started the current watchdog
        self._pipe: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def register(self, pgid: int) -> None:
        """`pgid` dies with this process from now on."""
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        """`pgid` is gone (stopped and reaped); the watchdog must never signal that number again."""
        self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        if self._owner != os.getpid():
            self._start()
        if self._pipe is None:
            return
        try:
            os.write(self._pipe, line.encode())  # shorter than PIPE_BUF: atomic, never interleaved
        except OSError as err:  # the watchdog died: start another one for what comes next
            log.warning("the process-group watchdog is gone (%s); starting a new one", err)
            self._owner = 0

    def _start(self) -> None:
        self._owner = os.getpid()
        self._pipe = None
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                env={"PATH": os.environ.get("PATH", "")}, close_fds=True, start_new_session=True)
        except OSError as err:
            log.warning("cannot start the process-group watchdog (%s): servers may outlive a killed gateway", err)
            return
        assert self._process.stdin is not None
        self._pipe = self._process.stdin.fileno()


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def end_groups(groups: set[int], grace: float = GRACE) -> None:
    """SIGTERM every group, then SIGKILL whatever is left after `grace` seconds."""
    for pgid in groups:
        _signal(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(group_alive(pgid) for pgid in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pgid in groups:
        _signal(pgid, signal.SIGKILL)


def main() -> None:
    """The watchdog: collect groups from stdin until it ends, then end them."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # only the end of the pipe ends the watchdog
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if len(line) > 1 and line[1:].isdigit() and int(line[1:]) > 1:
            if line.startswith(b"+"):
                groups.add(int(line[1:]))
            elif line.startswith(b"-"):
                groups.discard(int(line[1:]))
    end_groups(groups)


if __name__ == "__main__":
    main()
