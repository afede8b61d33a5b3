"""The upstream of a server spoken to over a `StdioConnection` (newline-delimited JSON-RPC).

A reader greenlet decodes each line once and hands the message to the bridge. A line that is
not a JSON object (a server printing a banner or debug output to stdout) is logged and skipped:
it must not end the session. Lines read are not length-limited, so a 16 MB result passes whole.
Lines written are (NMCP_MAX_MESSAGE): a server that cannot take a line exits on it (those built
on the TypeScript SDK do past 10 MiB), taking every session with it, so the bridge answers the
one caller with an error instead.
"""

from __future__ import annotations

import logging

import gevent

from gateway.protocol.jsonrpc import Message, decode
from gateway.runtime import StdioConnection
from gateway.upstreams.port import OnClose, OnMessage, encode

log = logging.getLogger(__name__)


class StdioUpstream:
    """Reads messages from `conn` in a greenlet; `on_message` gets each, `on_close` the end."""

    def __init__(self, name: str, conn: StdioConnection, on_message: OnMessage, on_close: OnClose,
                 max_message: int | None = None) -> None:
        self.name = name
        self.conn = conn
        self.max_message = max_message
        self.alive = True
        self.skipped_lines = 0
        self._on_message = on_message
        self._on_close = on_close
        self._reader = gevent.spawn(self._read)

    def send(self, message: Message) -> None:
        if not self.alive:
            raise ConnectionError(f"{self.name}: the upstream connection is closed")
        self.conn.send(encode(message, self.max_message))

    def close(self) -> None:
        self.alive = False
        self.conn.close()

    def _read(self) -> None:
        try:
            while True:
                line = self.conn.receive()
                if line is None:
                    break
                if not line.strip():
                    continue
                try:
                    message = decode(line)
                except ValueError:
                    message = None
                if not isinstance(message, dict):
                    self.skipped_lines += 1
                    log.warning("%s: skipped a stdout line that is not JSON-RPC: %r", self.name, line[:200])
                    continue
                try:
                    self._on_message(message)
                except Exception:  # a routing bug must not kill the session for everyone
                    log.exception("%s: failed to route %s", self.name, str(message)[:200])
        except Exception:
            log.exception("%s: reading from the server failed", self.name)
        finally:
            self.alive = False
            self._on_close(self)
