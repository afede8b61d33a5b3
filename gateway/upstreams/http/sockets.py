"""The sockets of one HTTP upstream session, tracked so that close() can shut every one down
(which wakes every thread blocked on one), with TCP keep-alive on each."""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager


class Sockets:
    """Every connection one upstream session opened, so close() can wake whoever blocks on one."""

    def __init__(self) -> None:
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, connection: Any) -> None:
        with self._lock:
            self._connections.add(connection)

    def shutdown(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if sock is None:
                continue
            with contextlib.suppress(OSError):  # already closed by its reader
                sock.shutdown(socket.SHUT_RDWR)


# TCP keep-alive: an event stream may rightly stay silent for hours, so no read timeout guards it;
# these find a peer that vanished without a word (a deleted pod, a dead node) within about a minute.
_KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}
_SOCKET_OPTIONS = [
    *HTTPConnection.default_socket_options,
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    *[(socket.IPPROTO_TCP, getattr(socket, name), value) for name, value in _KEEPALIVE.items()
      if hasattr(socket, name)],
]


class TrackingAdapter(HTTPAdapter):
    """An HTTPAdapter whose connection pools register each new connection with `Sockets`."""

    def __init__(self, sockets: Sockets) -> None:
        self._sockets = sockets
        super().__init__(pool_connections=4, pool_maxsize=64)

    def _track(self, manager: PoolManager) -> None:
        sockets = self._sockets

        class Pool(HTTPConnectionPool):
            def _new_conn(self) -> Any:
                connection = super()._new_conn()
                sockets.add(connection)
                return connection

        class TlsPool(HTTPSConnectionPool):
            def _new_conn(self) -> Any:
                connection = super()._new_conn()
                sockets.add(connection)
                return connection

        manager.pool_classes_by_scheme = {"http": Pool, "https": TlsPool}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("socket_options", _SOCKET_OPTIONS)
        super().init_poolmanager(*args, **kwargs)
        self._track(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        self._track(manager)
        return manager
