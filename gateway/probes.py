"""Probes, Prometheus metrics and the OpenAPI description."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from gateway.metrics import CONTENT_TYPE
from gateway.protocol.versions import SERVED_VERSIONS
from gateway.web import error_response, gateway
from nmcp.model.vocabulary import Phase

bp = Blueprint("probes", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    ok, reason = gateway().runtime.ready()
    if not ok:
        return error_response(503, "runtime_not_ready", reason or "the runtime is not ready")
    return jsonify({"status": "ready"})


@bp.get("/metrics")
def metrics() -> Response:
    return Response(current_app.extensions["nmcp.telemetry"].exposition(), content_type=CONTENT_TYPE)


def _json_body(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _server_paths(prefix: str, with_namespace: bool) -> dict[str, Any]:
    params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    if with_namespace:
        params.insert(0, {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}})
    error = _json_body("JSON error", {"$ref": "#/components/schemas/Error"})
    rpc_error = _json_body("a malformed message: its JSON-RPC error (-32700, -32600, -32602)", {"type": "object"})
    server = _json_body("a server", {"$ref": "#/components/schemas/Server"})
    sse = {"description": "an SSE stream", "content": {"text/event-stream": {}}}
    return {
        f"{prefix}/{{name}}": {"get": {"summary": "Inspect a server", "parameters": params,
                                       "responses": {"200": server, "404": error, "409": error}}},
        f"{prefix}/{{name}}/request": {"post": {"summary": "Start a server (signal demand)", "parameters": params,
                                                "responses": {"202": server, "403": error, "404": error}}},
        f"{prefix}/{{name}}/shutdown": {"post": {"summary": "Stop a server", "parameters": params,
                                                 "responses": {"202": server, "403": error, "404": error}}},
        f"{prefix}/{{name}}/logs": {"get": {
            "summary": "The server's log (stderr)", "responses": {"200": {"description": "text lines"}, "404": error},
            "parameters": [*params, {"name": "follow", "in": "query", "schema": {"type": "boolean"}}]}},
        f"{prefix}/{{name}}/sse": {"get": {"summary": "MCP HTTP+SSE transport (2024-11-05): first event `endpoint`",
                                           "parameters": params,
                                           "responses": {"200": sse, "404": error, "429": error}}},
        f"{prefix}/{{name}}/message": {"post": {
            "summary": "MCP HTTP+SSE transport: a client message; the answer comes on the stream",
            "parameters": [*params, {"name": "sessionId", "in": "query", "required": True,
                                     "schema": {"type": "string"}}],
            "responses": {"202": {"description": "accepted"}, "400": rpc_error, "404": error, "413": error}}},
        f"{prefix}/{{name}}/mcp": {
            "post": {"summary": "MCP Streamable HTTP: a JSON-RPC message (JSON or SSE response)", "parameters": params,
                     "responses": {"200": {"description": "JSON-RPC response or SSE stream"},
                                   "202": {"description": "notification accepted"},
                                   "400": rpc_error, "403": error, "404": error, "413": error, "429": error}},
            "get": {"summary": "MCP Streamable HTTP: the session's stream", "parameters": params,
                    "responses": {"200": sse, "404": error, "409": error}},
            "delete": {"summary": "MCP Streamable HTTP: end the session", "parameters": params,
                       "responses": {"204": {"description": "ended"}, "404": error}},
        },
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    items = {"type": "array", "items": {"$ref": "#/components/schemas/Server"}}
    list_response = {"200": _json_body("servers", {"type": "object", "properties": {"servers": items}})}
    paths: dict[str, Any] = {
        "/api/v1/servers": {"get": {"summary": "List servers", "responses": list_response}},
        "/api/v1/namespaces/{namespace}/servers": {"get": {
            "summary": "List the servers of a namespace", "responses": list_response,
            "parameters": [{"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}]}},
        **_server_paths("/api/v1/servers", False),
        **_server_paths("/api/v1/namespaces/{namespace}/servers", True),
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"summary": "Readiness (the runtime works)",
                            "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}},
    }
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
        "Server": {"type": "object", "properties": {
            "name": {"type": "string"}, "namespace": {"type": "string"}, "pool": {"type": "string"},
            "phase": {"type": "string", "enum": list(Phase.ALL)},
            "reason": {"type": "string"}, "message": {"type": "string"},
            "transport": {"type": "object"}, "isolation": {"type": "string"}, "sessions": {"type": "integer"},
            "lastActiveAt": {"type": ["string", "null"]}, "upstream": {"type": "object"},
            "endpoints": {"type": "object"}}},
    }
    return jsonify({
        "openapi": "3.1.0",
        "info": {"title": "nmcp gateway", "version": "v1",
                 "description": "MCP protocol revisions served: " + ", ".join(SERVED_VERSIONS)},
        "paths": paths, "components": {"schemas": schemas},
    })
