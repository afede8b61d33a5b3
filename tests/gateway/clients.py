"""The official MCP SDK (2.x) client, pointed at a server directly or through the gateway.

A `Target` names one way of reaching a server; tests parametrized over targets run the same
behaviour test against the server itself (stdio) and through each gateway transport (STYLE §13:
the gateway changes nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.gateway.conftest import Gateway, standard_servers


@dataclass(frozen=True)
class Target:
    """direct (stdio, no gateway), sse, http (Streamable HTTP, handshake era), or modern (2026-07-28)."""

    via: str

    @property
    def mode(self) -> str:
        return "auto" if self.via == "modern" else "legacy"


DIRECT = Target("direct")
SSE = Target("sse")
HTTP = Target("http")
MODERN = Target("modern")
GATEWAY_TARGETS = (SSE, HTTP, MODERN)
ALL_TARGETS = (DIRECT, *GATEWAY_TARGETS)


def _command(name: str) -> tuple[str, list[str]]:
    for doc in standard_servers():
        if doc["metadata"]["name"] == name:  # type: ignore[index]
            spec: dict[str, Any] = doc["spec"]  # type: ignore[assignment]
            return spec["command"][0], [*spec["command"][1:], *spec["args"]]
    raise KeyError(name)


@contextlib.asynccontextmanager
async def connect(target: Target, gateway: Gateway | None, name: str, **options: Any) -> AsyncIterator[Client]:
    """An initialized SDK client session on server `name`."""
    if target.via == "direct":
        command, args = _command(name)
        transport: Any = StdioServerParameters(command=command, args=args)
    else:
        assert gateway is not None
        if target.via == "sse":
            transport = sse_client(gateway.sse(name))
        else:
            transport = streamable_http_client(gateway.mcp(name), max_sse_event_size=None)
    async with Client(transport, mode=target.mode, **options) as client:
        yield client
