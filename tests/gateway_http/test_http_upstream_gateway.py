"""Through the real gateway (gunicorn, gevent worker, local runtime): server-everything in its own
`sse` and `streamableHttp` modes as HTTP upstreams, reached by the official SDK client over both
client transports, and killed mid-call."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests
import yaml
from mcp.shared.exceptions import MCPError
from mcp_types import CreateMessageResult, TextContent

from tests.gateway.clients import HTTP, SSE, Target, connect
from tests.gateway.conftest import Gateway, run_gateway
from tests.support import NODE_BIN, free_port

UPSTREAMS = {"ev-sse": ("sse", "sse", "/sse"), "ev-http": ("streamableHttp", "streamable-http", "/mcp")}


def manifest(name: str) -> dict[str, Any]:
    mode, transport, path = UPSTREAMS[name]
    port = free_port()
    return {"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPServer", "metadata": {"name": name},
            "spec": {"command": [str(NODE_BIN / "mcp-server-everything")], "args": [mode],
                     "env": [{"name": "PORT", "value": str(port)}],
                     "transport": {"type": transport, "port": port, "path": path}}}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    manifests = Path(tmp_path_factory.mktemp("http-upstreams")) / "servers.yaml"
    manifests.write_text(yaml.safe_dump_all([manifest(name) for name in UPSTREAMS]))
    with run_gateway(manifests) as running:
        yield running


def text_of(result: Any) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


@pytest.mark.parametrize("target", [SSE, HTTP], ids=["client-sse", "client-http"])
@pytest.mark.parametrize("name", sorted(UPSTREAMS))
def test_tools_progress_and_sampling_through_an_http_upstream(gateway: Gateway, name: str, target: Target) -> None:
    async def sampling(_context: Any, params: Any) -> CreateMessageResult:
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="forty-two"), model="t")

    async def main() -> tuple[str, list[float], str, str]:
        progress: list[float] = []

        async def on_progress(value: float, _total: float | None, _message: str | None) -> None:
            progress.append(value)

        async with connect(target, gateway, name, sampling_callback=sampling) as client:
            echo = text_of(await client.call_tool("echo", {"message": "through"}))
            done = text_of(await client.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 2},
                                                  progress_callback=on_progress))
            sampled = text_of(await client.call_tool("trigger-sampling-request", {"prompt": "q", "maxTokens": 5}))
            return echo, progress, done, sampled

    echo, progress, done, sampled = anyio.run(main)
    assert echo == "Echo: through"
    assert progress == [1, 2]
    assert done.startswith("Long running operation completed")
    assert "forty-two" in sampled


def server_pid(gateway: Gateway, name: str) -> int | None:
    return requests.get(gateway.api(name), timeout=10).json().get("details", {}).get("pid")


@pytest.mark.parametrize("name", sorted(UPSTREAMS))
def test_a_killed_http_server_fails_the_call_and_the_next_call_restarts_it(gateway: Gateway, name: str) -> None:
    async def main() -> str:
        async with connect(HTTP, gateway, name) as client:
            assert text_of(await client.call_tool("echo", {"message": "one"})) == "Echo: one"
            pid = server_pid(gateway, name)
            assert pid

            async def kill_soon() -> None:
                await anyio.sleep(0.5)
                os.kill(pid, signal.SIGKILL)

            async with anyio.create_task_group() as group:
                group.start_soon(kill_soon)
                with anyio.fail_after(30), pytest.raises(MCPError):
                    await client.call_tool("trigger-long-running-operation", {"duration": 60, "steps": 60})
            return text_of(await client.call_tool("echo", {"message": "two"}))

    assert anyio.run(main) == "Echo: two"
