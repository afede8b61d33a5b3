"""A 2026-07-28 (stateless) request as a raw HTTP client sends it: the negotiation in `params._meta`,
the routing mirrored in headers."""

from __future__ import annotations

from typing import Any

MODERN = "2026-07-28"


def modern(method: str, params: dict[str, Any] | None = None, request_id: int = 1,
           capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": capabilities or {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": meta}}


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    return {"MCP-Protocol-Version": MODERN, "Mcp-Method": method, **({"Mcp-Name": name} if name else {})}
