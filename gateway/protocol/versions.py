"""The MCP revisions the gateway serves, the one it speaks upstream, and the HTTP headers of MCP."""

from __future__ import annotations

from typing import Any

# The revision the gateway speaks to upstream servers, and the ones it accepts from clients:
# handshake-era ones negotiate with `initialize`; the 2026-07-28 one is stateless.
UPSTREAM_PROTOCOL_VERSION = "2025-11-25"
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS = ("2026-07-28",)
SERVED_VERSIONS = (*HANDSHAKE_VERSIONS, *MODERN_VERSIONS)
UNSUPPORTED_PROTOCOL_VERSION = -32022  # the JSON-RPC error code for a revision not served

GATEWAY_INFO = {"name": "nmcp-gateway", "version": "0.1.0"}
# What the gateway declares to an upstream: everything it can route to a client that declared it.
UPSTREAM_CAPABILITIES: dict[str, Any] = {"sampling": {}, "elicitation": {"form": {}, "url": {}},
                                         "roots": {"listChanged": True}}
ROUTABLE_CAPABILITIES = ("sampling", "elicitation", "roots")

# The methods a client sends a server (requests and notifications) in the revisions served: the
# names /metrics labels a series with (any other name a client makes up is one label, "other").
CLIENT_METHODS = frozenset({
    "initialize", "ping", "tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list",
    "resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe",
    "logging/setLevel", "completion/complete", "tasks/get", "tasks/list", "tasks/result", "tasks/cancel",
    "server/discover", "subscriptions/listen", "notifications/initialized", "notifications/cancelled",
    "notifications/progress", "notifications/roots/list_changed", "notifications/tasks/status",
})

# Streamable HTTP headers (names as MCP writes them; HTTP compares them case-insensitively).
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
METHOD_HEADER = "Mcp-Method"  # 2026-07-28: the request's method, for intermediaries to route on
NAME_HEADER = "Mcp-Name"  # 2026-07-28: the tool, prompt or resource a request names


def client_capabilities(declared: Any) -> frozenset[str]:
    """Which routable capabilities a client's `capabilities` object declares."""
    if not isinstance(declared, dict):
        return frozenset()
    return frozenset(name for name in ROUTABLE_CAPABILITIES if isinstance(declared.get(name), dict))
