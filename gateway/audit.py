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

from gateway.auth import Identity, identity
from gateway.config import Config
from gateway.metrics import Telemetry
from gateway.protocol import jsonrpc

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


class Recorder:
    """Counts every answered request in /metrics and, with NMCP_AUDIT, writes its events."""

    def __init__(self, config: Config, telemetry: Telemetry) -> None:
        self.auditing = bool(config.audit)
        self.with_arguments = config.audit_arguments
        self.telemetry = telemetry
        if self.auditing:
            open_stream(config.audit)

    def record(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.telemetry.observe(event)
            if self.auditing:
                log.info(json.dumps(event, default=str))


def install(app: Flask, config: Config, telemetry: Telemetry) -> Recorder:
    """Time every request and record it once answered. Runs before the guard (gateway.web), so that
    a request the guard refuses is recorded too."""
    recorder = Recorder(config, telemetry)

    def start() -> None:
        g.nmcp_started = time.monotonic()
        g.nmcp_request_id = request.headers.get(REQUEST_ID_HEADER) or new_request_id()

    def record(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.nmcp_request_id
        if request.endpoint is None or request.endpoint.startswith(("probes.", "auth.")):
            return response
        recorder.record(events(response, recorder.with_arguments, complete=recorder.auditing))
        return response

    app.before_request_funcs.setdefault(None, []).insert(0, start)
    app.after_request(record)
    return recorder


def new_request_id() -> str:
    return uuid.uuid4().hex


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


def _messages(response: Response) -> list[dict[str, Any]]:
    """The MCP messages of this request that have a method (requests and notifications): as the view
    decoded them (web.parse_body), or, for a request refused before its view (a denial), decoded here."""
    if "nmcp_body" in g:
        body = g.nmcp_body
    elif response.status_code == 413:  # never read a body refused for its size
        return []
    else:
        body, _ = jsonrpc.parse(request.get_data())
    batch = body if isinstance(body, list) else [body]
    return [m for m in batch if isinstance(m, dict) and isinstance(m.get("method"), str)]


def events(response: Response, with_arguments: bool, complete: bool = True) -> list[dict[str, Any]]:
    """The current (Flask) request's events."""
    args = request.view_args or {}
    last = request.path.rstrip("/").rpartition("/")[2]
    messages = _messages(response) if request.method == "POST" and last in MCP_ENDPOINTS else []
    operation = f"{request.method} {last}" if last in ("mcp", "sse") else (request.endpoint or "").rpartition(".")[2]
    return describe(response, server=server_label(args.get("name", ""), args.get("namespace")), operation=operation,
                    messages=messages, started=g.nmcp_started, request_id=g.nmcp_request_id,
                    caller=identity() if complete else None, denied=g.get("nmcp_denied"),
                    with_arguments=with_arguments)


def server_label(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace is not None and name else name


def describe(response: Response, *, server: str, operation: str, messages: list[dict[str, Any]], started: float,
             request_id: str, caller: Identity | None, denied: str | None = None,
             with_arguments: bool = False) -> list[dict[str, Any]]:
    """A request's events: one per MCP message with a method, else one for the operation. Without a
    `caller`, only what /metrics counts (server, method or operation, outcome, reason, duration)."""
    status = response.status_code
    code = denied or _error_code(response)
    outcome = "denied" if status in (401, 403) or denied else "error" if status >= 400 or code else "ok"
    base: dict[str, Any] = {
        "server": server, "status": status, "outcome": outcome, **({"reason": code} if code else {}),
        "durationMs": round((time.monotonic() - started) * 1000, 3),
    }
    if caller is not None:
        base = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "requestId": request_id,
                "subject": caller.subject, "via": caller.via, **base}
    if not messages:
        return [{**base, "operation": operation, "method": ""}]
    out = []
    for message in messages:
        event = {**base, "operation": "mcp", "method": message["method"], "rpcId": message.get("id")}
        out.append(event)
        if caller is None:
            continue
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        key = NAMED_BY.get(message["method"])
        if key and key in params:
            event["name"] = params[key] if isinstance(params[key], str) else json.dumps(params[key])
        if with_arguments and "arguments" in params:
            event["arguments"] = params["arguments"]
    return out
