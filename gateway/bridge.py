"""The session bridge: many client sessions on one upstream MCP session.

A `Bridge` owns the upstream of one running server (or, for `isolation: session`, of one client
session). It initializes the upstream once, declaring the client capabilities the gateway can
route (sampling, elicitation, roots), and answers every client's `initialize` from that cached
result; the client's `notifications/initialized` is swallowed. Client requests go upstream under
fresh ids; `gateway.routing.route()` decides where each upstream message goes and the bridge
carries the decision out (see routing.py for the rules).

When the upstream ends (crash, shutdown, idle stop) every request in flight gets a JSON-RPC
error at once, and the next request starts the server again (`runtime.request`, `wait_ready`,
`connect`) and re-initializes it; client sessions live on, and resource subscriptions are
renewed. A session that goes away leaves nothing behind: its requests in flight are cancelled
upstream, server requests waiting on it are answered with an error, its subscriptions dropped.

A `Session` is the client side: where the transports (SSE, Streamable HTTP) collect what to
send to one client. Messages that belong to one request go to that request's stream when it
has one (a Streamable HTTP POST answered with SSE); the rest go to the session's main stream.

A 2026-07-28 (stateless) request is a session of one request. What the server asks of the
client meanwhile (sampling, elicitation, roots) becomes that request's answer, an
`InputRequiredResult` whose `requestState` names the session, which waits (parked) for the
client's retry carrying the input; a `subscriptions/listen` request is a session that only
receives the change notifications it asked for.

`Hub` holds every session and bridge of the gateway process (workers = 1: sessions live here).
It holds them within limits (gateway.limits): at most `max_sessions` per server, a new one beyond
that refused with the time until one expires (`SessionLimitReached`), and a Streamable HTTP
session nobody uses closed after its server's session timeout. A client message larger than a
server may be sent (`max_message`) never reaches it: its sender gets an error.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.queue

from gateway import jsonrpc, limits, routing
from gateway.routing import Message, RequestId
from gateway.runtime import HttpEndpoint, Runtime, RuntimeError_, ServerRef, StartFailed, StdioConnection
from gateway.upstreams.stdio import MessageTooLarge, Upstream

log = logging.getLogger(__name__)

GATEWAY_INFO = {"name": "nmcp-gateway", "version": "0.1.0"}
# The revision the gateway speaks to upstream servers, and the ones it accepts from clients.
UPSTREAM_PROTOCOL_VERSION = "2025-11-25"
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS = ("2026-07-28",)
UPSTREAM_CAPABILITIES = {"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {"listChanged": True}}
PARKED_TIMEOUT = 300.0  # how long a 2026 request asking for input waits for the client's retry
MAIN_BACKLOG = 1000  # messages kept for a Streamable HTTP session while its GET stream is not open
INTERNAL_TIMEOUT = 30.0  # how long the answer to a request of the gateway's own is waited for

_seq = itertools.count(1)


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


class Closed:
    """The end marker put on a stream's queue."""


class SessionLimitReached(Exception):
    """A server holds as many client sessions as it may; one may expire in `retry_after` seconds."""

    def __init__(self, ref: ServerRef, limit: int, retry_after: int) -> None:
        super().__init__(f"the server {ref} holds {limit} client sessions, its limit (NMCP_MAX_SESSIONS); "
                         f"retry in {retry_after}s, or end unused sessions (DELETE)")
        self.ref = ref
        self.limit = limit
        self.retry_after = retry_after


CLOSED = Closed()


class Session:
    """One client session: its negotiated state and the queues its transport drains."""

    def __init__(self, session_id: str, ref: ServerRef, transport: str) -> None:
        self.id = session_id
        self.ref = ref
        self.transport = transport  # sse, streamable-http, stateless
        self.capabilities: frozenset[str] = frozenset()
        self.protocol_version = ""
        self.modern_method = ""  # the one request of a stateless (2026-07-28) session
        self.modern_request_id: RequestId | None = None  # ... and its id (changes when the client retries)
        # Server-to-client requests handed to a stateless client as an InputRequiredResult, by the
        # key they have there; the session waits (parked) for the client's retry that answers them.
        self.awaiting_input: dict[str, RequestId] = {}
        self.unsent_input: list[Message] = []  # arrived while parked: go out with the next round
        self.listen_filter: dict[str, Any] | None = None  # a `subscriptions/listen` stream: what it honors
        self.client_info: dict[str, Any] = {}
        self.closed = False
        self.last_active = next(_seq)
        self.touched_at = time.monotonic()
        self.main: gevent.queue.Queue = gevent.queue.Queue()
        self.main_attached = False  # a GET stream (or the SSE stream) is draining `main`
        self.streams: dict[RequestId, gevent.queue.Queue] = {}
        self.bridge: Bridge | None = None

    def view(self) -> routing.SessionView:
        return routing.SessionView(self.id, self.capabilities, self.last_active)

    def touch(self) -> None:
        self.last_active = next(_seq)
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
        if self.transport == "stateless":
            what = routing.kind(message)
            if what == "notification" and message["method"] in routing.LISTEN_METHODS:
                # 2026-07-28: change notifications ride `subscriptions/listen` streams only.
                if self.listen_filter is None or not routing.listen_admits(self.listen_filter, message):
                    return
                message, related = routing.stamp_subscription(message, self.modern_request_id), \
                    self.modern_request_id
            elif what == "response":
                message = routing.modern_response(self.modern_method, message)
            elif what == "request":  # 2026-07-28 has no server-to-client requests: ask for input instead
                if self.modern_request_id not in self.streams:
                    self.unsent_input.append(message)  # the client is between two rounds
                    return
                key = f"input-{len(self.awaiting_input) + 1}"
                self.awaiting_input[key] = message["id"]
                message, related = routing.input_required(self.modern_request_id, key, message, self.id), \
                    self.modern_request_id
            elif what == "notification" and message.get("method") == "notifications/cancelled":
                return  # what it cancels never reached the client as a request
        stream = self.streams.get(related) if related is not None else None
        if stream is not None:
            stream.put(message)
            return
        if self.transport != "sse" and routing.kind(message) == "response":
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
            self.deliver(routing.error(request_id, routing.REQUEST_CANCELLED, "cancelled by the client"), request_id)

    def end(self) -> None:
        """Wake every stream of this session with the end marker."""
        self.closed = True
        self.main.put(CLOSED)
        for queue in list(self.streams.values()):
            queue.put(CLOSED)


class Bridge:
    """The upstream of one server (or one isolated session) and the sessions it serves."""

    def __init__(self, runtime: Runtime, ref: ServerRef, *, session_key: str | None = None,
                 start_timeout: float = 120.0, http_settings: Any = None,
                 count_sessions: Callable[[], int] | None = None, max_message: int | None = None) -> None:
        self.runtime = runtime
        self.max_message = max_message  # the longest line the server is sent (MessageTooLarge past it)
        self.count_sessions = count_sessions  # the server's sessions on every bridge (isolated ones too)
        self.http_settings = http_settings  # gateway.upstreams.http.UpstreamSettings for HTTP servers
        self.ref = ref
        self.session_key = session_key  # set for an isolated (per-session) upstream
        self.start_timeout = start_timeout
        self.sessions: dict[str, Session] = {}
        self.pending: dict[RequestId, routing.Pending] = {}
        self.server_requests: dict[RequestId, str] = {}
        self.subscriptions: dict[str, frozenset[str]] = {}
        self.init_result: dict[str, Any] | None = None
        self.restarts = 0
        self._upstream: Upstream | None = None
        self.closed = False
        self._initialized = False  # _upstream answered initialize (it is set, unanswered, while starting)
        self._ids = itertools.count(1)
        self._internal: dict[RequestId, gevent.event.AsyncResult] = {}
        self._start_lock = gevent.lock.RLock()
        self._log_level: str | None = None

    # -- the table route() reads ---------------------------------------------------------------
    def table(self) -> routing.Table:
        return routing.Table(
            sessions={sid: s.view() for sid, s in self.sessions.items()},
            pending=self.pending, server_requests=self.server_requests, subscriptions=self.subscriptions,
            internal=bool(self._internal),
        )

    @property
    def running(self) -> bool:
        return self._upstream is not None and self._upstream.alive and self._initialized

    # -- sessions --------------------------------------------------------------------------------
    def attach(self, session: Session) -> None:
        session.bridge = self
        self.sessions[session.id] = session
        self._touch_runtime()

    def detach(self, session: Session) -> None:
        """Forget a session: cancel its requests upstream, refuse what waits on it."""
        if self.sessions.pop(session.id, None) is None:
            return
        up = self._upstream if self.running else None
        for upstream_id, pending in list(self.pending.items()):
            if pending.session == session.id:
                del self.pending[upstream_id]
                self._send(up, {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                "params": {"requestId": upstream_id, "reason": "the client went away"}})
        for request_id, owner in list(self.server_requests.items()):
            if owner == session.id:
                del self.server_requests[request_id]
                self._send(up, routing.error(request_id, routing.INTERNAL_ERROR, "the client session ended"))
        for uri, subscribers in list(self.subscriptions.items()):
            if session.id in subscribers:
                rest = subscribers - {session.id}
                if rest:
                    self.subscriptions[uri] = rest
                else:
                    del self.subscriptions[uri]
                    self._internal_request(up, "resources/unsubscribe", {"uri": uri})
        if self.session_key is not None:
            self.close()  # an isolated upstream lives exactly as long as its session
        self._touch_runtime()

    def _touch_runtime(self) -> None:
        sessions = self.count_sessions() if self.count_sessions is not None else len(self.sessions)
        try:
            self.runtime.touch(self.ref, sessions)
        except RuntimeError_ as err:
            log.debug("%s: touch failed: %s", self.ref, err)

    # -- client -> server ------------------------------------------------------------------------
    def handle(self, session: Session, message: Message) -> None:
        """One message from a client session. May block (the greenlet) while the server starts."""
        session.touch()
        what = routing.kind(message)
        if what == "request":
            self._client_request(session, message)
        elif what == "notification":
            self._client_notification(session, message)
        elif what == "response":
            self._client_response(session, message)
        else:  # the transports validate first (gateway.jsonrpc): this is a bug, still answered
            session.deliver(routing.error(None, jsonrpc.INVALID_REQUEST, "not a JSON-RPC 2.0 message"))

    def _client_request(self, session: Session, message: Message) -> None:
        method = message["method"]
        request_id = message["id"]
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        if method == "ping":
            session.deliver(routing.result(request_id, {}), request_id)
            return
        try:
            up = self.ensure_upstream()
        except RuntimeError_ as err:
            session.deliver(routing.error(request_id, routing.INTERNAL_ERROR, str(err),
                                          {"code": err.code, "reason": err.reason}), request_id)
            return
        if method == "initialize":
            session.deliver(routing.result(request_id, self.initialize_result(session, params)), request_id)
            return
        if method == "server/discover":
            # Only a 2026-07-28 (stateless) request may discover; on a handshake-era transport
            # the error makes an auto-negotiating client fall back to initialize.
            answer = routing.result(request_id, self.discover_result()) if session.transport == "stateless" \
                else routing.error(request_id, routing.METHOD_NOT_FOUND, "server/discover needs the 2026-07-28 "
                                   "Streamable HTTP transport; use initialize on this one")
            session.deliver(answer, request_id)
            return
        if method == "subscriptions/listen" and session.transport == "stateless":
            self._listen(session, request_id, params)
            return
        if method in ("resources/subscribe", "resources/unsubscribe") and self._answer_subscription(
                session, request_id, method, str(params.get("uri"))):
            return
        if method == "logging/setLevel":
            self._log_level = params.get("level") if isinstance(params.get("level"), str) else None
        upstream_id = next(self._ids)
        out, token = routing.upstream_request(message, upstream_id)
        self.pending[upstream_id] = routing.Pending(session.id, request_id, method, next(_seq), token)
        self._touch_runtime()
        try:
            up.send(out)
        except ConnectionError as err:
            self.pending.pop(upstream_id, None)
            session.deliver(routing.error(request_id, routing.CONNECTION_CLOSED, f"{self.ref}: {err}"), request_id)
        except MessageTooLarge as err:
            self.pending.pop(upstream_id, None)
            session.deliver(routing.error(request_id, jsonrpc.INVALID_REQUEST, f"Invalid Request: {err}", {
                "code": "message_too_large", "size": err.size, "limit": err.limit}), request_id)
        except Exception as err:  # whatever failed, the request is not left in flight without an answer
            self.pending.pop(upstream_id, None)
            log.exception("%s: sending %s upstream failed", self.ref, method)
            session.deliver(routing.error(request_id, routing.INTERNAL_ERROR,
                                          f"the gateway could not send the request: {type(err).__name__}"),
                            request_id)

    def in_flight(self, session: Session, request_id: RequestId) -> bool:
        """Whether the session has a request with this id still waiting for the server's answer."""
        return any(p.session == session.id and p.client_id == request_id for p in self.pending.values())

    def _listen(self, session: Session, request_id: RequestId, params: dict[str, Any]) -> None:
        """Open a 2026-07-28 `subscriptions/listen` stream: acknowledge what the server can send."""
        assert self.init_result is not None
        honored = routing.listen_filter(params.get("notifications"), self.init_result.get("capabilities"))
        session.listen_filter = honored
        session.capabilities = frozenset()  # a listen stream cannot answer server requests
        up = self._upstream if self.running else None
        for uri in honored.get("resourceSubscriptions", []):
            subscribers = self.subscriptions.get(uri, frozenset())
            self.subscriptions[uri] = subscribers | {session.id}
            if not subscribers:
                self._internal_request(up, "resources/subscribe", {"uri": uri})
        ack = {"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
               "params": {"notifications": honored}}
        session.deliver(routing.stamp_subscription(ack, request_id), request_id)

    def resume(self, session: Session, message: Message) -> None:
        """A stateless client's retry carrying `inputResponses`: answer the server's requests with them.

        The original request is still in flight upstream; from now on it answers this retry's id.
        """
        session.touch()
        request_id = message["id"]
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        responses = params.get("inputResponses") if isinstance(params.get("inputResponses"), dict) else {}
        session.modern_request_id = request_id
        for upstream_id, pending in list(self.pending.items()):
            if pending.session == session.id:
                self.pending[upstream_id] = dataclasses.replace(pending, client_id=request_id)
        up = self._upstream if self.running else None
        for key, server_request_id in list(session.awaiting_input.items()):
            self.server_requests.pop(server_request_id, None)
            answer = responses.get(key)
            self._send(up, routing.result(server_request_id, answer) if isinstance(answer, dict) else
                       routing.error(server_request_id, routing.INVALID_PARAMS, f"the client sent no input for {key}"))
        session.awaiting_input.clear()
        if not any(p.session == session.id for p in self.pending.values()):
            session.deliver(routing.error(request_id, routing.CONNECTION_CLOSED,
                                          f"the server {self.ref} exited before answering"), request_id)
            return
        unsent, session.unsent_input = session.unsent_input, []
        for server_request in unsent:
            session.deliver(server_request, request_id)

    def _answer_subscription(self, session: Session, request_id: RequestId, method: str, uri: str) -> bool:
        """Keep one upstream subscription per uri; True when the gateway answered the client itself."""
        subscribers = self.subscriptions.get(uri, frozenset())
        if method == "resources/subscribe":
            self.subscriptions[uri] = subscribers | {session.id}
            if subscribers:
                session.deliver(routing.result(request_id, {}), request_id)
                return True
            return False
        rest = subscribers - {session.id}
        if rest:
            self.subscriptions[uri] = rest
            session.deliver(routing.result(request_id, {}), request_id)
            return True
        self.subscriptions.pop(uri, None)
        return False

    def _client_notification(self, session: Session, message: Message) -> None:
        method = message["method"]
        if method == "notifications/initialized":
            return  # the upstream was initialized once, by the gateway
        up = self._upstream if self.running else None
        if method == "notifications/cancelled":
            params = message.get("params") if isinstance(message.get("params"), dict) else {}
            for upstream_id, pending in list(self.pending.items()):
                if pending.session == session.id and pending.client_id == params.get("requestId"):
                    del self.pending[upstream_id]
                    self._send(up, {**jsonrpc.clean(message), "params": {**params, "requestId": upstream_id}})
                    session.cancelled(pending.client_id)
            return
        self._send(up, jsonrpc.clean(message))

    def _client_response(self, session: Session, message: Message) -> None:
        request_id = message["id"]
        if self.server_requests.get(request_id) != session.id:
            log.debug("%s: session %s answered unknown server request %r", self.ref, session.id, request_id)
            return
        del self.server_requests[request_id]
        self._send(self._upstream if self.running else None, jsonrpc.clean(message))

    def _send(self, up: Upstream | None, message: Message) -> None:
        """Send what needs no answer; a response too large for the server becomes an error
        response (the server still learns its request was answered)."""
        if up is None:
            return
        try:
            up.send(message)
        except ConnectionError as err:
            log.info("%s: could not send %s upstream: %s", self.ref, message.get("method", "a response"), err)
        except MessageTooLarge as err:
            log.warning("%s: did not send %s upstream: %s", self.ref, message.get("method", "a response"), err)
            if routing.kind(message) == "response":
                self._send(up, routing.error(message["id"], routing.INTERNAL_ERROR, f"the client's answer: {err}"))

    # -- server -> client ------------------------------------------------------------------------
    def _on_upstream(self, message: Message) -> None:
        if routing.kind(message) == "response" and message["id"] in self._internal:
            self._internal.pop(message["id"]).set(message)
            return
        decision = routing.route(message, self.table())
        if decision.note:
            log.debug("%s: %s", self.ref, decision.note)
        if decision.finished is not None:
            self.pending.pop(decision.finished, None)
        if decision.bind is not None:
            self.server_requests[decision.bind[0]] = decision.bind[1]
        if decision.unbind is not None:
            self.server_requests.pop(decision.unbind, None)
        for delivery in decision.deliveries:
            session = self.sessions.get(delivery.session)
            if session is not None:
                session.deliver(delivery.message, delivery.related)
        for reply in decision.upstream:
            self._send(self._upstream, reply)

    def _on_upstream_closed(self, up: Upstream) -> None:
        if up is not self._upstream:
            return
        log.info("%s: the upstream connection ended", self.ref)
        for pending in self.pending.values():
            session = self.sessions.get(pending.session)
            if session is not None:
                session.deliver(routing.error(pending.client_id, routing.CONNECTION_CLOSED,
                                              f"the server {self.ref} exited before answering"), pending.client_id)
        self.pending.clear()
        self.server_requests.clear()
        for result in self._internal.values():
            result.set_exception(ConnectionError(f"{self.ref}: the server exited"))
        self._internal.clear()

    # -- the upstream ----------------------------------------------------------------------------
    def warm(self) -> None:
        """Start the server ahead of the first request (a client connecting is demand too)."""
        try:
            self.ensure_upstream()
        except RuntimeError_ as err:
            log.info("%s: %s", self.ref, err)  # the client's first request gets the same error

    def ensure_upstream(self) -> Upstream:
        """The initialized upstream, starting the server first if it is not running."""
        up = self._upstream
        if up is not None and up.alive and self._initialized:
            return up
        with self._start_lock:  # one greenlet starts it; the others wait here for the result
            up = self._upstream
            if up is not None and up.alive and self._initialized:
                return up
            if self.closed:
                raise StartFailed(f"{self.ref}: the session ended", reason="SessionEnded")
            self._initialized = False
            try:
                up = self._start()
            except RuntimeError_:
                raise
            except Exception as err:  # whatever went wrong, the client gets an answer, not a hang
                log.exception("%s: starting the upstream failed", self.ref)
                half_started, self._upstream = self._upstream, None
                if half_started is not None:
                    half_started.close()  # never two readers on one server's stdout
                raise StartFailed(f"{self.ref}: cannot reach the server: {err}", reason="UpstreamError") from err
            if self.closed:  # the (isolated) session ended while its server started
                up.close()
                raise StartFailed(f"{self.ref}: the session ended", reason="SessionEnded")
            self._upstream, self._initialized = up, True
            return up

    def _start(self) -> Upstream:
        self.runtime.request(self.ref)
        state = self.runtime.wait_ready(self.ref, self.start_timeout)
        timeout = state.server.start_timeout or self.start_timeout
        target = self.runtime.connect(self.ref, self.session_key)
        conn = self._connection(target)
        up = Upstream(str(self.ref), conn, self._on_upstream, self._on_upstream_closed, self.max_message)
        self._upstream = up
        try:
            answer = self._call(up, "initialize", {
                "protocolVersion": UPSTREAM_PROTOCOL_VERSION, "capabilities": UPSTREAM_CAPABILITIES,
                "clientInfo": GATEWAY_INFO}, timeout)
        except (ConnectionError, TimeoutError) as err:
            up.close()
            self._upstream = None
            raise StartFailed(f"{self.ref} did not complete initialize: {err}{self._last_log()}",
                              reason="InitializeFailed") from err
        if "error" in answer or not isinstance(answer.get("result"), dict):
            up.close()
            self._upstream = None
            raise StartFailed(f"{self.ref} refused initialize: {answer.get('error')}", reason="InitializeFailed")
        self.init_result = answer["result"]
        up.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if self.restarts:
            self._renew(up)
        self.restarts += 1
        log.info("%s: upstream initialized (%s)", self.ref, self.init_result.get("serverInfo"))
        return up

    def _connection(self, target: StdioConnection | HttpEndpoint) -> StdioConnection:
        if isinstance(target, HttpEndpoint):
            from gateway.upstreams.http import open_http_upstream  # noqa: PLC0415 - only HTTP servers need it

            return open_http_upstream(target, self.http_settings)
        return target

    def _last_log(self) -> str:
        try:
            lines = list(self.runtime.logs(self.ref, follow=False))[-5:]
        except RuntimeError_:
            return ""
        return ("; last log lines: " + " | ".join(lines)) if lines else ""

    def _renew(self, up: Upstream) -> None:
        """After a restart, restore what sessions set on the previous upstream."""
        if self._log_level:
            self._internal_request(up, "logging/setLevel", {"level": self._log_level})
        for uri in self.subscriptions:
            self._internal_request(up, "resources/subscribe", {"uri": uri})

    def _call(self, up: Upstream, method: str, params: dict[str, Any], timeout: float) -> Message:
        upstream_id = next(self._ids)
        waiter: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._internal[upstream_id] = waiter
        up.send({"jsonrpc": "2.0", "id": upstream_id, "method": method, "params": params})
        try:
            return waiter.get(timeout=timeout)
        except gevent.Timeout as err:
            raise TimeoutError(f"no answer to {method} within {timeout:g}s") from err
        finally:
            self._internal.pop(upstream_id, None)

    def _internal_request(self, up: Upstream | None, method: str, params: dict[str, Any]) -> None:
        """A request of the gateway's own whose answer nobody waits for."""
        if up is None:
            return
        upstream_id = next(self._ids)
        self._internal[upstream_id] = gevent.event.AsyncResult()
        gevent.spawn_later(INTERNAL_TIMEOUT, self._internal.pop, upstream_id, None)  # a server that never answers
        self._send(up, {"jsonrpc": "2.0", "id": upstream_id, "method": method, "params": params})

    def close(self) -> None:
        """End the upstream for good (an isolated session ended, or the gateway stops)."""
        self.closed = True
        up, self._upstream = self._upstream, None
        if up is not None:
            up.close()

    # -- answers the gateway gives itself --------------------------------------------------------
    def initialize_result(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        """The client's `initialize` answered from the upstream's, at a version the client asked for."""
        assert self.init_result is not None
        asked = params.get("protocolVersion")
        version = asked if asked in HANDSHAKE_VERSIONS else self.init_result.get("protocolVersion",
                                                                                 UPSTREAM_PROTOCOL_VERSION)
        session.protocol_version = str(version)
        session.capabilities = routing.client_capabilities(params.get("capabilities"))
        session.client_info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
        return {**self.init_result, "protocolVersion": version}

    def discover_result(self) -> dict[str, Any]:
        """`server/discover` (2026-07-28) answered from the upstream's initialize result."""
        assert self.init_result is not None
        out: dict[str, Any] = {
            "supportedVersions": list(MODERN_VERSIONS),
            "capabilities": self.init_result.get("capabilities", {}),
            "resultType": "complete", "ttlMs": 0, "cacheScope": "private",
        }
        if self.init_result.get("instructions"):
            out["instructions"] = self.init_result["instructions"]
        if isinstance(self.init_result.get("serverInfo"), dict):
            out["_meta"] = {"io.modelcontextprotocol/serverInfo": self.init_result["serverInfo"]}
        return out


def expirable(session: Session) -> bool:
    """A Streamable HTTP session with no stream open: only its client's next request shows it is
    still wanted. (An SSE session ends with its stream; a stateless one with its request.)"""
    return session.transport == "streamable-http" and not session.main_attached and not session.streams


class Hub:
    """Every client session and bridge of this gateway process."""

    def __init__(self, runtime: Runtime, start_timeout: float = 120.0, http_settings: Any = None, *,
                 max_sessions: int = 1000, session_timeout: float | None = None,
                 max_message: int | None = None) -> None:
        self.runtime = runtime
        self.start_timeout = start_timeout
        self.http_settings = http_settings
        self.max_sessions = max_sessions  # per server
        self.configured_timeout = session_timeout  # None: each server's own (limits.session_timeout_for)
        self.max_message = max_message
        self.sessions: dict[str, Session] = {}
        self._by_server: dict[ServerRef, dict[str, Session]] = {}  # the same sessions, by server
        self.bridges: dict[tuple[ServerRef, str | None], Bridge] = {}
        self.parked: dict[str, Session] = {}  # stateless sessions waiting for a retry, by requestState

    def open(self, ref: ServerRef, transport: str, isolation: str = "shared") -> Session:
        """A new session on the server's bridge (its own bridge under `isolation: session`).

        SessionLimitReached when the server holds `max_sessions` (stateless requests are not
        sessions that stay: they do not count).
        """
        if transport != "stateless":
            self._admit(ref)
        session = Session(new_session_id(), ref, transport)
        isolated = isolation == "session" and getattr(self.runtime, "isolates_sessions", False)
        key = (ref, session.id if isolated else None)
        bridge = self.bridges.get(key)
        if bridge is None:
            bridge = Bridge(self.runtime, ref, session_key=key[1], start_timeout=self.start_timeout,
                            http_settings=self.http_settings, max_message=self.max_message,
                            count_sessions=lambda: sum(len(b.sessions) for b in self.bridges_of(ref)))
            self.bridges[key] = bridge
        bridge.attach(session)
        if transport != "stateless":
            self.sessions[session.id] = session
            self._by_server.setdefault(ref, {})[session.id] = session
        return session

    def _admit(self, ref: ServerRef) -> None:
        held = self._by_server.get(ref, {})
        if len(held) < self.max_sessions:
            return
        timeout = self.session_timeout(ref)
        now = time.monotonic()
        self._close_stale([s for s in held.values() if expirable(s)], timeout, now)  # what is due goes first
        idle_for = [now - s.touched_at for s in held.values() if expirable(s)]
        admission = limits.admit_session(len(held), self.max_sessions, idle_for, timeout)
        if not admission.admitted:
            raise SessionLimitReached(ref, self.max_sessions, admission.retry_after)

    def session_timeout(self, ref: ServerRef) -> float:
        """Seconds an unused session of this server lives."""
        try:
            idle = self.runtime.get(ref).server.idle_timeout
        except RuntimeError_:
            idle = None  # the server went away: its sessions get the default
        return limits.session_timeout_for(self.configured_timeout, idle)

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def park(self, session: Session) -> None:
        """Keep a stateless session whose request waits for the client's input (requestState = its id)."""
        self.parked[session.id] = session

    def unpark(self, request_state: str) -> Session | None:
        return self.parked.pop(request_state, None)

    def close(self, session: Session) -> None:
        """End a session: wake its streams, detach it from its bridge."""
        self.sessions.pop(session.id, None)
        held = self._by_server.get(session.ref)
        if held is not None:
            held.pop(session.id, None)
            if not held:
                del self._by_server[session.ref]
        self.parked.pop(session.id, None)
        session.end()
        bridge = session.bridge
        if bridge is not None:
            bridge.detach(session)
            if bridge.session_key is not None:
                self.bridges.pop((bridge.ref, bridge.session_key), None)

    def expire(self) -> int:
        """Close the Streamable HTTP sessions nobody used for their server's session timeout and
        that hold no stream, and parked requests whose client never came back."""
        now = time.monotonic()
        closed = 0
        for ref, held in list(self._by_server.items()):
            closed += self._close_stale([s for s in held.values() if expirable(s)], self.session_timeout(ref), now)
        return closed + self._close_stale(list(self.parked.values()), PARKED_TIMEOUT, now)

    def _close_stale(self, candidates: list[Session], timeout: float, now: float) -> int:
        stale = [s for s in candidates if now - s.touched_at > timeout]
        for session in stale:
            log.info("session %s on %s expired after %.0fs unused", session.id, session.ref, now - session.touched_at)
            self.close(session)
        return len(stale)

    def bridges_of(self, ref: ServerRef) -> Iterator[Bridge]:
        return (b for (r, _), b in list(self.bridges.items()) if r == ref)

    def sessions_of(self, ref: ServerRef) -> int:
        return len(self._by_server.get(ref, {}))

    def heartbeat(self) -> int:
        """Record activity for servers with calls in flight; returns how many were touched.

        The idle timeout counts from the last activity, and a call that is still running is
        activity: without this a tool call longer than `idleTimeout` would lose its server.
        """
        busy = [b for b in list(self.bridges.values()) if b.pending]
        for bridge in busy:
            bridge._touch_runtime()
        return len(busy)

    def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            self.close(session)
        for bridge in list(self.bridges.values()):
            bridge.close()
