"""A client session: its negotiated state, and the queues its transport drains.

Messages that belong to one request go to that request's stream when it has one (a Streamable
HTTP POST answered with SSE); the rest go to the session's main stream (the SSE stream, or a
Streamable HTTP session's GET stream). A 2026-07-28 (stateless) request is a session of one
request, whose messages take that revision's shape on the way out (gateway.protocol.stateless).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent.queue

from gateway.auth.access import filter_tools_list
from gateway.protocol.jsonrpc import REQUEST_CANCELLED, Message, RequestId, error, kind
from gateway.protocol.stateless import StatelessRequest

if TYPE_CHECKING:
    from gateway.bridge import Bridge

log = logging.getLogger(__name__)

MAIN_BACKLOG = 1000  # messages kept for a Streamable HTTP session while its GET stream is not open

_seq = itertools.count(1)


def next_seq() -> int:
    """A sequence number of this process: higher is more recent."""
    return next(_seq)


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


class Closed:
    """The end marker put on a stream's queue."""


CLOSED = Closed()


class Session:
    """One client session: its negotiated state and the queues its transport drains."""

    def __init__(self, session_id: str, ref: Any, transport: str) -> None:
        self.id = session_id
        self.ref = ref
        self.transport = transport  # sse, streamable-http, stateless
        self.capabilities: frozenset[str] = frozenset()
        self.protocol_version = ""
        self.stateless: StatelessRequest | None = None  # the one request of a stateless session
        self.client_info: dict[str, Any] = {}
        self.log_level: str | None = None  # what it asked for with logging/setLevel
        self.closed = False
        self.touched_at = time.monotonic()
        self.main: gevent.queue.Queue = gevent.queue.Queue()
        self.main_attached = False  # a GET stream (or the SSE stream) is draining `main`
        self.streams: dict[RequestId, gevent.queue.Queue] = {}
        self.bridge: Bridge | None = None
        # The caller's tool rule under an access policy (gateway.auth.access): tools/list results
        # show only the tools it allows.
        self.visible_tools: Callable[[str], bool] | None = None
        # Who opened it (verifier, subject): a session id is not a credential, so a request naming
        # this session from anyone else finds no session (gateway.hub.Hub.get).
        self.caller = ("anonymous", "anonymous")

    def adopt(self, request: StatelessRequest) -> None:
        """Serve one 2026-07-28 request: its revision and declared capabilities are the session's."""
        self.stateless = request
        self.protocol_version = request.version
        self.capabilities = request.capabilities

    def touch(self) -> None:
        self.touched_at = time.monotonic()

    def open_stream(self, request_id: RequestId) -> gevent.queue.Queue:
        """A queue for everything that belongs to one request, until `close_stream`."""
        queue: gevent.queue.Queue = gevent.queue.Queue()
        self.streams[request_id] = queue
        return queue

    def close_stream(self, request_id: RequestId) -> None:
        self.streams.pop(request_id, None)

    def deliver(self, message: Message, related: RequestId | None = None) -> None:
        if self.closed:
            return
        if self.visible_tools is not None and kind(message) == "response":
            message = filter_tools_list(message, self.visible_tools)
        if self.stateless is not None:
            out = self.stateless.outgoing(message, related, self.stateless.request_id in self.streams)
            if out is None:
                return
            message, related = out
        stream = self.streams.get(related) if related is not None else None
        if stream is not None:
            stream.put(message)
            return
        if self.transport != "sse" and kind(message) == "response":
            # Streamable HTTP: a response goes only on its request's stream; that is gone.
            log.debug("session %s: dropped the response to %r, its stream is closed", self.id, message.get("id"))
            return
        if self.transport == "streamable-http" and not self.main_attached and self.main.qsize() >= MAIN_BACKLOG:
            self.main.get_nowait()  # nobody listens: keep the newest messages only
        self.main.put(message)

    def cancelled(self, request_id: RequestId) -> None:
        """The client cancelled a request: end the stream still waiting for its answer.

        The error answer goes nowhere (the client no longer waits for that id); it only closes the
        request's Streamable HTTP response. The SSE transport has no such stream: nothing is sent.
        """
        if self.transport == "streamable-http" and request_id in self.streams:
            self.deliver(error(request_id, REQUEST_CANCELLED, "cancelled by the client"), request_id)

    def end(self) -> None:
        """Wake every stream of this session with the end marker."""
        self.closed = True
        self.main.put(CLOSED)
        for queue in list(self.streams.values()):
            queue.put(CLOSED)
