"""An MCP client of the other protocol era: the 1.x SDK (stateful 2025 revisions).

Run with the 1.x venv's python: `client_v1.py URL sse|http`. Talks to server-everything through
the gateway and prints what it saw as one JSON object on stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from mcp import ClientSession, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client


def text_of(result: Any) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def sampling(_context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", model="t",
                                     content=types.TextContent(type="text", text="forty-two"))


async def run(url: str, transport: str) -> dict[str, Any]:
    progress: list[float] = []

    async def on_progress(value: float, _total: float | None, _message: str | None) -> None:
        progress.append(value)

    streams = sse_client(url) if transport == "sse" else streamablehttp_client(url)
    async with streams as (read, write, *_), ClientSession(read, write, sampling_callback=sampling) as session:
        init = await session.initialize()
        tools = sorted(t.name for t in (await session.list_tools()).tools)
        echo = text_of(await session.call_tool("echo", {"message": "from 1.x"}))
        resources = (await session.list_resources()).resources
        document = next(r for r in resources if r.name == "architecture.md")
        content = (await session.read_resource(document.uri)).contents[0]
        prompt = await session.get_prompt("args-prompt", {"city": "Lyon", "state": "Rhone"})
        long_run = text_of(await session.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 3},
                                                   progress_callback=on_progress))
        sampled = text_of(await session.call_tool("trigger-sampling-request", {"prompt": "meaning?", "maxTokens": 9}))
    return {"protocolVersion": init.protocolVersion, "server": init.serverInfo.name, "tools": tools, "echo": echo,
            "resource": getattr(content, "text", ""), "prompt": prompt.messages[0].content.text,
            "longRun": long_run, "progress": progress, "sampled": sampled}


if __name__ == "__main__":
    print(json.dumps(anyio.run(run, sys.argv[1], sys.argv[2])))
