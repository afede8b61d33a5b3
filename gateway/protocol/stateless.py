"""The 2026-07-28 (stateless) revision, translated to and from the handshake era spoken upstream.

A 2026-07-28 request carries its negotiation in `params._meta` (protocol version, client
capabilities) and mirrors its routing in headers; the gateway checks both, strips those keys
before the request goes to an upstream that negotiated with `initialize`, and answers
`server/discover` from the upstream's initialize result. The revision has no server-to-client
requests: one the server makes while such a request runs becomes that request's answer, an
`InputRequiredResult` whose `requestState` names the parked request; the client's retry brings
the input (`inputResponses`), which answers the server. Change notifications reach only
`subscriptions/listen` streams, stamped with the listen request's id.

`StatelessRequest` is one such request's state; `outgoing()` is the one place where a message
for a stateless client takes its 2026-07-28 shape. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.protocol.jsonrpc import INVALID_PARAMS, Message, RequestId, error, kind, result
from gateway.protocol.versions import (
    METHOD_HEADER,
    MODERN_VERSIONS,
    NAME_HEADER,
    UNSUPPORTED_PROTOCOL_VERSION,
    VERSION_HEADER,
    client_capabilities,
)

HEADER_MISMATCH = -32020  # a routing header disagrees with the body

# Keys of `_meta` the revision reserves for per-request negotiation: the gateway answers those
# itself and never passes them to an upstream that negotiated with `initialize`.
MODERN_META_PREFIX = "io.modelcontextprotocol/"
VERSION_KEY = f"{MODERN_META_PREFIX}protocolVersion"
CAPABILITIES_KEY = f"{MODERN_META_PREFIX}clientCapabilities"
SUBSCRIPTION_ID_KEY = f"{MODERN_META_PREFIX}subscriptionId"
# Results the revision makes cacheable: they must carry ttlMs and cacheScope.
CACHEABLE_METHODS = frozenset({"tools/list", "prompts/list", "resources/list", "resources/templates/list",
                               "resources/read", "server/discover"})
# The change notifications a `subscriptions/listen` stream carries (and nothing else does).
LISTEN_METHODS = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
    "notifications/resources/updated": "resourceSubscriptions",
}
# The params key each method mirrors in the `Mcp-Name` header.
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def _meta(params: Any) -> dict[str, Any]:
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta if isinstance(meta, dict) else {}


def declared_version(header: str | None, message: Any) -> str | None:
    """The 2026 revision a request declares, in its `MCP-Protocol-Version` header or its `_meta`."""
    if header in MODERN_VERSIONS:
        return header
    declared = _meta(message.get("params") if isinstance(message, dict) else None).get(VERSION_KEY)
    return declared if declared in MODERN_VERSIONS else None


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


def rejection(message: Message, headers: Mapping[str, str]) -> Message | None:
    """Why a 2026-07-28 request is invalid (a JSON-RPC error), or None when it is fine.

    The per-request envelope (`_meta` protocol version and client capabilities) must be there,
    the routing headers must agree with the body (an intermediary routes on them), and the
    version must be one we serve. `headers` has lower-case names.
    """
    request_id = message.get("id")
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict) or VERSION_KEY not in meta or CAPABILITIES_KEY not in meta:
        return error(request_id, INVALID_PARAMS, f"params._meta must carry {VERSION_KEY!r} and {CAPABILITIES_KEY!r}")
    version = meta[VERSION_KEY]
    if headers.get(VERSION_HEADER.lower()) != version:
        return error(request_id, HEADER_MISMATCH, f"{VERSION_HEADER} does not match params._meta")
    if headers.get(METHOD_HEADER.lower()) != message.get("method"):
        return error(request_id, HEADER_MISMATCH, f"{METHOD_HEADER} does not match the request's method")
    name_key = NAME_PARAM.get(str(message.get("method")))
    if name_key is not None and isinstance(params, dict) and params.get(name_key) is not None \
            and decode_header_value(headers.get(NAME_HEADER.lower())) != params[name_key]:
        return error(request_id, HEADER_MISMATCH, f"{NAME_HEADER} does not match params.{name_key}")
    if version not in MODERN_VERSIONS:
        return error(request_id, UNSUPPORTED_PROTOCOL_VERSION, f"unsupported protocol version {version!r}",
                     {"supported": list(MODERN_VERSIONS), "requested": version})
    return None


def strip_meta(params: Any) -> Any:
    """Request params without the 2026 per-request negotiation keys in `_meta`."""
    if not isinstance(params, dict) or not isinstance(params.get("_meta"), dict):
        return params
    meta = params["_meta"]
    if not any(key.startswith(MODERN_META_PREFIX) for key in meta):
        return params
    kept = {k: v for k, v in meta.items() if not k.startswith(MODERN_META_PREFIX)}
    out = {k: v for k, v in params.items() if k != "_meta"}
    if kept:
        out["_meta"] = kept
    return out


def complete_response(method: str, message: Message) -> Message:
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
    """A server-to-client request turned into the answer that asks the client for input.

    The client fulfils `inputRequests` and retries its request with `inputResponses` (same keys)
    and `requestState` echoed, which names the parked request in the gateway.
    """
    embedded = {"method": server_request["method"], "params": server_request.get("params") or {}}
    return result(request_id if request_id is not None else "", {
        "resultType": "input_required", "inputRequests": {key: embedded}, "requestState": state})


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
    return {**message, "params": {**params, "_meta": {**_meta(params), SUBSCRIPTION_ID_KEY: subscription_id}}}


def listen_ack(honored: dict[str, Any], request_id: RequestId) -> Message:
    """What opens a listen stream: the notifications the server can send."""
    return stamp_subscription({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                               "params": {"notifications": honored}}, request_id)


def discover_result(init_result: Mapping[str, Any]) -> dict[str, Any]:
    """`server/discover` answered from the upstream's initialize result."""
    out: dict[str, Any] = {
        "supportedVersions": list(MODERN_VERSIONS),
        "capabilities": init_result.get("capabilities", {}),
        "resultType": "complete", "ttlMs": 0, "cacheScope": "private",
    }
    if init_result.get("instructions"):
        out["instructions"] = init_result["instructions"]
    if isinstance(init_result.get("serverInfo"), dict):
        out["_meta"] = {f"{MODERN_META_PREFIX}serverInfo": init_result["serverInfo"]}
    return out


@dataclass
class StatelessRequest:
    """One 2026-07-28 request served as a session of its own, and what it waits for."""

    state: str  # the `requestState` that names it (the gateway session's id)
    version: str
    method: str
    request_id: RequestId  # changes when the client retries with input
    capabilities: frozenset[str]  # what the client can answer (as InputRequiredResult)
    # Server-to-client requests handed to the client as an InputRequiredResult, by the key they
    # have there; the request waits (parked) for the client's retry that answers them.
    awaiting_input: dict[str, RequestId] = field(default_factory=dict)
    unsent_input: list[Message] = field(default_factory=list)  # arrived between two rounds
    listen: dict[str, Any] | None = None  # a `subscriptions/listen` stream: what it honors

    @classmethod
    def adopt(cls, message: Message, version: str, state: str) -> StatelessRequest:
        return cls(state, version, str(message.get("method")), message["id"],
                   client_capabilities(_meta(message.get("params")).get(CAPABILITIES_KEY)))

    def outgoing(self, message: Message, related: RequestId | None,
                 streaming: bool) -> tuple[Message, RequestId | None] | None:
        """A message for this client in its 2026-07-28 shape, with the request it belongs to;
        None when it goes nowhere (now). `streaming`: the client's request stream is open."""
        what = kind(message)
        if what == "notification" and message["method"] in LISTEN_METHODS:
            if self.listen is None or not listen_admits(self.listen, message):
                return None
            return stamp_subscription(message, self.request_id), self.request_id
        if what == "response":
            return complete_response(self.method, message), related
        if what == "request":
            if not streaming:
                self.unsent_input.append(message)  # the client is between two rounds
                return None
            key = f"input-{len(self.awaiting_input) + 1}"
            self.awaiting_input[key] = message["id"]
            return input_required(self.request_id, key, message, self.state), self.request_id
        if what == "notification" and message["method"] == "notifications/cancelled":
            return None  # what it cancels never reached the client as a request
        return message, related

    def answers(self, retry: Message) -> list[Message]:
        """The client's retry carrying `inputResponses`: the answers to the server's requests."""
        params = retry.get("params") if isinstance(retry.get("params"), dict) else {}
        responses = params.get("inputResponses") if isinstance(params.get("inputResponses"), dict) else {}
        self.request_id = retry["id"]
        out = [result(server_id, responses[key]) if isinstance(responses.get(key), dict) else
               error(server_id, INVALID_PARAMS, f"the client sent no input for {key}")
               for key, server_id in self.awaiting_input.items()]
        self.awaiting_input.clear()
        return out
