"""The legacy HTTP+SSE transport (2024-11-05): `GET .../sse` and `POST .../message?sessionId=`.

The GET opens a session whose stream starts with an `endpoint` event naming the POST URL; every
message for the session then comes down that stream. Each POSTed message is answered 202 and
handled in its own greenlet, so a cold start never holds the POST. The session ends when the
client closes the stream.

A POSTed body is checked first (gateway.jsonrpc): one that is not JSON, not a valid message, or
a batch (2024-11-05 allowed them) with any invalid member gets 400 and the JSON-RPC error, and
nothing of it is handled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import gevent
import gevent.queue
from flask import Blueprint, Response, request

from gateway.auth import identity
from gateway.protocol import jsonrpc
from gateway.web import (
    GONE,
    SSE_HEADERS,
    ApiError,
    check_origin,
    gateway,
    parse_body,
    problem_response,
    resolve,
    session_stream,
    sse_event,
    stop,
    watch_disconnect,
)

log = logging.getLogger(__name__)
bp = Blueprint("sse", __name__)


@bp.get("/sse")
def open_stream(name: str, namespace: str | None = None) -> Response:
    check_origin()
    gw = gateway()
    ref = resolve(name, namespace)
    server = gw.runtime.get(ref).server
    session = gw.hub.open(ref, "sse", server.isolation)
    session.main_attached = True
    assert session.bridge is not None
    gevent.spawn(session.bridge.warm)  # the cold start begins while the client reads the endpoint
    endpoint = f"{request.script_root}{request.path.rsplit('/', 1)[0]}/message?sessionId={session.id}"
    keepalive = gw.config.keepalive
    gw.metrics.inc("nmcp_gateway_sessions_opened_total", transport="sse", server=str(ref))

    environ = request.environ

    def stream() -> Iterator[bytes]:
        watcher = watch_disconnect(environ, lambda: session.main.put(GONE))
        try:
            yield sse_event(endpoint, "endpoint")
            yield from session_stream(session.main, keepalive)
        finally:
            stop(watcher)
            gw.hub.close(session)

    return Response(stream(), headers=SSE_HEADERS)


@bp.post("/message")
def post_message(name: str, namespace: str | None = None) -> tuple[str, int] | Response:
    gw = gateway()  # Origin and body size were checked before (web.guard_request)
    ref = resolve(name, namespace)
    session = gw.hub.get(request.args.get("sessionId", ""), identity())
    if session is None or session.ref != ref or session.transport != "sse":
        raise ApiError(404, "session_not_found", "no open SSE session with this sessionId; open .../sse again")
    body, malformed = parse_body()
    messages = body if isinstance(body, list) else [body]  # 2024-11-05 still allowed batches
    if malformed is None:
        malformed = jsonrpc.check_batch(messages) if isinstance(body, list) else jsonrpc.validate(body)
    if malformed is not None:
        return problem_response(malformed)
    bridge = session.bridge
    assert bridge is not None
    for message in messages:
        gw.metrics.inc("nmcp_gateway_messages_total", transport="sse", server=str(ref))
        gevent.spawn(bridge.handle, session, message)
    return "Accepted", 202
