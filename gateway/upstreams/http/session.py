"""What both HTTP transports share: one MCP client session's threads, sockets, decoding of what
the server sends, and the end of the session.

Blocking `requests` calls run on threads: real threads under pytest, greenlets in the gevent worker
(where `threading` and sockets are monkey-patched), so this package never imports gevent. Every
message the server sends, on whichever stream, is decoded once and handed to `on_message` on the
thread that read it; the end (`on_close`) comes once. `close()` shuts down every socket the
session opened, which wakes every thread blocked on one.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import logging
import threading
from collections.abc import Callable
from typing import Any

import requests
import urllib3

from gateway.protocol.jsonrpc import CONNECTION_CLOSED, Message, decode, kind
from gateway.upstreams.http.events import SseEvent, SseParser
from gateway.upstreams.http.settings import UpstreamSettings
from gateway.upstreams.http.sockets import Sockets, TrackingAdapter
from gateway.upstreams.port import OnClose, OnMessage, encode

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 16
# Errors that mean "this HTTP exchange broke" once a response is being read.
STREAM_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


class StreamEnd(enum.Enum):
    CLEAN = "the server ended it"
    BROKEN = "the connection dropped"
    IDLE = "nothing came within the request timeout"


def answers(message: Message, request_id: Any) -> bool:
    """Whether `message` is the response to the request with `request_id`."""
    return kind(message) == "response" and message.get("id") == request_id


def error_response(request_id: Any, message: str, status: int | None = None) -> Message:
    """The JSON-RPC error the bridge gets when the upstream cannot answer a request itself."""
    error: dict[str, Any] = {"code": CONNECTION_CLOSED, "message": message}
    if status is not None:
        error["data"] = {"httpStatus": status}
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def payload_messages(data: bytes) -> list[Message]:
    """The JSON-RPC messages of one payload (one, or a 2025-03-26 batch); ValueError if not JSON-RPC."""
    doc = decode(data)
    if isinstance(doc, dict):
        return [doc]
    if not isinstance(doc, list):
        raise ValueError("expected a JSON-RPC object or batch")
    if not all(isinstance(item, dict) for item in doc):
        raise ValueError("a batch entry is not a JSON-RPC object")
    return doc


def media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def snippet(response: requests.Response) -> str:
    """The start of an error body, or its JSON-RPC error's message."""
    try:
        text = response.text
    except STREAM_ERRORS:
        return ""
    with contextlib.suppress(ValueError, KeyError, TypeError):
        text = decode(text)["error"]["message"]
    return " ".join(str(text).split())[:200]


class HttpSession:
    """The threads, sockets and end-of-session handling both transports share."""

    def __init__(self, url: str, settings: UpstreamSettings, on_message: OnMessage, on_close: OnClose,
                 max_message: int | None = None) -> None:
        self.url = url
        self.name = url
        self.settings = settings
        self.max_message = max_message
        self._on_message = on_message
        self._on_close = on_close
        self._sockets = Sockets()
        self._http = requests.Session()
        adapter = TrackingAdapter(self._sockets)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        # Compression would make a proxy or server buffer event streams; these are loopback or
        # in-cluster hops anyway.
        self._http.headers["Accept-Encoding"] = "identity"
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._closing = threading.Event()
        self._ended = threading.Event()
        self._end_lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return not self._ended.is_set() and not self._closing.is_set()

    def close(self) -> None:
        """End the session and release every socket; idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._goodbye()
        self._sockets.shutdown()
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(self.settings.close_timeout)
        self._http.close()
        self._end()

    # for the transports

    def _goodbye(self) -> None:
        """Tell the server the session is over (close(), before the sockets go)."""

    def _encode(self, message: Message) -> bytes:
        """The message as sent (MessageTooLarge past the limit); BrokenPipeError once ended."""
        if not self.alive:
            raise BrokenPipeError(f"upstream {self.url} has ended")
        return encode(message, self.max_message)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"upstream {self.url}", daemon=True)
        with self._threads_lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _end(self) -> None:
        with self._end_lock:
            if self._ended.is_set():
                return
            self._ended.set()
        self._on_close(self)

    def _lost(self, why: str) -> None:
        """The upstream is gone: the bridge fails in-flight calls and starts over."""
        if not self._closing.is_set() and not self._ended.is_set():
            log.warning("upstream %s ended: %s", self.url, why)
        self._end()

    def _fail(self, request_id: Any, why: str, status: int | None = None) -> None:
        """Answer one request in the server's place: the session goes on, the caller is not left waiting."""
        if not self.alive:
            return
        log.warning("upstream %s: request %r failed: %s", self.url, request_id, why)
        self._dispatch(error_response(request_id, f"upstream {self.url}: {why}", status))

    def _deliver(self, data: bytes) -> list[Message]:
        """Hand every message of one payload to the bridge; a payload that is not JSON-RPC is skipped."""
        if not data.strip():
            return []  # a priming event: an id to resume from, no message
        try:
            messages = payload_messages(data)
        except ValueError as exc:
            log.warning("upstream %s sent a payload that is not JSON-RPC (%s), skipped: %.200r", self.url, exc, data)
            return []
        for message in messages:
            self._inspect(message)
            self._dispatch(message)
        return messages

    def _dispatch(self, message: Message) -> None:
        if self._ended.is_set():
            return
        try:
            self._on_message(message)
        except Exception:  # a routing bug must not end the session for everyone
            log.exception("upstream %s: failed to route %s", self.url, str(message)[:200])

    def _inspect(self, message: Message) -> None:
        """Look at a server message before the bridge sees it."""

    def _pump(self, response: requests.Response, on_event: Callable[[SseEvent], None]) -> StreamEnd:
        """Read an event stream to its end, handing each event to `on_event`; how it ended."""
        parser = SseParser()
        try:
            while True:
                chunk = response.raw.read1(_READ_SIZE, decode_content=True)
                if not chunk:
                    return StreamEnd.CLEAN
                for event in parser.feed(chunk):
                    on_event(event)
        except urllib3.exceptions.ReadTimeoutError:
            return StreamEnd.IDLE
        except STREAM_ERRORS as exc:
            if not self._closing.is_set():
                log.info("upstream %s: stream broke: %s", self.url, exc)
            return StreamEnd.BROKEN
