"""A real MCP server built with the official Python SDK, for what server-everything cannot show.

`python sdk_server.py PORT MODE`, MODE one of:
  sse              the 2024-11-05 transport (GET /sse, POST /messages/)
  streamable-http  Streamable HTTP with SSE answers, an event store (resumable streams) and polling
  json             Streamable HTTP answering requests with plain JSON bodies
Request bodies up to 64 MB (server-everything caps them at 4 MB), so a 16 MB message passes both ways.
"""

from __future__ import annotations

import itertools
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.types import JSONRPCMessage

BODY_LIMIT = 64 * 1024 * 1024


class MemoryEventStore(EventStore):
    """Every event of every stream, in order, so a client can resume after any of them."""

    def __init__(self) -> None:
        self.events: list[tuple[EventId, StreamId, JSONRPCMessage | None]] = []
        self.ids = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = f"{stream_id}:{next(self.ids)}"
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        positions = [i for i, (event_id, _, _) in enumerate(self.events) if event_id == last_event_id]
        if not positions:
            return None
        stream = self.events[positions[0]][1]
        for event_id, stream_id, message in self.events[positions[0] + 1:]:
            if stream_id == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


server = MCPServer("nmcp-http-test")


@server.tool()
def echo(text: str) -> str:
    """Return `text` unchanged."""
    return text


@server.tool()
async def answer_later(ctx: Context) -> str:
    """Close this request's SSE stream (the client has to resume it), then answer."""
    await ctx.close_sse_stream()
    await anyio.sleep(0.5)
    return "answered after the stream was closed"


def main() -> None:
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "sse":
        server.run("sse", host="127.0.0.1", port=port, max_request_body_size=BODY_LIMIT)
    else:
        server.run("streamable-http", host="127.0.0.1", port=port, json_response=mode == "json",
                   event_store=MemoryEventStore() if mode == "streamable-http" else None,
                   retry_interval=100 if mode == "streamable-http" else None, max_request_body_size=BODY_LIMIT)


if __name__ == "__main__":
    main()
