"""Audit: one JSON event per MCP request and per REST operation, on its own stream.

Recorded after the response is made (a streamed answer counts from arrival to its headers), denials
included: a request refused for its token (401/403) or its Host/Origin is an event like any other.
An event holds: `time`, `requestId` (the client's `X-Request-Id`, else one made here, returned in
the response header), `subject` and `via` (gateway.auth), `server`, `operation` (`mcp` for a message,
else the REST operation or MCP stream action), `method` (the JSON-RPC method), `name` (tool, prompt or
resource), `rpcId`, `status`, `outcome` (`ok`, `error`, `denied`) with `reason` (the stable error
code), and `durationMs`. Tool arguments only with NMCP_AUDIT_ARGUMENTS. The events go to the
`nmcp.audit` logger only, written to NMCP_AUDIT (a file, or `-` for stdout), one line each; the same
outcomes are counted in /metrics (gateway.metrics).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

from gateway.auth import identity
from gateway.config import Config
from gateway.metrics import Telemetry

log = logging.getLogger("nmcp.audit")
MCP_ENDPOINTS = ("mcp", "message")  # the last part of the URL of a view that takes MCP messages
# What names the object of a method, per method (a tool call's tool, a read resource's uri).
NAMED_BY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri", "resources/subscribe": "uri",
            "resources/unsubscribe": "uri", "completion/complete": "ref"}
REQUEST_ID_HEADER = "X-Request-Id"


def open_stream(target: str) -> None:
    """Send `nmcp.audit` events to `target` (a path, or `-` for stdout) and nowhere else."""
    handler: logging.Handler = logging.StreamHandler(sys.stdout) if target == "-" else logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def install(app: Flask, config: Config, telemetry: Telemetry) -> None:
    """Time every request and record it once answered. Runs before the guard (gateway.web), so that
    a request the guard refuses is recorded too."""
    auditing = bool(config.audit)
    if auditing:
        open_stream(config.audit)

    def start() -> None:
        g.nmcp_started = time.monotonic()
        g.nmcp_request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex

    def record(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.nmcp_request_id
        if request.endpoint is None or request.endpoint.startswith(("probes.", "auth.")):
            return response
        for event in events(response, config.audit_arguments, complete=auditing):
            telemetry.observe(event["server"], event["method"] or event["operation"], event["outcome"],
                              event.get("reason", ""), event["durationMs"] / 1000)
            if auditing:
                log.info(json.dumps(event, default=str))
        return response

    app.before_request_funcs.setdefault(None, []).insert(0, start)
    app.after_request(record)


def _error_code(response: Response) -> str:
    if response.mimetype != "application/json" or response.is_streamed:
        return ""
    if b'"error"' not in response.get_data():  # no error member: the answer need not be parsed
        return ""
    body = response.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return ""
    error = body["error"]
    data = error.get("data")
    return str(error.get("code", "")) if "jsonrpc" not in body else str(
        data.get("code", error.get("code")) if isinstance(data, dict) else error.get("code"))


def read(body: Any) -> None:
    """The view parsed the request body: the audit takes the messages from there."""
    g.nmcp_body = body


def _messages() -> list[dict[str, Any]]:
    """The MCP messages of this request that have a method (requests and notifications)."""
    if "nmcp_body" in g:
        body = g.nmcp_body
    else:  # refused before a view read it
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            return []
    batch = body if isinstance(body, list) else [body]
    return [m for m in batch if isinstance(m, dict) and isinstance(m.get("method"), str)]


def events(response: Response, with_arguments: bool, complete: bool = True) -> list[dict[str, Any]]:
    """The request's events; not `complete`, only what /metrics counts (server, method or operation,
    outcome, reason, duration)."""
    args = request.view_args or {}
    server = f"{args['namespace']}/{args['name']}" if "namespace" in args and "name" in args else args.get("name", "")
    status = response.status_code
    denied = g.get("nmcp_denied")
    code = denied or _error_code(response)
    outcome = "denied" if status in (401, 403) or denied else "error" if status >= 400 or code else "ok"
    base: dict[str, Any] = {
        "server": server, "status": status, "outcome": outcome, **({"reason": code} if code else {}),
        "durationMs": round((time.monotonic() - g.nmcp_started) * 1000, 3),
    }
    if complete:
        caller = identity()
        base = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "requestId": g.nmcp_request_id,
                "subject": caller.subject, "via": caller.via, **base}
    operation = (request.endpoint or "").rpartition(".")[2]
    last = request.path.rstrip("/").rpartition("/")[2]
    messages = _messages() if request.method == "POST" and last in MCP_ENDPOINTS else []
    if not messages:
        return [{**base, "operation": f"{request.method} {last}" if last in ("mcp", "sse") else operation,
                 "method": ""}]
    out = []
    for message in messages:
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        key = NAMED_BY.get(message["method"])
        event = {**base, "operation": "mcp", "method": message["method"], "rpcId": message.get("id")}
        if not complete:
            out.append(event)
            continue
        if key and key in params:
            event["name"] = params[key] if isinstance(params[key], str) else json.dumps(params[key])
        if with_arguments and "arguments" in params:
            event["arguments"] = params["arguments"]
        out.append(event)
    return out
