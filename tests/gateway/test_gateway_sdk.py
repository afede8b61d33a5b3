"""MCP behaviour through the gateway with the official 2.x SDK client, as parity tests: each test
runs unchanged against the server over stdio (no gateway) and through each gateway transport."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CreateMessageResult, ElicitResult, TextContent

from tests.gateway.clients import ALL_TARGETS, HTTP, MODERN, SSE, Target, connect
from tests.gateway.conftest import Gateway

ids = [t.via for t in ALL_TARGETS]


def text_of(result: Any) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def exercise_everything(client: Any) -> dict[str, Any]:
    """Tools, resources and prompts of server-everything, as a client sees them."""
    tools = {t.name for t in (await client.list_tools()).tools}
    echo = text_of(await client.call_tool("echo", {"message": "hello gateway"}))
    total = text_of(await client.call_tool("get-sum", {"a": 2, "b": 40}))
    resources = (await client.list_resources()).resources
    first = next(r for r in resources if r.name == "architecture.md")
    contents = (await client.read_resource(first.uri)).contents
    prompts = {p.name for p in (await client.list_prompts()).prompts}
    prompt = await client.get_prompt("args-prompt", {"city": "Lyon", "state": "Rhone"})
    return {"tools": tools, "echo": echo, "sum": total, "resource": contents[0].text,
            "prompts": prompts, "prompt": prompt.messages[0].content.text}


def assert_everything(seen: dict[str, Any]) -> None:
    assert {"echo", "get-sum", "trigger-long-running-operation"} <= seen["tools"]
    assert seen["echo"] == "Echo: hello gateway"
    assert "42" in seen["sum"]
    assert seen["resource"].startswith("#")  # a markdown document
    assert {"simple-prompt", "args-prompt"} <= seen["prompts"]
    assert "Lyon" in seen["prompt"]


@pytest.mark.parametrize("target", ALL_TARGETS, ids=ids)
def test_tools_resources_and_prompts(gateway: Gateway, target: Target) -> None:
    async def main() -> dict[str, Any]:
        async with connect(target, gateway, "everything") as client:
            return await exercise_everything(client)

    assert_everything(anyio.run(main))


@pytest.mark.parametrize("target", ALL_TARGETS, ids=ids)
def test_progress_notifications_reach_the_caller(gateway: Gateway, target: Target) -> None:
    async def main() -> tuple[str, list[tuple[float, float | None, str | None]]]:
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, total, message))

        async with connect(target, gateway, "test") as client:
            result = await client.call_tool("count", {"label": "tick", "steps": 4}, progress_callback=on_progress)
            return text_of(result), progress

    answer, progress = anyio.run(main)
    assert answer == "tick"
    assert progress == [(1, 4, "tick 1"), (2, 4, "tick 2"), (3, 4, "tick 3"), (4, 4, "tick 4")]


@pytest.mark.parametrize("target", ALL_TARGETS, ids=ids)
def test_a_sampling_request_is_answered_by_the_client(gateway: Gateway, target: Target) -> None:
    questions: list[str] = []

    async def sampling(_context: Any, params: Any) -> CreateMessageResult:
        questions.append(params.messages[0].content.text)
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="forty-two"), model="t")

    async def main() -> str:
        async with connect(target, gateway, "everything", sampling_callback=sampling) as client:
            return text_of(await client.call_tool("trigger-sampling-request", {"prompt": "meaning?", "maxTokens": 9}))

    answer = anyio.run(main)
    assert questions == ["Resource trigger-sampling-request context: meaning?"]
    assert "forty-two" in answer


@pytest.mark.parametrize("target", ALL_TARGETS, ids=ids)
def test_an_elicitation_request_is_answered_by_the_client(gateway: Gateway, target: Target) -> None:
    asked: list[str] = []

    async def elicit(_context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="decline")

    async def main() -> str:
        async with connect(target, gateway, "everything", elicitation_callback=elicit) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "trigger-elicitation-request" in tools
            return text_of(await client.call_tool("trigger-elicitation-request", {}))

    answer = anyio.run(main)
    assert len(asked) == 1
    assert "decline" in answer.lower()


@pytest.mark.parametrize("target", [SSE, HTTP, MODERN], ids=["sse", "http", "modern"])
def test_a_client_without_sampling_gets_an_error_not_a_hang(gateway: Gateway, target: Target) -> None:
    # The upstream was initialized with the gateway's capabilities, so the server may ask; this
    # client did not declare sampling, so the gateway refuses the request on its behalf.
    async def main() -> None:
        async with connect(target, gateway, "test") as client:
            with anyio.fail_after(30), pytest.raises(MCPError, match="sampling"):
                await client.call_tool("ask", {"question": "anyone?"})
            # The session goes on.
            assert text_of(await client.call_tool("echo", {"text": "still here"})) == "still here"

    anyio.run(main)


@pytest.mark.filterwarnings("ignore:resources/subscribe:mcp.shared.exceptions.MCPDeprecationWarning")
def test_resource_updates_reach_subscribers_of_both_eras_only(gateway: Gateway) -> None:
    # A 2025 client subscribes with resources/subscribe, a 2026 client with subscriptions/listen;
    # a third session subscribes to nothing and must hear nothing.
    from mcp.client.subscriptions import ResourceUpdated

    async def main() -> tuple[list[str], ResourceUpdated, list[str]]:
        legacy_updates: list[str] = []
        bystander_updates: list[str] = []
        got_legacy = anyio.Event()

        def handler(into: list[str], event: anyio.Event | None) -> Any:
            async def on_message(message: Any) -> None:
                root = getattr(message, "root", message)
                if getattr(root, "method", "") == "notifications/resources/updated":
                    into.append(root.params.uri)
                    if event is not None:
                        event.set()
            return on_message

        async with connect(HTTP, gateway, "everything", message_handler=handler(legacy_updates, got_legacy)) \
                as legacy, connect(SSE, gateway, "everything", message_handler=handler(bystander_updates, None)) \
                as bystander, connect(MODERN, gateway, "everything") as modern:
            uris = [r.uri for r in (await legacy.list_resources()).resources]
            await legacy.session.subscribe_resource(uris[0])
            async with modern.listen(resource_subscriptions=[uris[1]]) as subscription:
                assert subscription.honored.resource_subscriptions == [uris[1]]
                await bystander.call_tool("toggle-subscriber-updates", {})
                try:
                    with anyio.fail_after(30):
                        event = await subscription.__anext__()
                        await got_legacy.wait()
                finally:
                    await bystander.call_tool("toggle-subscriber-updates", {})
            return [str(u) for u in legacy_updates], event, [str(u) for u in bystander_updates], uris

    legacy_updates, event, bystander_updates, uris = anyio.run(main)
    assert set(legacy_updates) == {str(uris[0])}
    assert isinstance(event, ResourceUpdated)
    assert str(event.uri) == str(uris[1])
    assert bystander_updates == []
