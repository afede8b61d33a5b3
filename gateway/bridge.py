"""The session bridge: many client sessions on one upstream MCP session.

A `Bridge` owns the upstream of one running server (or, for an isolated server, of one of its
instances, a client session's own). It initializes the upstream once, declaring the client
capabilities the gateway can route (sampling, elicitation, roots), and answers every client's
`initialize` from that cached result; the client's `notifications/initialized` is swallowed.
Client requests go upstream under fresh ids; `gateway.routing.route()` decides where each
upstream message goes and the bridge carries the decision out (see routing.py for the rules).

When the upstream ends (crash, shutdown, idle stop) every request in flight gets a JSON-RPC
error at once, and the next request starts the server again (`runtime.request`, `wait_ready`,
`connect`) and re-initializes it; client sessions live on, and resource subscriptions are
renewed. A session that goes away leaves nothing behind: its requests in flight are cancelled
upstream, server requests waiting on it are answered with an error, its subscriptions dropped.

A 2026-07-28 (stateless) request is a session of one request (gateway.protocol.stateless):
what the server asks of the client meanwhile becomes that request's answer, and the client's
retry carrying the input is `resume()`d here; a `subscriptions/listen` request is a session that
only receives the change notifications it asked for. A client message larger than a server may
be sent (`max_message`) never reaches it: its sender gets an error.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock

from gateway import routing
from gateway.protocol import stateless
from gateway.protocol.jsonrpc import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    Message,
    RequestId,
    clean,
    error,
    kind,
    result,
)
from gateway.protocol.versions import (
    GATEWAY_INFO,
    HANDSHAKE_VERSIONS,
    UPSTREAM_CAPABILITIES,
    UPSTREAM_PROTOCOL_VERSION,
    client_capabilities,
)
from gateway.runtime import HttpEndpoint, Runtime, RuntimeError_, ServerRef, StartFailed, StdioConnection
from gateway.session import Session, next_seq
from gateway.upstreams.port import MessageTooLarge, Upstream
from gateway.upstreams.stdio import StdioUpstream
from nmcp.model.vocabulary import Reason

log = logging.getLogger(__name__)

INTERNAL_TIMEOUT = 30.0  # how long the answer to a request of the gateway's own is waited for
# A request is activity the runtime's idle timeout counts from; telling it once a second is
# enough for a timeout counted in minutes, and spares every call the bookkeeping.
TOUCH_INTERVAL = 1.0


class Bridge:
    """The upstream of one server (or one isolated session) and the sessions it serves."""

    def __init__(self, runtime: Runtime, ref: ServerRef, *, instance: str | None = None, per_session: bool = True,
                 http_settings: Any = None,
                 count_sessions: Callable[[], int] | None = None, max_message: int | None = None) -> None:
        self.runtime = runtime
        self.max_message = max_message  # the longest line the server is sent (MessageTooLarge past it)
        self.count_sessions = count_sessions  # the server's sessions on every bridge (isolated ones too)
        self.http_settings = http_settings  # gateway.upstreams.http.UpstreamSettings for HTTP servers
        self.ref = ref
        self.instance = instance  # the instance key, for an isolated server's upstream
        # A session's instance ends with it; an identity's outlives its sessions (per-user state)
        # until unused for the idle timeout (Hub.expire).
        self.per_session = per_session
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
        self._touched_at = 0.0  # when the runtime last heard of activity (monotonic)
        # Once the upstream has sent what only the one session in flight may get while calls of
        # several sessions were in flight, calls of different sessions take turns on it.
        self.exclusive = False
        self._turn = gevent.lock.Semaphore()
        self._holder: str | None = None  # the session whose turn it is
        self._settled = gevent.event.Event()  # pending requests of some session ended

    # -- the table route() reads ---------------------------------------------------------------
    def table(self) -> routing.Table:
        return routing.Table(
            sessions=self.sessions, pending=self.pending, server_requests=self.server_requests,
            subscriptions=self.subscriptions, internal=bool(self._internal),
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
        self._settle()
        level = routing.upstream_log_level(s.log_level for s in self.sessions.values())
        if level is not None and level != self._log_level:  # the most verbose session left
            self._log_level = level
            self._internal_request(up, "logging/setLevel", {"level": level})
        for request_id, owner in list(self.server_requests.items()):
            if owner == session.id:
                del self.server_requests[request_id]
                self._send(up, error(request_id, INTERNAL_ERROR, "the client session ended"))
        for uri, subscribers in list(self.subscriptions.items()):
            if session.id in subscribers:
                rest = subscribers - {session.id}
                if rest:
                    self.subscriptions[uri] = rest
                else:
                    del self.subscriptions[uri]
                    self._internal_request(up, "resources/unsubscribe", {"uri": uri})
        if self.instance is not None and self.per_session:
            self.close()  # a session's instance lives exactly as long as the session
        self._touch_runtime()

    @property
    def touched_at(self) -> float:
        """When the runtime last heard of this upstream's activity (monotonic)."""
        return self._touched_at

    def _touch_runtime(self) -> None:
        self._touched_at = time.monotonic()
        sessions = self.count_sessions() if self.count_sessions is not None else len(self.sessions)
        try:
            self.runtime.touch(self.ref, sessions, self.instance)
        except RuntimeError_ as err:
            log.debug("%s: touch failed: %s", self.ref, err)

    # -- client -> server ------------------------------------------------------------------------
    def handle(self, session: Session, message: Message) -> None:
        """One message from a client session. May block (the greenlet) while the server starts."""
        session.touch()
        what = kind(message)
        if what == "request":
            self._client_request(session, message)
        elif what == "notification":
            self._client_notification(session, message)
        elif what == "response":
            self._client_response(session, message)
        else:  # the transports validate first (gateway.jsonrpc): this is a bug, still answered
            session.deliver(error(None, INVALID_REQUEST, "not a JSON-RPC 2.0 message"))

    def _client_request(self, session: Session, message: Message) -> None:
        method = message["method"]
        request_id = message["id"]
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        if method == "ping":
            session.deliver(result(request_id, {}), request_id)
            return
        try:
            up = self.ensure_upstream()
        except RuntimeError_ as err:
            session.deliver(error(request_id, INTERNAL_ERROR, str(err),
                                          {"code": err.code, "reason": err.reason}), request_id)
            return
        if method == "initialize":
            session.deliver(result(request_id, self.initialize_result(session, params)), request_id)
            return
        if method == "server/discover":
            # Only a 2026-07-28 (stateless) request may discover; on a handshake-era transport
            # the error makes an auto-negotiating client fall back to initialize.
            answer = result(request_id, stateless.discover_result(self.init_result)) \
                if session.transport == "stateless" \
                else error(request_id, METHOD_NOT_FOUND, "server/discover needs the 2026-07-28 "
                                   "Streamable HTTP transport; use initialize on this one")
            session.deliver(answer, request_id)
            return
        if method == "subscriptions/listen" and session.transport == "stateless":
            self._listen(session, request_id, params)
            return
        if method in ("resources/subscribe", "resources/unsubscribe") and self._answer_subscription(
                session, request_id, method, str(params.get("uri"))):
            return
        if method == "logging/setLevel" and params.get("level") in routing.LOG_LEVELS:
            session.log_level = params["level"]
            level = routing.upstream_log_level(s.log_level for s in self.sessions.values())
            if level == self._log_level:  # the upstream sends enough already: the gateway filters
                session.deliver(result(request_id, {}), request_id)
                return
            self._log_level = level
            message = {**message, "params": {**params, "level": level}}
        if self.exclusive and not self._take_turn(session):
            return
        upstream_id = next(self._ids)
        out, token = routing.upstream_request(message, upstream_id)
        self.pending[upstream_id] = routing.Pending(session.id, request_id, method, next_seq(), token)
        if time.monotonic() - self._touched_at >= TOUCH_INTERVAL:
            self._touch_runtime()
        try:
            up.send(out)
            return
        except ConnectionError as err:
            self.pending.pop(upstream_id, None)
            session.deliver(error(request_id, CONNECTION_CLOSED, f"{self.ref}: {err}"), request_id)
        except MessageTooLarge as err:
            self.pending.pop(upstream_id, None)
            session.deliver(error(request_id, INVALID_REQUEST, f"Invalid Request: {err}", {
                "code": "message_too_large", "size": err.size, "limit": err.limit}), request_id)
        except Exception as err:  # whatever failed, the request is not left in flight without an answer
            self.pending.pop(upstream_id, None)
            log.exception("%s: sending %s upstream failed", self.ref, method)
            session.deliver(error(request_id, INTERNAL_ERROR,
                                  f"the gateway could not send the request: {type(err).__name__}"), request_id)
        self._settle()

    def _take_turn(self, session: Session) -> bool:
        """Wait until no other session has calls in flight, then hold the upstream for this one
        (its own calls may overlap); False when the session ended meanwhile."""
        if self._holder == session.id:
            return True
        self._turn.acquire()  # sessions wait in the order they came
        while any(p.session != session.id for p in self.pending.values()):
            self._settled.clear()
            self._settled.wait()
        self._holder = session.id
        if session.closed:
            self._settle()
            return False
        return True

    def _settle(self) -> None:
        """Requests ended: the session holding the turn gives it up once none of its own is left."""
        self._settled.set()
        if self._holder is not None and not any(p.session == self._holder for p in self.pending.values()):
            self._holder = None
            self._turn.release()

    def in_flight(self, session: Session, request_id: RequestId) -> bool:
        """Whether the session has a request with this id still waiting for the server's answer."""
        return any(p.session == session.id and p.client_id == request_id for p in self.pending.values())

    def _listen(self, session: Session, request_id: RequestId, params: dict[str, Any]) -> None:
        """Open a 2026-07-28 `subscriptions/listen` stream: acknowledge what the server can send."""
        assert self.init_result is not None
        assert session.stateless is not None
        honored = stateless.listen_filter(params.get("notifications"), self.init_result.get("capabilities"))
        session.stateless.listen = honored
        session.capabilities = frozenset()  # a listen stream cannot answer server requests
        up = self._upstream if self.running else None
        for uri in honored.get("resourceSubscriptions", []):
            subscribers = self.subscriptions.get(uri, frozenset())
            self.subscriptions[uri] = subscribers | {session.id}
            if not subscribers:
                self._internal_request(up, "resources/subscribe", {"uri": uri})
        session.deliver(stateless.listen_ack(honored, request_id), request_id)

    def resume(self, session: Session, message: Message) -> None:
        """A stateless client's retry carrying `inputResponses`: answer the server's requests with them.

        The original request is still in flight upstream; from now on it answers this retry's id.
        """
        assert session.stateless is not None
        session.touch()
        request_id = message["id"]
        answers = session.stateless.answers(message)
        for upstream_id, pending in list(self.pending.items()):
            if pending.session == session.id:
                self.pending[upstream_id] = dataclasses.replace(pending, client_id=request_id)
        up = self._upstream if self.running else None
        for answer in answers:
            self.server_requests.pop(answer["id"], None)
            self._send(up, answer)
        if not any(p.session == session.id for p in self.pending.values()):
            session.deliver(error(request_id, CONNECTION_CLOSED,
                                          f"the server {self.ref} exited before answering"), request_id)
            return
        unsent, session.stateless.unsent_input = session.stateless.unsent_input, []
        for server_request in unsent:
            session.deliver(server_request, request_id)

    def _answer_subscription(self, session: Session, request_id: RequestId, method: str, uri: str) -> bool:
        """Keep one upstream subscription per uri; True when the gateway answered the client itself."""
        subscribers = self.subscriptions.get(uri, frozenset())
        if method == "resources/subscribe":
            self.subscriptions[uri] = subscribers | {session.id}
            if subscribers:
                session.deliver(result(request_id, {}), request_id)
                return True
            return False
        rest = subscribers - {session.id}
        if rest:
            self.subscriptions[uri] = rest
            session.deliver(result(request_id, {}), request_id)
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
                    self._send(up, {**clean(message), "params": {**params, "requestId": upstream_id}})
                    session.cancelled(pending.client_id)
            self._settle()
            return
        self._send(up, clean(message))

    def _client_response(self, session: Session, message: Message) -> None:
        request_id = message["id"]
        if self.server_requests.get(request_id) != session.id:
            log.debug("%s: session %s answered unknown server request %r", self.ref, session.id, request_id)
            return
        del self.server_requests[request_id]
        self._send(self._upstream if self.running else None, clean(message))

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
            if kind(message) == "response":
                self._send(up, error(message["id"], INTERNAL_ERROR, f"the client's answer: {err}"))

    # -- server -> client ------------------------------------------------------------------------
    def _on_upstream(self, message: Message) -> None:
        if kind(message) == "response" and message["id"] in self._internal:
            self._internal.pop(message["id"]).set(message)
            return
        decision = routing.route(message, self.table())
        if decision.note:
            log.debug("%s: %s", self.ref, decision.note)
        if decision.finished is not None:
            self.pending.pop(decision.finished, None)
            self._settle()
        if decision.take_turns and not self.exclusive:
            self.exclusive = True
            log.info("%s: the server sends what belongs to the one client call in flight (%s): from now on calls "
                     "of different sessions take turns on it", self.ref, message.get("method"))
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
                session.deliver(error(pending.client_id, CONNECTION_CLOSED,
                                              f"the server {self.ref} exited before answering"), pending.client_id)
        self.pending.clear()
        self._settle()
        self.server_requests.clear()
        for waiter in self._internal.values():
            waiter.set_exception(ConnectionError(f"{self.ref}: the server exited"))
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
                raise StartFailed(f"{self.ref}: the session ended", reason=Reason.SESSION_ENDED)
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
                raise StartFailed(f"{self.ref}: cannot reach the server: {err}", reason=Reason.UPSTREAM_ERROR) from err
            if self.closed:  # the (isolated) session ended while its server started
                up.close()
                raise StartFailed(f"{self.ref}: the session ended", reason=Reason.SESSION_ENDED)
            self._upstream, self._initialized = up, True
            return up

    def _start(self) -> Upstream:
        self.runtime.request(self.ref, self.instance)
        # A client is held for the server's own start timeout: as long as the pool keeps its request
        # waiting for capacity (hooks/lifecycle.py), and as long as a started server may take.
        timeout = self.runtime.get(self.ref).server.start_timeout
        self.runtime.wait_ready(self.ref, timeout, self.instance)
        target = self.runtime.connect(self.ref, self.instance)
        up = self._open(target)
        self._upstream = up
        try:
            answer = self._call(up, "initialize", {
                "protocolVersion": UPSTREAM_PROTOCOL_VERSION, "capabilities": UPSTREAM_CAPABILITIES,
                "clientInfo": GATEWAY_INFO}, timeout)
        except (ConnectionError, TimeoutError) as err:
            up.close()
            self._upstream = None
            raise StartFailed(f"{self.ref} did not complete initialize: {err}{self._last_log()}",
                              reason=Reason.INITIALIZE_FAILED) from err
        if "error" in answer or not isinstance(answer.get("result"), dict):
            up.close()
            self._upstream = None
            raise StartFailed(f"{self.ref} refused initialize: {answer.get('error')}", reason=Reason.INITIALIZE_FAILED)
        self.init_result = answer["result"]
        up.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if self.restarts:
            self._renew(up)
        self.restarts += 1
        log.info("%s: upstream initialized (%s)", self.ref, self.init_result.get("serverInfo"))
        return up

    def _open(self, target: StdioConnection | HttpEndpoint) -> Upstream:
        if isinstance(target, HttpEndpoint):
            from gateway.upstreams.http import open_http_upstream  # noqa: PLC0415 - only HTTP servers need it

            return open_http_upstream(target, self.http_settings, self._on_upstream, self._on_upstream_closed,
                                      self.max_message)
        return StdioUpstream(str(self.ref), target, self._on_upstream, self._on_upstream_closed, self.max_message)

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
        """End the upstream for good (an instance's sessions ended, or the gateway stops)."""
        self.closed = True
        if self.instance is not None:
            # Released first: the instance's Pod goes now, not at its idle timeout, and closing
            # the connection below must not read as a crash to restart.
            try:
                self.runtime.release(self.ref, self.instance)
            except RuntimeError_ as err:
                log.info("%s: releasing instance %s failed: %s", self.ref, self.instance, err)
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
        session.capabilities = client_capabilities(params.get("capabilities"))
        session.client_info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
        return {**self.init_result, "protocolVersion": version}
