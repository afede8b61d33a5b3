"""The Streamable HTTP transport: `POST/GET/DELETE .../mcp`, for both protocol eras.

Stateful (2025-03-26, 2025-06-18, 2025-11-25): `initialize` without a session creates one and
its response carries `Mcp-Session-Id`; later requests name it (404 once it is gone, and the
client re-initializes). `MCP-Protocol-Version`, when sent, must be a revision we speak (400
otherwise). GET opens the session's stream for messages that belong to no request (one at a
time: 409 for a second); DELETE ends the session.

Stateless (2026-07-28): a request without a session whose `MCP-Protocol-Version` header (or
`_meta` protocol version) is a modern revision is served on its own, with the capabilities its
`_meta` declares; `server/discover` is answered from the upstream's cached initialize result.
Closing the response stream cancels the request upstream. A server-to-client request
(sampling, elicitation, roots) made while such a request runs becomes its answer, an
`InputRequiredResult`; the client's retry with `inputResponses` and the echoed `requestState`
answers the server and then receives the original request's result (multi round-trip requests).
`subscriptions/listen` opens a stream of the change notifications it asks for (list changes,
updates of the resources it names), acknowledged with what the server can honor.

A request is answered as plain JSON when its answer is ready within the keep-alive interval and
nothing else (progress, a sampling request) came first; otherwise the response becomes an SSE
stream carrying everything that belongs to the request, with keep-alive comments, ending with
the answer. A client that accepts only JSON gets JSON, its request's other messages going to
the GET stream.

Every POSTed message is checked first (gateway.jsonrpc) and a malformed one answered at once
with 400 and its JSON-RPC error; nothing malformed reaches the bridge, so nothing malformed is
ever in flight. A request id already in flight on the session is refused the same way (its
answer could not be told from the other's).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.queue
from flask import Blueprint, Response, jsonify, request

from gateway.auth import ANONYMOUS, Identity, identity
from gateway.hub import Hub
from gateway.protocol import jsonrpc, stateless
from gateway.protocol.jsonrpc import CONNECTION_CLOSED, INVALID_PARAMS, INVALID_REQUEST
from gateway.protocol.stateless import StatelessRequest
from gateway.protocol.versions import (
    MODERN_VERSIONS,
    SERVED_VERSIONS,
    SESSION_HEADER,
    UNSUPPORTED_PROTOCOL_VERSION,
    VERSION_HEADER,
)
from gateway.session import CLOSED, Session
from gateway.web import (
    GONE,
    KEEPALIVE,
    SSE_HEADERS,
    Gateway,
    check_origin,
    gateway,
    parse_body,
    problem_response,
    resolve,
    rpc_error_response,
    session_stream,
    sse_event,
    stop,
    watch_disconnect,
)

log = logging.getLogger(__name__)
bp = Blueprint("streamable", __name__)


def _bad_version() -> Response | None:
    version = request.headers.get(VERSION_HEADER)
    if version is None or version in SERVED_VERSIONS:
        return None
    supported = list(SERVED_VERSIONS)
    body = jsonrpc.error(None, UNSUPPORTED_PROTOCOL_VERSION,
                         f"Bad Request: unsupported MCP-Protocol-Version {version!r}; "
                         f"supported: {', '.join(supported)}",
                         {"code": "unsupported_protocol_version", "supported": supported, "requested": version})
    response = jsonify(body)
    response.status_code = 400
    return response


def _session_not_found() -> Response:
    return rpc_error_response(404, INVALID_REQUEST, "Session not found: initialize a new session",
                              "session_not_found")


def _lookup(ref_name: str, namespace: str | None) -> tuple[Any, Session | None, Response | None]:
    ref = resolve(ref_name, namespace)
    session_id = request.headers.get(SESSION_HEADER)
    if session_id is None:
        return ref, None, None
    session = session_for(gateway().hub, session_id, ref, identity())
    if session is None:
        return ref, None, _session_not_found()
    return ref, session, None


def session_for(hub: Hub, session_id: str, ref: Any, caller: Identity = ANONYMOUS) -> Session | None:
    """The open Streamable HTTP session `Mcp-Session-Id` names on this server, if `caller` opened it."""
    session = hub.get(session_id, caller)
    if session is None or session.ref != ref or session.transport != "streamable-http":
        return None
    return session


@bp.post("/mcp")
def post(name: str, namespace: str | None = None) -> Response:
    gw = gateway()  # Origin and body size were checked before (web.guard_request)
    ref, session, problem = _lookup(name, namespace)
    if problem is not None:
        return problem
    problem = _bad_version()
    if problem is not None:
        return problem
    message, malformed = parse_body()
    if malformed is None and isinstance(message, list):
        return rpc_error_response(400, INVALID_REQUEST, "Invalid Request: JSON-RPC batches are not supported "
                                  "(removed in 2025-06-18)", "batch_not_supported")
    malformed = malformed or jsonrpc.validate(message)
    if malformed is not None:
        return problem_response(malformed)
    what = jsonrpc.kind(message)
    gw.metrics.inc("nmcp_gateway_messages_total", transport="streamable-http", server=str(ref))

    new_session = False
    if session is None:
        modern = stateless.declared_version(request.headers.get(VERSION_HEADER), message)
        if what == "request" and message["method"] == "initialize" and modern is None:
            isolation = gw.runtime.get(ref).server.isolation
            session = gw.hub.open(ref, "streamable-http", isolation)
            new_session = True
            gw.metrics.inc("nmcp_gateway_sessions_opened_total", transport="streamable-http", server=str(ref))
        elif modern is not None:
            if what != "request":
                return Response(status=202)  # 2026 defines no client notifications over HTTP
            rejection = stateless.rejection(message, {k.lower(): v for k, v in request.headers.items()})
            if rejection is not None:
                response = jsonify(rejection)
                response.status_code = 400
                return response
            params = message.get("params") if isinstance(message.get("params"), dict) else {}
            if params.get("requestState") is not None:  # a retry answering an InputRequiredResult
                session = gw.hub.unpark(str(params["requestState"]), identity())
                if session is not None and session.ref != ref:
                    gw.hub.park(session)  # not this server's: leave it for the right retry
                    session = None
                if session is None:
                    response = jsonify(jsonrpc.error(message["id"], INVALID_PARAMS,
                                                     "unknown or expired requestState; send the request anew"))
                    response.status_code = 400
                    return response
                return answer(gw, session, message, new_session=False, resume=True)
            session = gw.hub.open(ref, "stateless", gw.runtime.get(ref).server.isolation)
            session.adopt(StatelessRequest.adopt(message, modern, session.id))
        else:
            return rpc_error_response(400, INVALID_REQUEST,
                                      f"Bad Request: no {SESSION_HEADER} header; send initialize first",
                                      "session_required")
    bridge = session.bridge
    assert bridge is not None
    if what != "request":
        bridge.handle(session, message)
        return Response(status=202)
    return answer(gw, session, message, new_session)


def acceptable(accept: str) -> tuple[bool, bool]:
    """Whether a client's Accept header takes an SSE stream, and plain JSON."""
    return "text/event-stream" in accept or "*/*" in accept, "application/json" in accept or "*/*" in accept


def duplicate(session: Session, request_id: Any) -> bool:
    """Whether the session has a request with this id in flight (its answer could not be told apart)."""
    bridge = session.bridge
    return request_id in session.streams or (bridge is not None and bridge.in_flight(session, request_id))


def answer(gw: Gateway, session: Session, message: dict[str, Any], new_session: bool, resume: bool = False, *,
           accept: str | None = None, environ: dict[str, Any] | None = None) -> Response:
    """Send a client request on and answer it (JSON, or an SSE stream); `accept` and `environ` are the
    request's (default: Flask's current request)."""
    hub = gw.hub
    request_id = message["id"]
    if environ is None or accept is None:
        accept, environ = request.headers.get("Accept", "*/*"), request.environ
    can_stream, can_json = acceptable(accept)
    if not can_stream and not can_json:
        if new_session or session.transport == "stateless":
            hub.close(session)
        return rpc_error_response(406, INVALID_REQUEST,
                                  "Not Acceptable: accept application/json or text/event-stream", "not_acceptable")
    bridge = session.bridge
    assert bridge is not None
    if not resume and duplicate(session, request_id):
        return rpc_error_response(400, INVALID_REQUEST, f"Invalid Request: the id {request_id!r} belongs to a request "
                                  "still in flight on this session; ids must be unique", "duplicate_request_id",
                                  request_id)
    queue = session.open_stream(request_id)
    watcher = watch_disconnect(environ, lambda: queue.put(GONE))
    if resume:
        gevent.spawn(bridge.resume, session, message)
    elif bridge.running and not bridge.exclusive:
        bridge.handle(session, message)  # sent upstream at once: its answer lands on `queue`
    else:
        gevent.spawn(bridge.handle, session, message)  # waits for the cold start, the client for the answer
    window = gw.config.keepalive if can_json else 0.0
    first: Any = None
    try:
        while True:  # JSON-only: wait for the answer, sending the rest to the GET stream
            try:
                first = queue.get(timeout=window if can_stream else None)
            except gevent.queue.Empty:
                first = None
                break
            if first is GONE or first is CLOSED or jsonrpc.kind(first) == "response" or can_stream:
                break
            session.main.put(first)
    except BaseException:
        stop(watcher)
        raise
    if first is GONE or first is CLOSED:
        stop(watcher)
        _finish(session, request_id, False, hub)
        if first is GONE:
            return Response(status=204)  # nobody is listening
        ended = jsonrpc.error(request_id, CONNECTION_CLOSED, "the session ended before the answer came")
        return Response(jsonrpc.dumps(ended), content_type="application/json")
    if first is not None and jsonrpc.kind(first) == "response" and can_json:
        stop(watcher)
        _finish(session, request_id, True, hub)
        return _json(hub, session, first, new_session)
    headers = dict(SSE_HEADERS)
    if new_session:
        headers[SESSION_HEADER] = session.id
    body = _stream(session, request_id, queue, first, watcher=watcher, new_session=new_session, gw=gw)
    return Response(body, headers=headers)


def _json(hub: Hub, session: Session, answer: dict[str, Any], new_session: bool) -> Response:
    response = Response(jsonrpc.dumps(answer), content_type="application/json")
    if new_session:
        if "error" in answer:
            hub.close(session)  # initialize failed: no session to name
        else:
            response.headers[SESSION_HEADER] = session.id
    return response


def _stream(session: Session, request_id: Any, queue: gevent.queue.Queue, first: Any, *,
            watcher: gevent.Greenlet | None, new_session: bool, gw: Gateway) -> Iterator[bytes]:
    """Runs after the view returned (no app context): everything it needs comes in arguments."""
    keepalive = gw.config.keepalive
    hub = gw.hub
    answered = False
    try:
        message = first
        while True:
            if message is GONE or message is CLOSED:
                return
            if message is not None:
                yield sse_event(message)
                if jsonrpc.kind(message) == "response":
                    answered = True
                    if new_session and "error" in message:
                        hub.close(session)  # initialize failed: the session it named is void
                    return
            try:
                message = queue.get(timeout=keepalive)
            except gevent.queue.Empty:
                message = None
                yield KEEPALIVE
    finally:
        stop(watcher)
        _finish(session, request_id, answered, hub)


def _finish(session: Session, request_id: Any, answered: bool, hub: Hub) -> None:
    """The request's stream is over; a stateless request ends its session (cancelling it if unanswered)."""
    session.close_stream(request_id)
    if session.stateless is not None and session.stateless.awaiting_input and answered:
        hub.park(session)  # its request goes on upstream; the client's retry brings the input
    elif session.transport == "stateless":
        hub.close(session)  # detaching cancels the request upstream when it is still in flight
    elif not answered:
        log.debug("session %s: the stream of request %r closed before its answer", session.id, request_id)


@bp.get("/mcp")
def get(name: str, namespace: str | None = None) -> Response:
    check_origin()
    _ref, session, problem = _lookup(name, namespace)
    if problem is not None:
        return problem
    if session is None:
        if request.headers.get(VERSION_HEADER) in MODERN_VERSIONS:
            return rpc_error_response(405, INVALID_REQUEST,
                                      "2026-07-28 has no GET stream; use subscriptions/listen", "method_not_allowed")
        return rpc_error_response(400, INVALID_REQUEST, f"Bad Request: no {SESSION_HEADER} header",
                                  "session_required")
    problem = _bad_version()
    if problem is not None:
        return problem
    accept = request.headers.get("Accept", "*/*")
    if "text/event-stream" not in accept and "*/*" not in accept:
        return rpc_error_response(406, INVALID_REQUEST, "Not Acceptable: the GET stream is text/event-stream",
                                  "not_acceptable")
    if session.main_attached:
        return rpc_error_response(409, INVALID_REQUEST, "Conflict: this session already has a GET stream",
                                  "stream_conflict")
    session.main_attached = True
    session.touch()
    keepalive = gateway().config.keepalive
    environ = request.environ

    def stream() -> Iterator[bytes]:
        watcher = watch_disconnect(environ, lambda: session.main.put(GONE))
        try:
            yield KEEPALIVE  # headers out now: the client knows the stream is open
            yield from session_stream(session.main, keepalive)
        finally:
            stop(watcher)
            session.main_attached = False
            session.touch()

    return Response(stream(), headers=SSE_HEADERS)


@bp.delete("/mcp")
def delete(name: str, namespace: str | None = None) -> Response:
    _ref, session, problem = _lookup(name, namespace)
    if problem is not None:
        return problem
    if session is None:
        return rpc_error_response(400, INVALID_REQUEST, f"Bad Request: no {SESSION_HEADER} header",
                                  "session_required")
    gateway().hub.close(session)
    return Response(status=204)
