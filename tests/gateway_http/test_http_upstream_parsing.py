"""The event-stream parser and settings of the HTTP upstreams, and a server that sends garbage."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.config import Config
from gateway.runtime import HttpEndpoint
from gateway.upstreams.http import UpstreamSettings
from gateway.upstreams.http.events import SseEvent, SseParser
from gateway.upstreams.http.session import payload_messages
from nmcp.model import settings
from tests.gateway_http.driver import Driver

STREAM = (b"\xef\xbb\xbf: keep-alive\r\n\r\n"
          b"event: endpoint\ndata: /message?session=1\n\n"
          b"id: 7\rretry: 250\rdata: {\"a\":\r\rdata:{\"b\": 1}\r\n"
          b"data\r\n"
          b"\r\n"
          b"id: 8\nevent: message\ndata: line one\ndata: line two\n\n"
          b"id: 9\n\n"
          b"data: unterminated")
EVENTS = [
    SseEvent("endpoint", b"/message?session=1"),
    SseEvent("message", b'{"a":', "7", 250),
    SseEvent("message", b'{"b": 1}\n', "7", None),
    SseEvent("message", b"line one\nline two", "8"),
    SseEvent("", b"", "9"),  # no message, but a new place to resume from
]


def parse(chunks: Iterator[bytes] | list[bytes]) -> list[SseEvent]:
    parser = SseParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_parser_reads_every_line_ending_comments_ids_and_multiline_data() -> None:
    assert parse([STREAM]) == EVENTS


def test_parser_gives_the_same_events_whatever_the_chunking() -> None:
    # Byte by byte splits every CRLF in two: a CR at a chunk's end must not end an extra line.
    assert parse(STREAM[i:i + 1] for i in range(len(STREAM))) == EVENTS
    for size in (2, 3, 5, 64):
        assert parse([STREAM[i:i + size] for i in range(0, len(STREAM), size)]) == EVENTS


def test_parser_takes_a_sixteen_megabyte_line_in_small_chunks() -> None:
    payload = b"x" * (16 * 1024 * 1024)
    stream = b"data: " + payload + b"\n\n"
    chunks = [stream[i:i + 65536] for i in range(0, len(stream), 65536)]
    assert parse(chunks) == [SseEvent("message", payload)]


def test_a_batch_is_decoded_into_its_messages() -> None:
    batch = b'[{"jsonrpc":"2.0","id":1,"result":{}},\n {"jsonrpc":"2.0","method":"x"}]'
    assert payload_messages(batch) == [{"jsonrpc": "2.0", "id": 1, "result": {}}, {"jsonrpc": "2.0", "method": "x"}]
    with pytest.raises(ValueError):
        payload_messages(b"[1, 2]")


def test_upstream_timeouts_come_from_the_gateway_settings_table() -> None:
    assert settings.from_env(Config, {}).upstream_request_timeout == UpstreamSettings().request_timeout
    config = settings.from_env(Config, {"NMCP_UPSTREAM_REQUEST_TIMEOUT": "30", "NMCP_UPSTREAM_CONNECT_TIMEOUT": "2.5"})
    assert (config.upstream_request_timeout, config.upstream_connect_timeout) == (30.0, 2.5)
    with pytest.raises(settings.SettingError, match="NMCP_UPSTREAM_CLOSE_TIMEOUT"):
        settings.from_env(Config, {"NMCP_UPSTREAM_CLOSE_TIMEOUT": "soon"})
    with pytest.raises(settings.SettingError, match="NMCP_UPSTREAM_REQUEST_TIMEOUT: must be positive"):
        settings.from_env(Config, {"NMCP_UPSTREAM_REQUEST_TIMEOUT": "-1"})


class GarbageServer(BaseHTTPRequestHandler):
    """A Streamable HTTP endpoint whose answer streams hold a payload that is not JSON first,
    then the real answer split over two `data` lines; no GET stream (405)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        message = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "id" not in message:
            self._reply(202, b"", None)
            return
        answer = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": {"protocolVersion": "2025-06-18",
                                                                               "method": message["method"]}})
        half = answer.index(', "result"')  # between two JSON tokens, where a newline is whitespace
        body = (f"data: this is not json\n\n"
                f"data: {answer[:half]}\ndata: {answer[half:]}\n\n").encode()
        self._reply(200, body, "text/event-stream")

    def do_GET(self) -> None:
        self._reply(405, b"", None)

    def do_DELETE(self) -> None:
        self._reply(405, b"", None)

    def _reply(self, status: int, body: bytes, media_type: str | None) -> None:
        self.send_response(status)
        if media_type:
            self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Mcp-Session-Id", "garbage-1")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def garbage_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), GarbageServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mcp"
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_payload_that_is_not_json_is_logged_and_skipped(garbage_server: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    driver = Driver(HttpEndpoint(garbage_server, "streamable-http"))
    conn = driver.conn
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.upstreams.http.session"):
            assert driver.handshake()["method"] == "initialize"
            assert driver.call("tools/list")["method"] == "tools/list"  # the session goes on
        skipped = [r for r in caplog.records if "not JSON-RPC" in r.getMessage()]
        assert len(skipped) == 2
        assert "this is not json" in skipped[0].getMessage()
    finally:
        conn.close()
