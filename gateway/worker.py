"""The gateway's gunicorn worker: gunicorn's gevent worker with a deadline on every request head.

gunicorn's gevent worker waits for each request head under one timer, the keep-alive timeout
(75 s here), counted from when it starts waiting. A client that trickles a header line every few
seconds holds its connection for all of that, and a few thousand such clients fill the worker:
nothing else, `/healthz` included, gets in. This worker gives every head a deadline of its own
(NMCP_HEADER_TIMEOUT):

* the first request of a connection must arrive whole within the header timeout of connecting;
* on a kept-alive connection the client may stay silent for the keep-alive timeout (load
  balancers reuse idle connections), and once the next request's first bytes arrive its whole
  head must follow within the header timeout.

A client that misses its deadline is disconnected, as gunicorn does when a keep-alive wait runs
out (no response, the connection closed). The unread rest of an earlier body is drained under
the same deadline. Bodies the app reads are bounded in size (NMCP_MAX_BODY), not in time.

Before serving, the worker raises its open-file limit to fit `worker_connections` (every
connection is a file descriptor) and logs a warning when the system does not allow it.

`gunicorn.conf.py` names this class; the master imports it before the worker forks, so it imports
nothing that gevent must patch first (gateway.config and gateway.limits are plain Python).
"""

from __future__ import annotations

import resource
import ssl
import time
from types import TracebackType
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from gateway.config import Config
from gateway.limits import FD_RESERVE, fd_capacity_warning, open_files_target

SLOW_LOG_INTERVAL = 60.0  # seconds between two log lines about disconnected slow clients


class HeadDeadline:
    """The timer of one connection while it waits for a request head (a context manager that
    gunicorn enters around each `next(parser)`; a deadline missed ends the wait silently)."""

    def __init__(self, header_timeout: float, keepalive: float, on_slow: Any) -> None:
        self.header_timeout = header_timeout
        self.keepalive = keepalive
        self.on_slow = on_slow  # called when a head (not an idle keep-alive wait) ran out of time
        self.waits = 0
        self.idle = False  # waiting on a kept-alive connection and nothing has arrived yet
        self.timer: gevent.Timeout | None = None

    def __enter__(self) -> HeadDeadline:
        self.idle = self.waits > 0
        self.waits += 1
        self.timer = gevent.Timeout(self.keepalive if self.idle else self.header_timeout)
        self.timer.start()
        return self

    def arrived(self) -> None:
        """Bytes came in: on a kept-alive connection the head's own deadline starts now."""
        if self.timer is None or not self.idle:
            return
        self.idle = False
        self.timer.close()
        self.timer = gevent.Timeout(self.header_timeout)
        self.timer.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.close()
        if value is None or value is not timer:
            return False
        if not self.idle:
            self.on_slow()
        return True  # gunicorn sees no request and closes the connection


class WatchedSocket:
    """A client socket as gunicorn reads it, telling the connection's deadline when bytes arrive.

    Everything else is the socket's own (gevent sockets take no new attributes, hence a wrapper).
    TLS sockets are not wrapped: gunicorn looks at their type; on them a kept-alive connection's
    head has the keep-alive timeout, as in gunicorn.
    """

    __slots__ = ("_deadline", "_sock", "sendall")

    def __init__(self, sock: Any, deadline: HeadDeadline) -> None:
        self._sock = sock
        self._deadline = deadline
        self.sendall = sock.sendall  # every response is written with it: no __getattr__ on the way

    def recv(self, *args: Any) -> bytes:
        data = self._sock.recv(*args)
        if data:
            self._deadline.arrived()
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class GatewayWorker(GeventWorker):
    """gunicorn's gevent worker, plus head deadlines and an open-file limit that fits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = Config.from_env().header_timeout
        self._deadlines: dict[Any, HeadDeadline] = {}  # by the greenlet serving the connection
        self._slow = 0
        self._slow_logged_at = 0.0

    def init_process(self) -> None:
        self._raise_open_files()
        super().init_process()

    def _raise_open_files(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = open_files_target(soft, hard, self.worker_connections + FD_RESERVE, resource.RLIM_INFINITY)
        if target is None:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, target)
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            self.log.warning(fd_capacity_warning(hard, self.worker_connections))
            return
        self.log.info("raised the open-file limit from %d to %d for %d connections",
                      soft, target[0], self.worker_connections)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        deadline = HeadDeadline(self.header_timeout, self.cfg.keepalive, self._slow_client)
        serving = gevent.getcurrent()
        self._deadlines[serving] = deadline
        try:
            sock = client if isinstance(client, ssl.SSLSocket) else WatchedSocket(client, deadline)
            super().handle(listener, sock, addr)
        finally:
            self._deadlines.pop(serving, None)

    def timeout_ctx(self) -> Any:
        deadline = self._deadlines.get(gevent.getcurrent())
        return deadline if deadline is not None else super().timeout_ctx()

    def _slow_client(self) -> None:
        """Count a disconnected slow client; log the count at most once a minute (a flood of them
        must not flood the log too)."""
        self._slow += 1
        now = time.monotonic()
        if now - self._slow_logged_at >= SLOW_LOG_INTERVAL:
            self.log.info("disconnected %d client(s) that sent no complete request head within %gs "
                          "(NMCP_HEADER_TIMEOUT)", self._slow, self.header_timeout)
            self._slow, self._slow_logged_at = 0, now
