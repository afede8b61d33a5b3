"""Sessions of the 1.x SDK calling the test server's `crosstalk` tool through the gateway.

Run with the 1.x venv's python: `crosstalk_v1.py URL sse|http MARKER... [--declare]`: one session
per marker, all at once, each calling `crosstalk` ROUNDS times in a row. With `--declare` the
sessions declare sampling, elicitation and roots. Prints one JSON object per session on stdout:
its marker, the markers its callbacks and log messages saw, and its calls' results.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from mcp import ClientSession, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client

ROUNDS = 3


async def session(url: str, transport: str, marker: str, declare: bool) -> dict[str, Any]:
    seen: list[str] = []

    async def sampling(_context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        seen.append(params.messages[0].content.text.split()[0])
        return types.CreateMessageResult(role="assistant", model="t",
                                         content=types.TextContent(type="text", text=marker))

    async def elicitation(_context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        seen.append(params.message.split()[0])
        return types.ElicitResult(action="accept", content={"text": marker})

    async def roots(_context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///{marker}")])

    async def logged(params: types.LoggingMessageNotificationParams) -> None:
        seen.append(str(params.data).split()[0])

    callbacks: dict[str, Any] = {"logging_callback": logged}
    if declare:
        callbacks |= {"sampling_callback": sampling, "elicitation_callback": elicitation, "list_roots_callback": roots}
    streams = sse_client(url) if transport == "sse" else streamablehttp_client(url)
    results = []
    async with streams as (read, write, *_), ClientSession(read, write, **callbacks) as client:
        await client.initialize()
        for _ in range(ROUNDS):
            try:
                result = await client.call_tool("crosstalk", {"marker": marker})
                text = "".join(c.text for c in result.content if isinstance(c, types.TextContent))
                results.append({"error": result.isError, "text": text})
            except Exception as err:  # a refused call is a data point
                results.append({"error": True, "text": str(err)})
    return {"marker": marker, "seen": seen, "results": results}


async def main(url: str, transport: str, markers: list[str], declare: bool) -> None:
    out: list[dict[str, Any]] = []

    async def one(marker: str) -> None:
        out.append(await session(url, transport, marker, declare))

    async with anyio.create_task_group() as group:
        for marker in markers:
            group.start_soon(one, marker)
    for line in out:
        print(json.dumps(line))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--declare"]
    anyio.run(main, args[0], args[1], args[2:], "--declare" in sys.argv)
