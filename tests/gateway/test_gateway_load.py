"""Many sessions on one stdio server, a server killed mid-call, connect/disconnect cycles that
must leave nothing behind, 16 MB results and a server that prints garbage on stdout."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent

from tests.gateway.clients import HTTP, MODERN, SSE, Target, connect
from tests.gateway.conftest import Gateway, run_gateway, standard_servers, write_manifests

SIXTEEN_MB = 16 * 1024 * 1024


def text_of(result: Any) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def test_twenty_sessions_each_get_exactly_their_own_answers_and_progress(gateway: Gateway) -> None:
    sessions, calls = 20, 4
    seen: dict[str, dict[str, Any]] = {}

    async def one_session(index: int) -> None:
        target = (SSE, HTTP)[index % 2]
        async with connect(target, gateway, "test") as client:
            async def one_call(call: int) -> None:
                label = f"s{index}-c{call}"
                progress: list[str | None] = []

                async def on_progress(_value: float, _total: float | None, message: str | None) -> None:
                    progress.append(message)

                answer = await client.call_tool("count", {"label": label, "steps": 3}, progress_callback=on_progress)
                echo = await client.call_tool("echo", {"text": f"echo {label}"})
                seen[label] = {"answer": text_of(answer), "progress": progress, "echo": text_of(echo)}

            async with anyio.create_task_group() as group:
                for call in range(calls):
                    group.start_soon(one_call, call)

    async def main() -> None:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for index in range(sessions):
                    group.start_soon(one_session, index)

    anyio.run(main)
    assert len(seen) == sessions * calls
    for label, got in seen.items():
        assert got == {"answer": label, "progress": [f"{label} 1", f"{label} 2", f"{label} 3"],
                       "echo": f"echo {label}"}


def server_pid(gateway: Gateway, name: str) -> int | None:
    return requests.get(gateway.api(name), timeout=10).json().get("details", {}).get("pid")


@pytest.mark.parametrize("target", [SSE, HTTP, MODERN], ids=["sse", "http", "modern"])
def test_a_killed_server_fails_the_call_at_once_and_the_next_call_restarts_it(gateway: Gateway, target: Target,
                                                                            tmp_path: Path) -> None:
    marker = tmp_path / "running"

    async def main() -> tuple[str, float, str]:
        async with connect(target, gateway, "crashy") as client:
            first_pid = text_of(await client.call_tool("pid", {}))

            async def kill_once_running() -> None:
                with anyio.fail_after(30):
                    while not (marker.exists() and marker.read_text() == "started"):
                        await anyio.sleep(0.05)
                os.kill(int(first_pid), signal.SIGKILL)

            started = time.monotonic()
            async with anyio.create_task_group() as group:
                group.start_soon(kill_once_running)
                with anyio.fail_after(20), pytest.raises(MCPError, match="exited"):
                    await client.call_tool("wait", {"seconds": 60, "marker": str(marker)})
            failed_after = time.monotonic() - started
            second_pid = text_of(await client.call_tool("pid", {}))
            return first_pid, failed_after, second_pid

    first_pid, failed_after, second_pid = anyio.run(main)
    assert failed_after < 20  # the guard above; the call did not wait for its 60 s
    assert second_pid != first_pid
    assert server_pid(gateway, "crashy") == int(second_pid)


def fds(pid: int) -> set[str]:
    return {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")
            if os.path.exists(f"/proc/{pid}/fd/{fd}")}


def descendants(pid: int) -> set[int]:
    """Every process below `pid` but the process-group watchdog (nmcp/embedded/reaper.py), which lives
    as long as the worker by design."""
    return {child for child in _all_descendants(pid)
            if b"nmcp/embedded/reaper.py" not in _read(Path(f"/proc/{child}/cmdline"))}


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _all_descendants(pid: int) -> set[int]:
    out: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in os.listdir(f"/proc/{current}/task"):
            try:
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
            except FileNotFoundError:
                continue
            for child in map(int, children):
                if child not in out:
                    out.add(child)
                    todo.append(child)
    return out


def settle(check: Any, timeout: float = 30.0) -> Any:
    """Poll `check()` until it returns a truthy value (a failure guard, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_connect_disconnect_cycles_leave_no_processes_or_fds(tmp_path: Path) -> None:
    # A gateway of its own, so that only what these cycles start can run.
    with run_gateway(write_manifests(tmp_path, standard_servers())) as gateway:
        worker = gateway.worker_pid()

        async def cycle(index: int) -> None:
            target = (SSE, HTTP, MODERN)[index % 3]
            name = "isolated" if index % 50 == 0 else "test"  # every 50th gets (and must lose) an instance
            async with connect(target, gateway, name) as client:
                await client.list_tools()

        async def cycles(count: int) -> None:
            for index in range(count):
                await cycle(index)

        async def shared_pid() -> int:
            async with connect(HTTP, gateway, "test") as client:
                return int(text_of(await client.call_tool("pid", {})))

        # The children that may stay: the shared upstream, and one warm spare of the isolated server
        # (its sessions come one at a time). An isolated session's own instance stops when the
        # session ends, and the spare it took is replaced by one new spare, never more.
        anyio.run(cycles, 3)
        baseline = settle(lambda: descendants(worker) if len(descendants(worker)) == 2 else None)
        assert baseline, f"expected the test server and one spare, found {descendants(worker)}"
        shared = anyio.run(shared_pid)
        baseline_fds = len(fds(worker))

        anyio.run(cycles, 200)
        children = settle(lambda: descendants(worker) if len(descendants(worker)) == 2 else None)
        assert children, f"children now {descendants(worker)}, before {baseline}"
        assert shared in children and anyio.run(shared_pid) == shared  # the shared upstream stayed
        assert settle(lambda: len(fds(worker)) <= baseline_fds), \
            f"worker fds: {len(fds(worker))} now, {baseline_fds} before"
        states = [Path(f"/proc/{child}/status").read_text() for child in children]
        assert not [s for s in states if "zombie" in s.lower()]


@pytest.mark.parametrize("target", [HTTP, MODERN], ids=["http", "modern"])
def test_a_sixteen_megabyte_result_arrives_intact(gateway: Gateway, target: Target) -> None:
    async def main() -> str:
        async with connect(target, gateway, "test") as client:
            with anyio.fail_after(120):
                return text_of(await client.call_tool("blob", {"size": SIXTEEN_MB}))

    text = anyio.run(main)
    pattern = "0123456789abcdefghijklmnopqrstuvwxyz"
    assert len(text) == SIXTEEN_MB
    assert text == (pattern * (SIXTEEN_MB // len(pattern) + 1))[:SIXTEEN_MB]


def test_a_sixteen_megabyte_result_arrives_intact_over_sse(gateway: Gateway) -> None:
    # The 2.x SDK's SSE client caps events at 1 MB, so read the legacy stream by hand.
    with requests.get(gateway.sse("test"), stream=True, timeout=120) as stream:
        lines = stream.iter_lines(chunk_size=65536)
        assert next(lines) == b"event: endpoint"
        endpoint = next(lines).removeprefix(b"data: ").decode()
        post = f"{gateway.url}{endpoint}"

        def send(message: dict[str, Any]) -> None:
            assert requests.post(post, json=message, timeout=30).status_code == 202

        def answer() -> dict[str, Any]:
            for line in lines:
                if line.startswith(b"data: "):
                    import json
                    return json.loads(line[6:])
            raise AssertionError("the stream ended")

        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
        assert answer()["id"] == 1
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "blob",
                                                                          "arguments": {"size": SIXTEEN_MB}}})
        got = answer()
    assert got["id"] == 2
    assert len(got["result"]["content"][0]["text"]) == SIXTEEN_MB


def test_garbage_on_stdout_does_not_break_the_session(gateway: Gateway) -> None:
    # The test server prints a banner and a debug line per echo to stdout: none of it is JSON-RPC.
    async def main() -> list[str]:
        async with connect(HTTP, gateway, "test") as client:
            return [text_of(await client.call_tool("echo", {"text": f"line {n}"})) for n in range(5)]

    assert anyio.run(main) == [f"line {n}" for n in range(5)]


@pytest.mark.parametrize("target", [SSE, HTTP, MODERN], ids=["sse", "http", "modern"])
def test_a_call_the_client_abandons_is_cancelled_on_the_server(gateway: Gateway, target: Target,
                                                              tmp_path: Path) -> None:
    # 2025 clients send notifications/cancelled; a 2026 client just closes the response stream.
    marker = tmp_path / "cancelled"

    async def main() -> None:
        async with connect(target, gateway, "test") as client:
            async with anyio.create_task_group() as group:
                group.start_soon(client.call_tool, "wait", {"seconds": 60, "marker": str(marker)})
                with anyio.fail_after(30):
                    while not (marker.exists() and marker.read_text() == "started"):
                        await anyio.sleep(0.05)
                group.cancel_scope.cancel()  # the client gives up on the call the server is running
            # The session (if any) goes on.
            assert text_of(await client.call_tool("echo", {"text": "next"})) == "next"

    anyio.run(main)
    assert settle(marker.exists), "the server never saw the cancellation"
    assert marker.read_text() == "cancelled"
