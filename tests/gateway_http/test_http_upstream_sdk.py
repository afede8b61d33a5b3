"""HTTP upstreams against a real server built with the official Python SDK (sdk_server.py): what
server-everything cannot show: 16 MB messages, JSON answers, resumed answer streams, 404 sessions."""

from __future__ import annotations

import pytest
import requests

from gateway.protocol.versions import SESSION_HEADER, VERSION_HEADER
from gateway.upstreams.http.streamable import StreamableHttpUpstream
from tests.gateway_http.driver import ENDED, Driver
from tests.gateway_http.servers import sdk_server

SIXTEEN_MB = 16 * 1024 * 1024


@pytest.mark.parametrize("mode", ["sse", "streamable-http", "json"])
def test_sixteen_megabyte_messages_pass_both_ways(mode: str) -> None:
    with sdk_server(mode) as endpoint:
        driver = Driver(endpoint)
        conn = driver.conn
        try:
            driver.handshake()
            text = "0123456789abcdef" * (SIXTEEN_MB // 16)
            result = driver.call("tools/call", {"name": "echo", "arguments": {"text": text}})
            assert result["content"][0]["text"] == text
            # The session goes on after it.
            assert driver.call("tools/call", {"name": "echo", "arguments": {"text": "small"}})["content"][0]["text"] \
                == "small"
        finally:
            conn.close()


def test_an_answer_stream_the_server_closes_is_resumed() -> None:
    # answer_later closes its SSE stream after the priming event (2025-11-25 polling) and answers
    # afterwards: only a client that resumes with Last-Event-ID gets the result.
    with sdk_server("streamable-http") as endpoint:
        driver = Driver(endpoint)
        conn = driver.conn
        try:
            driver.handshake()
            result = driver.call("tools/call", {"name": "answer_later", "arguments": {}})
            assert result["content"][0]["text"] == "answered after the stream was closed"
        finally:
            conn.close()


def test_a_session_the_server_forgot_ends_the_upstream() -> None:
    with sdk_server("streamable-http") as endpoint:
        driver = Driver(endpoint)
        conn = driver.conn
        try:
            assert isinstance(conn, StreamableHttpUpstream)
            driver.handshake()
            # The server ends the session behind the upstream's back (as on a restart or expiry).
            requests.delete(endpoint.url, headers={SESSION_HEADER: conn.session_id,
                                                   VERSION_HEADER: conn.protocol_version}, timeout=10)
            driver.request("tools/call", {"name": "echo", "arguments": {"text": "anyone?"}})
            assert driver.wait_ended() == []
            with pytest.raises(BrokenPipeError):
                driver.request("tools/list")
        finally:
            conn.close()


def test_close_ends_the_session_on_the_server() -> None:
    with sdk_server("streamable-http") as endpoint:
        driver = Driver(endpoint)
        conn = driver.conn
        assert isinstance(conn, StreamableHttpUpstream)
        driver.handshake()
        session, version = conn.session_id, conn.protocol_version
        conn.close()
        assert driver.next() is ENDED
        answer = requests.post(endpoint.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10,
                               headers={SESSION_HEADER: session, VERSION_HEADER: version,
                                        "Accept": "application/json, text/event-stream"})
        assert answer.status_code == 404
