"""Enforcing the access policy on a request, once its caller is known (gateway.auth).

- A server's endpoints (MCP, REST) are refused (403 `forbidden`) to a caller no policy lets use it.
- `request`, `shutdown` and `logs` need that operation (403 `operation_not_allowed`).
- A `tools/call` of a tool the caller may not call is answered with JSON-RPC error -32602 (the
  tool is unknown to them, as their `tools/list` does not show it), data.code `tool_not_allowed`:
  in the POST's response (Streamable HTTP) or on the session's stream (legacy SSE).
- `tools/list` results are filtered by the same rule where they are delivered to the session
  (`visible_tools`).
A server the runtime does not know passes through to the view's 404, as without authentication.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, g, has_request_context, jsonify, request

from gateway.auth.identity import Identity
from gateway.auth.policy import OPERATIONS, Policy
from gateway.protocol import jsonrpc
from gateway.protocol.jsonrpc import INVALID_PARAMS, Message, error

TOOL_NOT_ALLOWED = "tool_not_allowed"


def _denied(code: str, message: str) -> Response:
    g.nmcp_denied = code
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = 403
    return response


def _server() -> tuple[str, str] | None:
    """The (namespace, name) the request's URL names, if the runtime knows it."""
    args = request.view_args or {}
    if "name" not in args:
        return None
    try:
        ref = current_app.extensions["nmcp"].runtime.resolve(args["name"], args.get("namespace"))
    except Exception:  # not found, ambiguous: the view answers that
        return None
    return ref.namespace, ref.name


def _messages() -> list[Any]:
    """The request's messages, read as the protocol reads them (a body it refuses has none here:
    the view answers it)."""
    decoded, _ = jsonrpc.parse(request.get_data())
    return decoded if isinstance(decoded, list) else [decoded]


def _tool_calls() -> list[dict[str, Any]]:
    return [m for m in _messages() if isinstance(m, dict) and m.get("method") == "tools/call" and "id" in m
            and isinstance(m.get("params"), dict)]


def refusal(message: Message, who: Identity) -> Message:
    tool = message["params"].get("name")
    return error(message["id"], INVALID_PARAMS,
                 f"tool {tool!r} is not available to {who.subject}: no MCPAccessPolicy allows it",
                 {"code": TOOL_NOT_ALLOWED, "tool": tool})


def authorize(policy: Policy, who: Identity) -> Response | None:
    server = _server()
    if server is None:
        return None
    namespace, name = server
    if not policy.may_use(who, namespace, name):
        return _denied("forbidden", f"no MCPAccessPolicy lets {who.subject} use server {namespace}/{name}")
    last = request.path.rstrip("/").rpartition("/")[2]
    if last in OPERATIONS and not policy.may(who, namespace, name, last):
        return _denied("operation_not_allowed",
                       f"no MCPAccessPolicy lets {who.subject} {last} server {namespace}/{name}")
    g.nmcp_visible_tools = policy.tool_rule(who, namespace, name)
    if request.method == "POST" and last in ("mcp", "message"):
        return _refuse_calls(who, g.nmcp_visible_tools, last)
    return None


def _refuse_calls(who: Identity, visible: Callable[[str], bool], endpoint: str) -> Response | None:
    refused = [m for m in _tool_calls() if not visible(str(m["params"].get("name")))]
    if not refused:
        return None
    g.nmcp_denied = TOOL_NOT_ALLOWED
    if endpoint == "mcp":  # Streamable HTTP takes no batches: the one message is this call
        return Response(json.dumps(refusal(refused[0], who)), status=200, content_type="application/json")
    # Legacy SSE: answers go on the session's stream; the POST is accepted like any other.
    session = current_app.extensions["nmcp"].hub.get(request.args.get("sessionId", ""), who)
    if session is None:
        return None  # the view answers 404
    if len(refused) != len(_messages()):
        return _denied(TOOL_NOT_ALLOWED, "this batch calls a tool that is not allowed; send that call alone")
    for message in refused:
        session.deliver(refusal(message, who), message["id"])
    return Response("Accepted", status=202)


def visible_tools() -> Callable[[str], bool] | None:
    """The current request's tool rule (None when no policy applies: authentication is off, or no
    request is being served)."""
    return g.get("nmcp_visible_tools") if has_request_context() else None


def filter_tools_list(message: Message, visible: Callable[[str], bool]) -> Message:
    """`message` without the tools `visible` rejects, if it is a tools/list result."""
    result = message.get("result")
    tools = result.get("tools") if isinstance(result, dict) else None
    if not isinstance(tools, list):
        return message
    kept = [t for t in tools if isinstance(t, dict) and visible(str(t.get("name")))]
    return {**message, "result": {**result, "tools": kept}}
