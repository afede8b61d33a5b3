"""What every gateway route shares: the app's state, JSON errors, the checks made before any view
(Origin, body size), SSE framing, and noticing that a client closed its connection.

Errors have one shape everywhere outside the MCP message channel:
`{"error": {"code": "<stable_code>", "message": "..."}}`. The MCP endpoints answer protocol
problems with a JSON-RPC error instead (what MCP clients parse), whose `data.code` is the same
kind of stable code.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.queue
from flask import Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from gateway import hosts
from gateway.auth import authenticate_request
from gateway.config import Config
from gateway.hub import Hub
from gateway.protocol import jsonrpc
from gateway.protocol.jsonrpc import Problem, RequestId, dumps
from gateway.runtime import Runtime, ServerRef
from gateway.session import CLOSED

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-transform",
               "X-Accel-Buffering": "no"}
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
# Methods that change state: a browser sends them cross-site without asking (a form POST), so
# they come only from pages whose Origin is allowed.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Metrics:
    """Counters for /metrics, by (name, labels)."""

    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0.0) + amount


@dataclass
class Gateway:
    config: Config
    runtime: Runtime
    hub: Hub
    metrics: Metrics = field(default_factory=Metrics)
    background: list[gevent.Greenlet] = field(default_factory=list)


def gateway() -> Gateway:
    return current_app.extensions["nmcp"]


class ApiError(Exception):
    """An error answered as JSON with a stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str, reason: str = "") -> Response:
    body = {"code": code, "message": message, **({"reason": reason} if reason else {})}
    response = jsonify({"error": body})
    response.status_code = status
    return response


def rpc_error_response(status: int, code: int, message: str, stable_code: str,
                       request_id: RequestId | None = None) -> Response:
    response = jsonify({"jsonrpc": "2.0", "id": request_id,
                        "error": {"code": code, "message": message, "data": {"code": stable_code}}})
    response.status_code = status
    return response


def problem_response(problem: Problem) -> Response:
    """400 with the JSON-RPC error that answers a malformed message (gateway.protocol.jsonrpc)."""
    return Response(dumps(problem.error()), status=400, content_type="application/json")


def body_too_large() -> Response:
    limit = gateway().config.max_body
    return error_response(413, "body_too_large",
                          f"the request body is larger than {limit} bytes, the gateway's limit (NMCP_MAX_BODY)")


def read_body() -> bytes:
    """The request body, refused past NMCP_MAX_BODY (RequestEntityTooLarge, a JSON 413), with or
    without Content-Length.

    Flask's MAX_CONTENT_LENGTH is one byte over the limit (create_app): werkzeug stops a chunked
    body at that length without a word, so one byte more than allowed is how an oversized body
    shows, while a body of exactly the limit still passes.
    """
    data = request.get_data()
    if len(data) > gateway().config.max_body:
        raise RequestEntityTooLarge()
    return data


def parse_body() -> tuple[Any, Problem | None]:
    """The request body as JSON (jsonrpc.parse), decoded once: the view acts on it and the audit
    (gateway.audit) reads the same value from `g.nmcp_body`."""
    body, problem = jsonrpc.parse(read_body())
    g.nmcp_body = body
    return body, problem


def guard_request() -> Response | None:
    """Before every view: an allowed Host (403, see gateway.hosts), a state-changing request only
    from an allowed Origin (403), a body no larger than NMCP_MAX_BODY (413, answered before a byte
    of it is read), a caller with an acceptable bearer token when authentication is on (401/403,
    see gateway.auth)."""
    check_host()
    if request.method in UNSAFE_METHODS:
        check_origin()
    length = request.content_length
    if length is not None and length > gateway().config.max_body:
        return body_too_large()
    return authenticate_request()


def resolve(name: str, namespace: str | None) -> ServerRef:
    """The server a URL names (ServerNotFound / AmbiguousServer become JSON 404 / 409)."""
    return gateway().runtime.resolve(name, namespace)


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser), a localhost page, or one the operator allowed."""
    if not origin:
        return True
    if "*" in allowed or origin in allowed:
        return True
    if origin == "null":
        return False
    host = urlsplit(origin).hostname or ""
    return host in LOCAL_HOSTS


def check_host() -> None:
    """403 for a Host that is not the gateway's (a DNS-rebound name), on every endpoint."""
    config = gateway().config
    host = request.headers.get("Host")
    if not hosts.host_allowed(host, config.allowed_hosts, loopback=hosts.is_loopback(config.bind)):
        raise ApiError(403, "host_not_allowed",
                       f"Host {host!r} is not allowed; add its name to NMCP_ALLOWED_HOSTS to allow it")


def check_origin() -> None:
    """403 for a browser page whose Origin is not allowed (DNS-rebinding protection)."""
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, gateway().config.allowed_origins):
        raise ApiError(403, "origin_not_allowed",
                       f"Origin {origin!r} is not allowed; add it to NMCP_ALLOWED_ORIGINS to allow it")


def sse_event(data: Any, event: str = "message") -> bytes:
    payload = data.encode() if isinstance(data, str) else dumps(data)
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


KEEPALIVE = b": keepalive\n\n"
GONE = object()  # put on a session queue when its client hangs up


def session_stream(queue: gevent.queue.Queue, keepalive: float) -> Iterator[bytes]:
    """SSE events for every message put on `queue`, keep-alive comments while it is quiet,
    until the client is GONE or the session CLOSED."""
    while True:
        try:
            message = queue.get(timeout=keepalive)
        except gevent.queue.Empty:
            yield KEEPALIVE
            continue
        if message is GONE or message is CLOSED:
            return
        yield sse_event(message)


def watch_disconnect(environ: dict[str, Any], on_close: Callable[[], None]) -> Any:
    """Call `on_close` when the client closes the connection of the current request.

    An SSE client sends nothing after its request, so the socket turning readable with no data
    means it hung up; without this we would notice only at the next write. `environ` is the
    request's WSGI environ (captured in the view: generators run outside the request context).
    `stop()` the returned watcher once the response is done. It is an event-loop watcher, not a
    greenlet: every request that waits has one, and starting and stopping it costs no switch.
    """
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return None
    watcher = gevent.get_hub().loop.io(sock.fileno(), 1)  # 1: readable

    def check() -> None:
        try:
            if sock.recv(1, socket.MSG_PEEK):
                return  # the client sent more (a pipelined request): not a hang-up
        except OSError:
            pass
        on_close()

    def readable() -> None:
        watcher.stop()
        gevent.spawn(check)  # the loop's callback may not block; readable, the peek does not

    watcher.start(readable)
    return watcher


def stop(watcher: Any) -> None:
    if watcher is not None:
        watcher.close()
