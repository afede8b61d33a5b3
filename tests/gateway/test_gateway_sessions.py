"""Sessions never get what belongs to another session on a shared server (issue 12).

A real gateway under gunicorn, the test stdio server shared by every session, official SDK
clients of both eras (2.x in-process, 1.x from its own venv) over Streamable HTTP and SSE.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import types
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.gateway.conftest import HERE, PYTHON, Gateway, pool, run_gateway, server, write_manifests
from tests.support import ROOT

V1_PYTHON = ROOT / ".venv-mcp1" / "bin" / "python"
ROUNDS = 3  # crosstalk calls per session, one after the other; the sessions run at once
LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    test_server = [PYTHON, str(HERE / "stdio_server.py")]
    manifests = write_manifests(tmp_path_factory.mktemp("sessions"), [
        pool(maxActive=10, maxIdle=10), server("talk", test_server), server("levels", test_server)])
    with run_gateway(manifests) as gateway:
        yield gateway


async def v2_session(url: str, transport: str, marker: str, declare: bool, rounds: int) -> dict[str, Any]:
    """One 2.x session calling crosstalk `rounds` times; what its callbacks and log saw."""
    seen: list[str] = []

    async def sampling(_context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        content = params.messages[0].content
        seen.append(content.text.split()[0] if isinstance(content, types.TextContent) else "?")
        return types.CreateMessageResult(role="assistant", model="t",
                                         content=types.TextContent(type="text", text=marker))

    async def elicitation(_context: Any, params: Any) -> types.ElicitResult:
        seen.append(params.message.split()[0])
        return types.ElicitResult(action="accept", content={"text": marker})

    async def roots(_context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///{marker}")])  # type: ignore[arg-type]

    async def logged(params: types.LoggingMessageNotificationParams) -> None:
        seen.append(str(params.data).split()[0])

    callbacks: dict[str, Any] = {"logging_callback": logged}
    if declare:
        callbacks |= {"sampling_callback": sampling, "elicitation_callback": elicitation, "list_roots_callback": roots}
    streams = sse_client(url) if transport == "sse" else streamable_http_client(url)
    results = []
    async with Client(streams, mode="legacy", **callbacks) as client:
        for _ in range(rounds):
            try:
                result = await client.call_tool("crosstalk", {"marker": marker})
                text = "".join(c.text for c in result.content if isinstance(c, types.TextContent))
                results.append({"error": result.is_error, "text": text})
            except Exception as err:  # a refused call is a data point
                results.append({"error": True, "text": str(err)})
    return {"marker": marker, "seen": seen, "results": results, "declared": declare}


async def v1_sessions(url: str, transport: str, markers: list[str], declare: bool) -> list[dict[str, Any]]:
    argv = [str(V1_PYTHON), str(HERE / "crosstalk_v1.py"), url, transport, *markers, *(["--declare"] * declare)]
    done = await anyio.run_process(argv, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return [{**json.loads(line), "declared": declare} for line in done.stdout.decode().splitlines()]


def answered_by(marker: str, result: dict[str, Any]) -> bool:
    """A crosstalk call that succeeded with what the caller's own client answered."""
    if result["error"]:
        return False
    answers = json.loads(result["text"])
    return answers == {"sampled": marker, "elicited": marker, "roots": [f"file:///{marker}"]}


def test_server_requests_and_logs_reach_only_the_session_whose_call_caused_them(gw: Gateway) -> None:
    http, sse = gw.mcp("talk"), gw.sse("talk")
    # The server shows, on one call alone, that it asks its clients for things: from then on the
    # gateway lets calls of different sessions take turns on it, so each request is attributable.
    first = anyio.run(v2_session, http, "http", "first", True, 1)
    assert answered_by("first", first["results"][0]), first

    async def everyone() -> list[dict[str, Any]]:
        sessions: list[dict[str, Any]] = []

        async def v2(transport: str, marker: str, declare: bool) -> None:
            sessions.append(await v2_session(http if transport == "http" else sse, transport, marker, declare, ROUNDS))

        async def v1(transport: str, markers: list[str], declare: bool) -> None:
            sessions.extend(await v1_sessions(http if transport == "http" else sse, transport, markers, declare))

        async with anyio.create_task_group() as group:
            for index in range(12):  # 2.x: 6 over Streamable HTTP, 6 over SSE; half declare the capabilities
                group.start_soon(v2, "http" if index % 2 else "sse", f"v2-{index}", index % 4 < 2)
            for transport in ("http", "sse"):  # 1.x: 4 over each, half declaring
                group.start_soon(v1, transport, [f"v1{transport}-d{i}" for i in range(2)], True)
                group.start_soon(v1, transport, [f"v1{transport}-n{i}" for i in range(2)], False)
        return sessions

    sessions = anyio.run(everyone)
    assert len(sessions) == 20
    misrouted = sum(1 for s in sessions for seen in s["seen"] if seen != s["marker"])
    failed = sum(1 for s in sessions if s["declared"] for r in s["results"] if not answered_by(s["marker"], r))
    print(f"\n20 sessions x {ROUNDS} calls: {misrouted} misrouted messages, {failed} failed calls of sessions "
          "that declared sampling, elicitation and roots", file=sys.stderr)
    assert misrouted == 0, [(s["marker"], s["seen"]) for s in sessions]
    assert failed == 0, [(s["marker"], s["results"]) for s in sessions if s["declared"]]
    for session in sessions:
        assert session["seen"], f"{session['marker']} got none of its own log messages"
        if not session["declared"]:  # asked for what it cannot give: refused, not shown to anyone else
            assert all(r["error"] for r in session["results"]), session


# logging/setLevel is what handshake-era clients use (2026-07-28 deprecates it); that is what is tested.
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
def test_each_session_gets_the_log_levels_it_asked_for(gw: Gateway) -> None:
    async def main() -> tuple[list[str], list[str], str, str]:
        heard: dict[str, list[str]] = {"verbose": [], "quiet": []}

        def listener(name: str) -> Any:
            async def logged(params: types.LoggingMessageNotificationParams) -> None:
                heard[name].append(str(params.data))
            return logged

        async with Client(streamable_http_client(gw.mcp("levels")), mode="legacy",
                          logging_callback=listener("verbose")) as verbose, \
                Client(sse_client(gw.sse("levels")), mode="legacy", logging_callback=listener("quiet")) as quiet:
            await verbose.set_logging_level("debug")
            await quiet.set_logging_level("error")  # after the verbose one: it must not quiet the other
            loud = await verbose.call_tool("shout", {"marker": "verbose"})
            soft = await quiet.call_tool("shout", {"marker": "quiet"})
        text = [c.text for r in (loud, soft) for c in r.content if isinstance(c, types.TextContent)]
        return heard["verbose"], heard["quiet"], *text

    verbose, quiet, loud, soft = anyio.run(main)
    assert loud == soft == " ".join(LEVELS)  # the server runs at the most verbose level asked for
    assert verbose == [f"verbose {level}" for level in LEVELS]
    assert quiet == [f"quiet {level}" for level in LEVELS[LEVELS.index("error"):]]

