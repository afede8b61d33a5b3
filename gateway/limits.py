"""What the gateway holds against hostile input and heavy load: pure decisions, no I/O.

* Sessions: a client session nobody uses expires after its server's idle timeout (at least
  `MIN_SESSION_TIMEOUT`), unless NMCP_SESSION_TIMEOUT fixes one for every server; a server holds
  at most NMCP_MAX_SESSIONS, and a client turned away is told when a place frees up.
* Open files: every connection is a file descriptor, so the process's soft limit must exceed
  `worker_connections`; the worker raises it where the system allows and says so when it cannot.

The gateway's greenlets carry these decisions out (gateway.hub, gateway.worker).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from nmcp.model.resources import DEFAULT_IDLE_TIMEOUT

# A server that stops after a few seconds idle must not end its clients' sessions that soon:
# a person reading an answer is not gone.
MIN_SESSION_TIMEOUT = 60.0
# File descriptors kept for what is not a client connection: server pipes, upstream sockets, logs.
FD_RESERVE = 1024


def session_timeout_for(configured: float | None, idle_timeout: float | None) -> float:
    """Seconds an unused session of a server lives: the configured value, else the server's
    idle timeout (the model's default when it sets none), never below MIN_SESSION_TIMEOUT."""
    if configured is not None:
        return configured
    idle = idle_timeout if idle_timeout is not None else DEFAULT_IDLE_TIMEOUT
    return max(MIN_SESSION_TIMEOUT, idle)


@dataclass(frozen=True)
class Admission:
    """Whether a server takes one more session; when not, how long until one may expire."""

    admitted: bool
    retry_after: int = 0  # whole seconds, at least 1 when refused


def admit_session(open_sessions: int, limit: int, idle_for: Iterable[float], timeout: float) -> Admission:
    """A new session on a server holding `open_sessions` (`idle_for`: how long each session that
    could expire has gone unused). Refused at `limit`, with the wait until the first expiry, or a
    whole `timeout` when every session holds a stream (it expires only once its stream ends)."""
    if open_sessions < limit:
        return Admission(True)
    waits = [timeout - idle for idle in idle_for]
    wait = min(waits) if waits else timeout
    return Admission(False, max(1, math.ceil(wait)))


def open_files_target(soft: int, hard: int, needed: int, unlimited: int) -> tuple[int, int] | None:
    """The (soft, hard) open-file limits to ask for, or None when the current ones suffice.

    The soft limit goes up to `needed`; past the hard limit the hard one must rise too, which
    only a privileged process may do (the worker then settles for the hard limit and warns).
    `unlimited` is resource.RLIM_INFINITY.
    """
    if soft == unlimited or soft >= needed:
        return None
    if hard == unlimited or hard >= needed:
        return needed, hard
    return needed, needed


def fd_capacity_warning(limit: int, worker_connections: int) -> str:
    """The log line for a limit that could not be raised far enough."""
    room = max(0, limit - FD_RESERVE)
    return (f"open-file limit {limit} could not be raised to {worker_connections + FD_RESERVE}: the gateway "
            f"holds about {room} connections, not NMCP_WORKER_CONNECTIONS={worker_connections}; raise the "
            f"limit (ulimit -n, the container's nofile) or lower NMCP_WORKER_CONNECTIONS")
