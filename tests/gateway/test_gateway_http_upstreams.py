"""Servers that speak HTTP themselves (server-everything in its `sse` and `streamableHttp` modes,
started by the local runtime) reached through every gateway transport, like the stdio one."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp_types import CreateMessageResult, TextContent

from tests.gateway.clients import GATEWAY_TARGETS, Target, connect
from tests.gateway.conftest import Gateway
from tests.gateway.test_gateway_sdk import assert_everything, exercise_everything, text_of

SERVERS = ["everything-sse", "everything-http"]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("target", GATEWAY_TARGETS, ids=[t.via for t in GATEWAY_TARGETS])
def test_tools_resources_and_prompts_of_an_http_server(gateway: Gateway, target: Target, server: str) -> None:
    async def main() -> dict[str, Any]:
        async with connect(target, gateway, server) as client:
            return await exercise_everything(client)

    assert_everything(anyio.run(main))


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("target", GATEWAY_TARGETS, ids=[t.via for t in GATEWAY_TARGETS])
def test_progress_from_an_http_server(gateway: Gateway, target: Target, server: str) -> None:
    async def main() -> tuple[str, list[float]]:
        progress: list[float] = []

        async def on_progress(value: float, _total: float | None, _message: str | None) -> None:
            progress.append(value)

        async with connect(target, gateway, server) as client:
            result = await client.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 3},
                                            progress_callback=on_progress)
            return text_of(result), progress

    answer, progress = anyio.run(main)
    assert "completed" in answer.lower()
    assert progress == [1, 2, 3]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("target", GATEWAY_TARGETS, ids=[t.via for t in GATEWAY_TARGETS])
def test_sampling_through_an_http_server(gateway: Gateway, target: Target, server: str) -> None:
    async def sampling(_context: Any, _params: Any) -> CreateMessageResult:
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="forty-two"), model="t")

    async def main() -> str:
        async with connect(target, gateway, server, sampling_callback=sampling) as client:
            return text_of(await client.call_tool("trigger-sampling-request", {"prompt": "meaning?", "maxTokens": 9}))

    assert "forty-two" in anyio.run(main)
