"""HTTP upstreams against the real @modelcontextprotocol/server-everything, in its `sse` and
`streamableHttp` modes, driven by hand with raw JSON-RPC the way the session bridge drives them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.runtime import HttpEndpoint, StartFailed
from gateway.upstreams.http import UpstreamSettings
from gateway.upstreams.http.streamable import StreamableHttpUpstream
from tests.gateway_http.driver import ENDED, GUARD, Driver, socket_fds
from tests.gateway_http.servers import everything
from tests.support import free_port


@pytest.fixture
def driver(everything_endpoint: HttpEndpoint) -> Iterator[Driver]:
    driver = Driver(everything_endpoint)
    yield driver
    driver.conn.close()


def text_of(result: dict) -> str:
    return " ".join(part["text"] for part in result["content"] if part["type"] == "text")


def test_initialize_then_tools_resources_and_prompts(driver: Driver) -> None:
    init = driver.handshake()
    assert init["serverInfo"]["name"]
    assert "tools" in init["capabilities"]

    tools = {tool["name"] for tool in driver.call("tools/list")["tools"]}
    assert {"echo", "trigger-long-running-operation", "toggle-simulated-logging"} <= tools
    assert text_of(driver.call("tools/call", {"name": "echo", "arguments": {"message": "hello upstream"}})) \
        == "Echo: hello upstream"

    uri = "demo://resource/dynamic/text/7"
    contents = driver.call("resources/read", {"uri": uri})["contents"]
    assert contents[0]["uri"] == uri
    assert contents[0]["text"].startswith("Resource 7:")

    prompt = driver.call("prompts/get", {"name": "args-prompt", "arguments": {"city": "Lyon"}})
    assert prompt["messages"][0]["content"]["text"] == "What's weather in Lyon?"


def test_streamable_session_carries_id_and_negotiated_version() -> None:
    with everything("streamable-http") as (endpoint, _):
        driver = Driver(endpoint)
        conn = driver.conn
        try:
            assert isinstance(conn, StreamableHttpUpstream)
            init = driver.handshake()
            # Later requests only work if the upstream sends the issued Mcp-Session-Id back (the
            # server answers 400 otherwise): the tests above prove that; here the values themselves.
            assert conn.session_id
            assert conn.protocol_version == init["protocolVersion"] == "2025-11-25"
        finally:
            conn.close()


def test_progress_notifications_arrive_before_the_result(driver: Driver) -> None:
    driver.handshake()
    request_id = driver.request("tools/call", {
        "name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 3},
        "_meta": {"progressToken": "tok-1"}})
    response, before = driver.until_response(request_id)
    progress = [m["params"] for m in before if m.get("method") == "notifications/progress"]
    assert [(p["progressToken"], p["progress"], p["total"]) for p in progress] == [
        ("tok-1", 1, 3), ("tok-1", 2, 3), ("tok-1", 3, 3)]
    assert "Long running operation completed" in text_of(response["result"])


def test_sampling_request_from_the_server_is_answered_through_send(driver: Driver) -> None:
    driver.handshake(capabilities={"sampling": {}})
    call_id = driver.request("tools/call", {"name": "trigger-sampling-request",
                                            "arguments": {"prompt": "say hi", "maxTokens": 10}})
    sampling = driver.next_request()
    assert sampling["method"] == "sampling/createMessage"
    assert "say hi" in sampling["params"]["messages"][0]["content"]["text"]
    driver.send({"jsonrpc": "2.0", "id": sampling["id"], "result": {
        "role": "assistant", "model": "test-model", "content": {"type": "text", "text": "sampled words"}}})
    response, _ = driver.until_response(call_id)
    assert "sampled words" in text_of(response["result"])


def test_messages_tied_to_no_request_arrive(driver: Driver) -> None:
    # Simulated logging is sent outside any request: on the SSE stream, or Streamable HTTP's GET stream.
    driver.handshake()
    _, seen = driver.until_response(driver.request("tools/call", {"name": "toggle-simulated-logging",
                                                                  "arguments": {}}))
    while not any(m.get("method") == "notifications/message" for m in seen):
        message = driver.next()
        assert message is not ENDED
        seen.append(message)


def test_close_releases_every_socket_and_ends_the_session(everything_endpoint: HttpEndpoint) -> None:
    before = socket_fds()
    driver = Driver(everything_endpoint)
    conn = driver.conn
    driver.handshake()
    assert text_of(driver.call("tools/call", {"name": "echo", "arguments": {"message": "x"}})) == "Echo: x"
    assert socket_fds() - before, "a live session holds sockets"
    conn.close()
    assert driver.next() is ENDED
    assert socket_fds() - before == set()
    with pytest.raises(BrokenPipeError):
        conn.send({"jsonrpc": "2.0", "id": 99, "method": "ping"})


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_server_killed_mid_stream_ends_the_session(transport: str) -> None:
    with everything(transport) as (endpoint, proc):
        driver = Driver(endpoint)
        conn = driver.conn
        try:
            driver.handshake()
            driver.request("tools/call", {"name": "trigger-long-running-operation",
                                          "arguments": {"duration": 60, "steps": 60},
                                          "_meta": {"progressToken": "t"}})
            while driver.next().get("method") != "notifications/progress":
                pass
            proc.kill()
            seen = driver.wait_ended()  # fails after the guard timeout if the session never ends
            assert not any("result" in m for m in seen)
        finally:
            conn.close()


def test_unreachable_sse_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/sse"
    with pytest.raises(StartFailed, match="cannot open the event stream") as failed:
        Driver(HttpEndpoint(url, "sse"))
    assert failed.value.reason == "UpstreamUnreachable"


def test_unreachable_streamable_server_ends_the_session() -> None:
    driver = Driver(HttpEndpoint(f"http://127.0.0.1:{free_port()}/mcp", "streamable-http"))
    conn = driver.conn
    driver.request("initialize", {})
    assert driver.next(GUARD) is ENDED
    conn.close()


def test_unknown_transport_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown HTTP transport 'stdio'"):
        Driver(HttpEndpoint("http://127.0.0.1:1/", "stdio"))


@pytest.fixture(scope="module")
def streamable_endpoint() -> Iterator[HttpEndpoint]:
    with everything("streamable-http") as (endpoint, _):
        yield endpoint


def test_an_http_error_answers_the_request_with_a_jsonrpc_error(streamable_endpoint: HttpEndpoint) -> None:
    # A request before initialize: the server refuses it with HTTP 400 and a body whose id is null.
    driver = Driver(streamable_endpoint)
    conn = driver.conn
    try:
        response, before = driver.until_response(driver.request("tools/list"))
        assert before == []
        assert "HTTP 400" in response["error"]["message"]
        assert "not initialized" in response["error"]["message"]
        assert response["error"]["data"] == {"httpStatus": 400}
    finally:
        conn.close()


def test_a_request_without_answer_in_time_fails_alone(streamable_endpoint: HttpEndpoint) -> None:
    driver = Driver(streamable_endpoint, UpstreamSettings(request_timeout=4))
    conn = driver.conn
    try:
        driver.handshake()
        response, _ = driver.until_response(driver.request("tools/call", {
            "name": "trigger-long-running-operation", "arguments": {"duration": 60, "steps": 1}}))
        assert "no answer within 4s" in response["error"]["message"]
        # The session goes on.
        assert text_of(driver.call("tools/call", {"name": "echo", "arguments": {"message": "still here"}})) \
            == "Echo: still here"
    finally:
        conn.close()
