"""A JSON-RPC message pump over one `StdioConnection` (newline-delimited JSON-RPC).

A reader greenlet parses each line and hands the message to the bridge. A line that is not a
JSON object (a server printing a banner or debug output to stdout) is logged and skipped: it
must not end the session. Lines read are not length-limited, so a 16 MB result passes whole.
Lines written are (NMCP_MAX_MESSAGE): a server that cannot take a line exits on it (those built
on the TypeScript SDK do past 10 MiB), taking every session with it, so the bridge answers the
one caller with an error instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import gevent

from gateway.jsonrpc import dumps
from gateway.runtime import StdioConnection

log = logging.getLogger(__name__)


class MessageTooLarge(ValueError):
    """A message longer than the upstream may be sent (nothing was written)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the message is {size} bytes, over the {limit} bytes the gateway sends a server "
                         f"(NMCP_MAX_MESSAGE)")
        self.size = size
        self.limit = limit


def encode(message: dict[str, Any]) -> bytes:
    """One message as a single line (json.dumps never emits a raw newline)."""
    return dumps(message)


def decode(line: bytes) -> dict[str, Any] | None:
    """The JSON object on a line; None for anything else."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Upstream:
    """Reads messages from `conn` in a greenlet; `on_message` gets each, `on_close` the end."""

    def __init__(self, name: str, conn: StdioConnection, on_message: Callable[[dict[str, Any]], None],
                 on_close: Callable[[Upstream], None], max_message: int | None = None) -> None:
        self.name = name
        self.conn = conn
        self.max_message = max_message
        self.alive = True
        self.skipped_lines = 0
        self._on_message = on_message
        self._on_close = on_close
        self._reader = gevent.spawn(self._read)

    def send(self, message: dict[str, Any]) -> None:
        """ConnectionError if the server can no longer be written to; MessageTooLarge (nothing
        sent) past `max_message` bytes."""
        if not self.alive:
            raise ConnectionError(f"{self.name}: the upstream connection is closed")
        line = encode(message)
        if self.max_message is not None and len(line) > self.max_message:
            raise MessageTooLarge(len(line), self.max_message)
        self.conn.send(line)

    def close(self) -> None:
        """End the connection; `on_close` runs once the reader has seen the end."""
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
                message = decode(line)
                if message is None:
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
