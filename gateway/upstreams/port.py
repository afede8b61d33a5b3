"""The upstream port: what the bridge needs of its one connection to a running server.

An upstream carries parsed messages both ways: `send()` takes a message (a dict), encodes it
once and delivers it the way its transport does; every message the server sends is decoded
once and handed to `on_message`, and the end of the connection (a process that exited, an HTTP
session the server forgot, a dropped stream) to `on_close`, once. Implementations: `stdio`
(newline-delimited JSON over a `StdioConnection`: a local process or a Kubernetes attach
stream) and `http` (one MCP client session to a server that speaks HTTP itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from gateway.protocol.jsonrpc import Message, dumps

OnMessage = Callable[[Message], None]
OnClose = Callable[[Any], None]  # gets the upstream that ended


class MessageTooLarge(ValueError):
    """A message longer than the upstream may be sent (nothing was written)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the message is {size} bytes, over the {limit} bytes the gateway sends a server "
                         f"(NMCP_MAX_MESSAGE)")
        self.size = size
        self.limit = limit


def encode(message: Message, limit: int | None) -> bytes:
    """A message as the one line of JSON sent upstream (json never emits a raw newline);
    MessageTooLarge past `limit` bytes."""
    data = dumps(message)
    if limit is not None and len(data) > limit:
        raise MessageTooLarge(len(data), limit)
    return data


class Upstream(Protocol):
    name: str

    @property
    def alive(self) -> bool: ...

    def send(self, message: Message) -> None:
        """ConnectionError when the server can no longer be written to; MessageTooLarge (nothing
        sent) past the upstream's limit."""

    def close(self) -> None:
        """End the connection; `on_close` follows once."""
