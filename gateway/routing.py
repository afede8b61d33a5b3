"""Where each message between many client sessions and one upstream server goes: pure decisions.

One upstream MCP session (a stdio process, or one session to an HTTP server) serves many client
sessions. Client requests are sent upstream under fresh ids (and progress tokens), so answers
cannot collide; what comes back is routed by the tables the bridge keeps:

* a response goes to the session whose request it answers, under that request's own id;
* a progress notification goes to the session whose request carried the token;
* `notifications/cancelled` for a server-to-client request goes to the session that got it;
* `*/list_changed` goes to every session; `resources/updated` to the sessions subscribed to it;
* a server-to-client request (sampling, elicitation, roots, ...) carries nothing that ties it to
  the client request that caused it (not over stdio), so it goes to the one session with calls
  in flight, never to a guess. From the first one made during a call on, the bridge lets calls
  of different sessions take turns on this upstream (`take_turns`), so that there is one such
  session. With no call in flight, calls of several sessions in flight (before turns were
  taken), or a session that did not declare the capability the request needs, nobody sees it:
  the server gets an error. `ping` is answered by the gateway itself;
* other notifications (logging above all) go likewise to the one session with calls in flight;
  while several sessions have calls in flight nobody gets them (and turns are taken from then
  on); nobody gets them while the server works only on a request of the gateway's own
  (subscribe, initialize); with nothing in flight they go to every session: they describe the
  server, not one client. A log message reaches a session only at or above the level that
  session asked for (`log_level`).

Nothing here does I/O: `route()` returns a `Decision` and the bridge carries it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.protocol.jsonrpc import METHOD_NOT_FOUND, Message, RequestId, clean, error, kind, result
from gateway.protocol.stateless import strip_meta

# The client capability each server-to-client request needs.
CAPABILITY_FOR = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}


@dataclass(frozen=True)
class Pending:
    """A client request in flight upstream, under the upstream id it is keyed by."""

    session: str
    client_id: RequestId
    method: str
    seq: int  # the order requests were sent in: the highest is the most recent
    progress_token: RequestId | None = None  # the client's own token, if it asked for progress


class SessionView(Protocol):
    """What routing reads of a client session (the bridge's sessions are read in place)."""

    @property
    def id(self) -> str: ...

    @property
    def capabilities(self) -> frozenset[str]: ...  # sampling, elicitation, roots

    @property
    def log_level(self) -> str | None: ...  # what it asked with logging/setLevel (None: everything)


@dataclass(frozen=True)
class Table:
    """What the bridge knows; `route()` only reads it."""

    sessions: Mapping[str, SessionView] = field(default_factory=dict)
    pending: Mapping[RequestId, Pending] = field(default_factory=dict)  # by upstream id (= its progress token)
    server_requests: Mapping[RequestId, str] = field(default_factory=dict)  # server request id -> session
    subscriptions: Mapping[str, frozenset[str]] = field(default_factory=dict)  # resource uri -> sessions
    internal: bool = False  # a request of the gateway's own (initialize, subscribe, ...) is in flight


@dataclass(frozen=True)
class Delivery:
    session: str
    message: Message
    related: RequestId | None = None  # the client request this message belongs to (picks the stream)


@dataclass(frozen=True)
class Decision:
    deliveries: tuple[Delivery, ...] = ()
    upstream: tuple[Message, ...] = ()  # messages the gateway answers the server with
    finished: RequestId | None = None  # upstream id of a client request that got its answer
    bind: tuple[RequestId, str] | None = None  # a server request now belongs to this session
    unbind: RequestId | None = None  # a server request that is over
    # The upstream sent what only the one session with calls in flight may get (a server request,
    # or a notification while several were): calls of different sessions must take turns on it.
    take_turns: bool = False
    note: str = ""  # why, for the debug log


def in_flight(table: Table) -> set[str]:
    """The sessions with client requests in flight upstream."""
    return {p.session for p in table.pending.values()}


def _progress_target(table: Table, token: Any) -> Pending | None:
    pending = table.pending.get(token) if isinstance(token, (str, int)) else None
    return pending if pending is not None and pending.progress_token is not None else None


def route(message: Message, table: Table) -> Decision:
    """Decide what to do with one message from the upstream server."""
    what = kind(message)
    if what == "response":
        return _route_response(message, table)
    if what == "request":
        return _route_server_request(message, table)
    if what == "notification":
        return _route_notification(message, table)
    return Decision(note=f"dropped a message that is not JSON-RPC 2.0: {str(message)[:200]}")


def _route_response(message: Message, table: Table) -> Decision:
    upstream_id = message["id"]
    pending = table.pending.get(upstream_id) if isinstance(upstream_id, (str, int)) else None
    if pending is None:
        return Decision(note=f"dropped a response to no request in flight (id {upstream_id!r}; cancelled?)")
    answer = {**message, "id": pending.client_id}
    return Decision(deliveries=(Delivery(pending.session, answer, pending.client_id),), finished=upstream_id)


def _route_server_request(message: Message, table: Table) -> Decision:
    method = message["method"]
    request_id = message["id"]
    if method == "ping":
        return Decision(upstream=(result(request_id, {}),), note="answered ping")
    callers = in_flight(table)
    if len(callers) != 1:
        why = "calls of several client sessions are in flight" if callers else "no client call is in flight"
        return Decision(upstream=(error(request_id, METHOD_NOT_FOUND, f"{method} cannot be attributed to one "
                                        f"client session: {why}"),),
                        take_turns=bool(callers), note=f"refused {method}: {why}")
    (target,) = callers
    needed = CAPABILITY_FOR.get(method)
    if needed is not None and needed not in table.sessions[target].capabilities:
        return Decision(
            upstream=(error(request_id, METHOD_NOT_FOUND, f"the client did not declare the {needed} capability"),),
            take_turns=True, note=f"session {target} cannot answer {method}",
        )
    return Decision(deliveries=(Delivery(target, message, _related_request(table, target)),), bind=(request_id, target),
                    take_turns=True)


def _related_request(table: Table, session: str) -> RequestId | None:
    """The client id of the session's most recent request in flight, if any."""
    mine = [p for p in table.pending.values() if p.session == session]
    return max(mine, key=lambda p: p.seq).client_id if mine else None


def _route_notification(message: Message, table: Table) -> Decision:
    method: str = message["method"]
    params = message.get("params") if isinstance(message.get("params"), dict) else {}
    if method == "notifications/progress":
        pending = _progress_target(table, params.get("progressToken"))
        if pending is None:
            return Decision(note=f"dropped progress for an unknown token {params.get('progressToken')!r}")
        out = {**message, "params": {**params, "progressToken": pending.progress_token}}
        return Decision(deliveries=(Delivery(pending.session, out, pending.client_id),))
    if method == "notifications/cancelled":
        request_id = params.get("requestId")
        session = table.server_requests.get(request_id) if isinstance(request_id, (str, int)) else None
        if session is None:
            return Decision(note=f"dropped a cancellation of unknown request {request_id!r}")
        return Decision(deliveries=(Delivery(session, message),), unbind=request_id)
    if method.endswith("/list_changed"):
        return Decision(deliveries=tuple(Delivery(s, message) for s in sorted(table.sessions)))
    if method == "notifications/resources/updated":
        subscribers = table.subscriptions.get(str(params.get("uri")), frozenset())
        return Decision(deliveries=tuple(Delivery(s, message) for s in sorted(subscribers) if s in table.sessions))
    callers = in_flight(table)
    if len(callers) > 1:
        return Decision(take_turns=True, note=f"dropped {method}: calls of several client sessions are in flight")
    if callers:
        (target,) = callers
        targets = [target]
    elif table.internal:
        return Decision(note=f"dropped {method} sent while answering the gateway's own request")
    else:
        targets = sorted(table.sessions)
    if method == "notifications/message":
        level = params.get("level")
        targets = [t for t in targets if wants(table.sessions[t].log_level, level)]
    return Decision(deliveries=tuple(Delivery(t, message, _related_request(table, t)) for t in targets))


# logging/setLevel's levels, least severe first (syslog's, as MCP names them).
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def wants(session_level: str | None, message_level: Any) -> bool:
    """Whether a session that asked for `session_level` gets a log message at `message_level`."""
    if session_level not in LOG_LEVELS or message_level not in LOG_LEVELS:
        return True
    return LOG_LEVELS.index(message_level) >= LOG_LEVELS.index(session_level)


def upstream_log_level(levels: Any) -> str | None:
    """The level the upstream runs at: the most verbose any session asked for (None: none did)."""
    known = [level for level in levels if level in LOG_LEVELS]
    return min(known, key=LOG_LEVELS.index) if known else None


def upstream_request(message: Message, upstream_id: int) -> tuple[Message, RequestId | None]:
    """A client request as sent upstream: new id, progress token replaced by that id, nothing but
    the members JSON-RPC defines.

    Returns it with the client's own progress token (None when it asked for no progress).
    """
    params = strip_meta(message.get("params"))
    token = None
    if isinstance(params, dict) and isinstance(params.get("_meta"), dict) and "progressToken" in params["_meta"]:
        token = params["_meta"]["progressToken"]
        params = {**params, "_meta": {**params["_meta"], "progressToken": upstream_id}}
    out = {**clean(message), "id": upstream_id}
    if params is None:
        out.pop("params", None)
    else:
        out["params"] = params
    return out, token
