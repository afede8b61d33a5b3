"""A stdio MCP server built with the official Python SDK, misbehaving on purpose where it helps.

It prints garbage lines to stdout (at start-up and before each echo), as badly written servers
do, and offers what the gateway tests need beyond server-everything: a result of any size, a
call that waits, progress that names its caller, and a sampling round trip.
`python stdio_server.py` (no arguments).
"""

from __future__ import annotations

import os

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import SamplingMessage, TextContent

server = MCPServer("nmcp-stdio-test")


def garbage(text: str) -> None:
    os.write(1, text.encode() + b"\n")  # straight to stdout, between the SDK's own messages


@server.tool()
def echo(text: str) -> str:
    """Return `text` unchanged (after printing a non-JSON line to stdout)."""
    garbage(f"DEBUG: echo called with {len(text)} characters")
    return text


@server.tool()
def blob(size: int) -> str:
    """A string of `size` characters: a repeating, checkable pattern."""
    pattern = "0123456789abcdefghijklmnopqrstuvwxyz"
    return (pattern * (size // len(pattern) + 1))[:size]


@server.tool()
async def wait(seconds: float, marker: str = "") -> str:
    """Answer after `seconds`. With `marker`, write "started" to that file, and "cancelled" if cancelled."""
    if marker:
        with open(marker, "w") as file:
            file.write("started")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        if marker:
            with open(marker, "w") as file:
                file.write("cancelled")
        raise
    return f"waited {seconds}"


@server.tool()
async def count(label: str, steps: int, ctx: Context) -> str:
    """Report `steps` progress notifications whose message is `label`, then answer with it."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"{label} {step}")
        await anyio.sleep(0.01)
    return label


@server.tool()
async def pid() -> str:
    """The server's process id: tells whether two sessions share a process."""
    return str(os.getpid())


@server.tool()
async def ask(question: str, ctx: Context) -> str:
    """Ask the client's model (sampling) and return its answer."""
    answer = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=question))], max_tokens=50)
    return answer.content.text if isinstance(answer.content, TextContent) else str(answer.content)


if __name__ == "__main__":
    garbage("starting nmcp-stdio-test (this banner is not JSON-RPC)")
    server.run("stdio")
