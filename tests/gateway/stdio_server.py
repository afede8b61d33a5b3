"""A stdio MCP server built with the official Python SDK, misbehaving on purpose where it helps.

It prints garbage lines to stdout (at start-up and before each echo), as badly written servers
do, and offers what the gateway tests need beyond server-everything: a result of any size, a
call that waits, progress that names its caller, a sampling round trip, a call that asks its
client for everything a server may ask (sampling, elicitation, roots) and logs its caller's
marker, and log messages at every level the client asked for (logging/setLevel).
`python stdio_server.py` (no arguments).
"""

from __future__ import annotations

import json
import os

import anyio
from mcp import types
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import SamplingMessage, TextContent
from pydantic import BaseModel

server = MCPServer("nmcp-stdio-test")
LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
log_level = ["debug"]  # the least severe level sent, as logging/setLevel last asked


async def set_level(_context: object, params: types.SetLevelRequestParams) -> types.EmptyResult:
    log_level[0] = params.level
    return types.EmptyResult()


server._lowlevel_server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)


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


class Answer(BaseModel):
    text: str


@server.tool()
async def crosstalk(marker: str, ctx: Context) -> str:
    """Log `marker`, ask the client to sample, elicit and list its roots (each naming `marker`),
    and answer with what came back: only the caller's own client can answer with its marker."""
    await ctx.info(f"{marker} started")
    sampled = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=f"{marker} sample"))], max_tokens=5)
    elicited = await ctx.elicit(f"{marker} elicit", Answer)
    roots = await ctx.session.list_roots()
    await ctx.info(f"{marker} done")
    return json.dumps({"sampled": sampled.content.text if isinstance(sampled.content, TextContent) else "",
                       "elicited": elicited.data.text if elicited.action == "accept" else elicited.action,
                       "roots": [str(root.uri) for root in roots.roots]})


@server.tool()
async def shout(marker: str, ctx: Context) -> str:
    """Log `marker` at every level from the one logging/setLevel asked for."""
    sent = LEVELS[LEVELS.index(log_level[0]):]
    for level in sent:
        await ctx.log(level, f"{marker} {level}")
    return " ".join(sent)


if __name__ == "__main__":
    garbage("starting nmcp-stdio-test (this banner is not JSON-RPC)")
    server.run("stdio")
