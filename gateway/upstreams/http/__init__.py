"""Upstreams to MCP servers that speak HTTP themselves: one MCP client session each.

* `sse` (2024-11-05, `legacy_sse`): a GET opens the event stream, client messages are POSTed
  to the endpoint it names, and every server message arrives on that stream.
* `streamable-http` (2025-03-26 to 2025-11-25, `streamable`): every client message is POSTed;
  a request is answered with JSON or an SSE stream, and a GET stream carries the rest.

Either is an upstream like any other (gateway.upstreams.port): the bridge sends it parsed
messages and gets parsed messages back, whatever channel they arrived on. The end of the
session (its server forgot it: 404; its connection dropped) is `on_close`; the bridge then
starts over.
"""

from __future__ import annotations

from gateway.runtime import HttpEndpoint
from gateway.upstreams.http.legacy_sse import SseUpstream
from gateway.upstreams.http.session import HttpSession
from gateway.upstreams.http.settings import UpstreamSettings
from gateway.upstreams.http.streamable import StreamableHttpUpstream
from gateway.upstreams.port import OnClose, OnMessage

__all__ = ["UpstreamSettings", "open_http_upstream"]


def open_http_upstream(endpoint: HttpEndpoint, settings: UpstreamSettings | None, on_message: OnMessage,
                       on_close: OnClose, max_message: int | None = None) -> HttpSession:
    """One MCP client session to an HTTP server.

    For `sse` this connects at once (StartFailed, reason UpstreamUnreachable, if the stream or its
    endpoint event does not come); for `streamable-http` the first POST is the bridge's `initialize`,
    and an unreachable server ends the session (`on_close`).
    """
    settings = settings or UpstreamSettings()
    if endpoint.transport == "sse":
        return SseUpstream(endpoint.url, settings, on_message, on_close, max_message)
    if endpoint.transport == "streamable-http":
        return StreamableHttpUpstream(endpoint.url, settings, on_message, on_close, max_message)
    raise ValueError(f"unknown HTTP transport {endpoint.transport!r} (expected 'sse' or 'streamable-http')")
