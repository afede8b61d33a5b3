"""A hand-driven MCP client session over one HTTP upstream: raw JSON-RPC, nothing hidden.

What the upstream hands over (each message, then its end) lands in a queue, so every wait in a
test has a guard timeout instead of hanging, and the end of the upstream is observable like any
message.
"""

from __future__ import annotations

import os
import queue
from typing import Any

from gateway.runtime import HttpEndpoint
from gateway.upstreams.http import UpstreamSettings, open_http_upstream

GUARD = 30.0  # seconds; a failure guard, never a timing assertion
ENDED = object()


def socket_fds() -> set[str]:
    """The sockets this process holds open (as `socket:[inode]`)."""
    links = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the fd of the listing itself, gone already
        if link.startswith("socket:"):
            links.add(link)
    return links


class Driver:
    def __init__(self, endpoint: HttpEndpoint, settings: UpstreamSettings | None = None) -> None:
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.ids = iter(range(1, 1_000_000))
        self.conn = open_http_upstream(endpoint, settings, self.inbox.put, lambda _: self.inbox.put(ENDED))

    def send(self, message: dict[str, Any]) -> None:
        self.conn.send(message)

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        request_id = next(self.ids)
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}})
        return request_id

    def next(self, timeout: float = GUARD) -> Any:
        """The next message from the server, or ENDED."""
        return self.inbox.get(timeout=timeout)

    def next_request(self) -> dict[str, Any]:
        """The next request from the server (notifications before it are dropped)."""
        while True:
            message = self.next()
            assert message is not ENDED, "the upstream ended before the server sent a request"
            if "method" in message and "id" in message:
                return message

    def until_response(self, request_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The response to `request_id`, and everything that came before it."""
        before = []
        while True:
            message = self.next()
            assert message is not ENDED, f"the upstream ended before answering request {request_id}"
            if message.get("id") == request_id and "method" not in message:
                return message, before
            before.append(message)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The result of one request (fails on a JSON-RPC error)."""
        response, _ = self.until_response(self.request(method, params))
        assert "result" in response, response
        return response["result"]

    def handshake(self, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        """initialize + notifications/initialized, as the bridge does it; the initialize result."""
        result = self.call("initialize", {"protocolVersion": "2025-11-25", "capabilities": capabilities or {},
                                          "clientInfo": {"name": "nmcp-test", "version": "0"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return result

    def wait_ended(self) -> list[dict[str, Any]]:
        """Everything received until the upstream ended (fails if it does not end in time)."""
        seen = []
        while True:
            message = self.next()
            if message is ENDED:
                return seen
            seen.append(message)
