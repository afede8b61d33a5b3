"""Where each message between many client sessions and one upstream server goes: pure decisions.

One upstream MCP session (a stdio process, or one session to an HTTP server) serves many client
sessions. Client requests are sent upstream under fresh ids (and progress tokens), so answers
cannot collide; what comes back is routed by the tables the bridge keeps:

* a response goes to the session whose request it answers, under that request's own id;
* a progress notification goes to the session whose request carried the token;
* `notifications/cancelled` for a server-to-client request goes to the session that got it;
* `*/list_changed` goes to every session; `resources/updated` to the sessions subscribed to it;
* a server-to-client request (sampling, elicitation, roots, ...) carries nothing that ties it to
  the client request that caused it (not over stdio), so it goes to the *affinity target*: the
  session with the most recent request in flight, else the most recently active session. A
  session that did not declare the capability the request needs gets nothing; the server gets an
  error instead. `ping` is answered by the gateway itself;
* other notifications (logging) go to the affinity target while a request is in flight, to
  nobody while the server works on a request of the gateway's own (subscribe, initialize), and
  to every session otherwise: they describe the server, not one client.

Nothing here does I/O: `route()` returns a `Decision` and the bridge carries it out.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The message grammar (kind, error, the JSON-RPC error codes) is gateway.jsonrpc's; re-exported here
# for the bridge and the transports, which route.
from gateway.jsonrpc import INVALID_PARAMS, Message, RequestId, clean, error, kind

# MCP error codes the gateway itself produces.
METHOD_NOT_FOUND = -32601
HEADER_MISMATCH = -32020  # 2026-07-28: a routing header disagrees with the body
UNSUPPORTED_PROTOCOL_VERSION = -32022
INTERNAL_ERROR = -32603
CONNECTION_CLOSED = -32000
REQUEST_CANCELLED = -32800

# The client capability each server-to-client request needs.
CAPABILITY_FOR = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}

# Keys of `_meta` the 2026-07-28 revision reserves for per-request negotiation: the gateway
# answers those itself and never passes them to an upstream that negotiated with `initialize`.
MODERN_META_PREFIX = "io.modelcontextprotocol/"


def result(request_id: RequestId, value: Mapping[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "id": request_id, "result": dict(value)}


@dataclass(frozen=True)
class Pending:
    """A client request in flight upstream, under the upstream id it is keyed by."""

    session: str
    client_id: RequestId
    method: str
    seq: int  # the order requests were sent in: the highest is the most recent
    progress_token: RequestId | None = None  # the client's own token, if it asked for progress


@dataclass(frozen=True)
class SessionView:
    id: str
    capabilities: frozenset[str]  # sampling, elicitation, roots
    last_active: int  # a sequence number, higher is more recent


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
    note: str = ""  # why, for the debug log


def affinity_target(table: Table) -> str | None:
    """The session a message without an owner most likely belongs to."""
    if table.pending:
        return max(table.pending.values(), key=lambda p: p.seq).session
    if table.sessions:
        return max(table.sessions.values(), key=lambda s: s.last_active).id
    return None


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
    target = affinity_target(table)
    if target is None:
        return Decision(upstream=(error(request_id, METHOD_NOT_FOUND, f"no client session can answer {method}"),),
                        note=f"no session for {method}")
    needed = CAPABILITY_FOR.get(method)
    if needed is not None and needed not in table.sessions[target].capabilities:
        return Decision(
            upstream=(error(request_id, METHOD_NOT_FOUND, f"the client did not declare the {needed} capability"),),
            note=f"session {target} cannot answer {method}",
        )
    related = _related_request(table, target)
    return Decision(deliveries=(Delivery(target, message, related),), bind=(request_id, target))


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
    if table.pending:
        target = affinity_target(table)
        assert target is not None
        return Decision(deliveries=(Delivery(target, message, _related_request(table, target)),))
    if table.internal:
        return Decision(note=f"dropped {method} sent while answering the gateway's own request")
    return Decision(deliveries=tuple(Delivery(s, message) for s in sorted(table.sessions)))


# Results the 2026-07-28 revision makes cacheable: they must carry ttlMs and cacheScope.
CACHEABLE_METHODS = frozenset({"tools/list", "prompts/list", "resources/list", "resources/templates/list",
                               "resources/read", "server/discover"})


def modern_response(method: str, message: Message) -> Message:
    """A response from a handshake-era server in the 2026-07-28 wire shape.

    Adds `resultType: complete`, and for cacheable results `ttlMs: 0` and `cacheScope: private`
    (nothing may be cached: the server said nothing about it), unless the server set them.
    """
    value = message.get("result")
    if not isinstance(value, dict):
        return message
    defaults: dict[str, Any] = {"resultType": "complete"}
    if method in CACHEABLE_METHODS:
        defaults |= {"ttlMs": 0, "cacheScope": "private"}
    return {**message, "result": {**defaults, **value}}


def input_required(request_id: RequestId | None, key: str, server_request: Message, state: str) -> Message:
    """A server-to-client request turned into the 2026-07-28 answer that asks the client for input.

    The client fulfils `inputRequests` and retries its request with `inputResponses` (same keys)
    and `requestState` echoed, which names the parked request in the gateway.
    """
    embedded = {"method": server_request["method"], "params": server_request.get("params") or {}}
    return result(request_id if request_id is not None else "", {
        "resultType": "input_required", "inputRequests": {key: embedded}, "requestState": state})


# 2026-07-28: the change notifications a `subscriptions/listen` stream carries (and nothing else does).
LISTEN_METHODS = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
    "notifications/resources/updated": "resourceSubscriptions",
}
SUBSCRIPTION_ID_KEY = f"{MODERN_META_PREFIX}subscriptionId"


def listen_filter(requested: Any, capabilities: Any) -> dict[str, Any]:
    """The part of a `subscriptions/listen` filter the upstream server can honor."""
    requested = requested if isinstance(requested, dict) else {}
    capabilities = capabilities if isinstance(capabilities, dict) else {}
    honored: dict[str, Any] = {}
    for key, capability in (("toolsListChanged", "tools"), ("promptsListChanged", "prompts"),
                            ("resourcesListChanged", "resources")):
        declared = capabilities.get(capability)
        if requested.get(key) is True and isinstance(declared, dict) and declared.get("listChanged"):
            honored[key] = True
    resources = capabilities.get("resources")
    uris = requested.get("resourceSubscriptions")
    if isinstance(uris, list) and uris and isinstance(resources, dict) and resources.get("subscribe"):
        honored["resourceSubscriptions"] = [u for u in uris if isinstance(u, str)]
    return honored


def listen_admits(honored: Mapping[str, Any], message: Message) -> bool:
    key = LISTEN_METHODS.get(str(message.get("method")))
    if key == "resourceSubscriptions":
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        return params.get("uri") in honored.get(key, [])
    return key is not None and honored.get(key) is True


def stamp_subscription(message: Message, subscription_id: RequestId | None) -> Message:
    """A listen-stream frame with the `subscriptionId` (the listen request's id) in its `_meta`."""
    params = message.get("params") if isinstance(message.get("params"), dict) else {}
    meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
    return {**message, "params": {**params, "_meta": {**meta, SUBSCRIPTION_ID_KEY: subscription_id}}}


# The params key each 2026-07-28 method mirrors in the `Mcp-Name` header.
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def decode_header_value(value: str | None) -> str | None:
    """An `Mcp-Name` / `Mcp-Param-*` value: verbatim, or UTF-8 inside `=?base64?...?=`."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    payload = value[len("=?base64?"):-2]
    try:
        decoded = base64.b64decode(payload, validate=True)
        return decoded.decode() if base64.b64encode(decoded).decode() == payload else None
    except (binascii.Error, UnicodeDecodeError):
        return None


def modern_rejection(message: Message, headers: Mapping[str, str], supported: tuple[str, ...]) -> Message | None:
    """Why a 2026-07-28 request is invalid (a JSON-RPC error), or None when it is fine.

    The per-request envelope (`_meta` protocol version and client capabilities) must be there,
    the routing headers must agree with the body (an intermediary routes on them), and the
    version must be one we serve. `headers` has lower-case names.
    """
    request_id = message.get("id")
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    version_key, capabilities_key = f"{MODERN_META_PREFIX}protocolVersion", f"{MODERN_META_PREFIX}clientCapabilities"
    if not isinstance(meta, dict) or version_key not in meta or capabilities_key not in meta:
        return error(request_id, INVALID_PARAMS, f"params._meta must carry {version_key!r} and {capabilities_key!r}")
    version = meta[version_key]
    if headers.get("mcp-protocol-version") != version:
        return error(request_id, HEADER_MISMATCH, "MCP-Protocol-Version does not match params._meta")
    if headers.get("mcp-method") != message.get("method"):
        return error(request_id, HEADER_MISMATCH, "Mcp-Method does not match the request's method")
    name_key = NAME_PARAM.get(str(message.get("method")))
    if name_key is not None and isinstance(params, dict) and params.get(name_key) is not None \
            and decode_header_value(headers.get("mcp-name")) != params[name_key]:
        return error(request_id, HEADER_MISMATCH, f"Mcp-Name does not match params.{name_key}")
    if version not in supported:
        return error(request_id, UNSUPPORTED_PROTOCOL_VERSION, f"unsupported protocol version {version!r}",
                     {"supported": list(supported), "requested": version})
    return None


def strip_modern_meta(params: Any) -> Any:
    """Request params without the 2026 per-request negotiation keys in `_meta`."""
    if not isinstance(params, dict) or not isinstance(params.get("_meta"), dict):
        return params
    meta = {k: v for k, v in params["_meta"].items() if not k.startswith(MODERN_META_PREFIX)}
    out = {k: v for k, v in params.items() if k != "_meta"}
    if meta:
        out["_meta"] = meta
    return out


def upstream_request(message: Message, upstream_id: int) -> tuple[Message, RequestId | None]:
    """A client request as sent upstream: new id, progress token replaced by that id, nothing but
    the members JSON-RPC defines.

    Returns it with the client's own progress token (None when it asked for no progress).
    """
    params = strip_modern_meta(message.get("params"))
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


def client_capabilities(declared: Any) -> frozenset[str]:
    """Which routable capabilities a client's `capabilities` object declares."""
    if not isinstance(declared, dict):
        return frozenset()
    return frozenset(name for name in ("sampling", "elicitation", "roots") if isinstance(declared.get(name), dict))
