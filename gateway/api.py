"""The REST API: list and inspect servers, start or stop one by hand, stream its log.

Starting and stopping change state, so like every POST they are refused (403) to a browser page
whose Origin is not allowed (web.guard_request): any site could otherwise start and stop servers
with a form.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request

from gateway.runtime import ServerState
from gateway.web import gateway, resolve, stop, watch_disconnect

servers = Blueprint("servers", __name__)  # mounted at /api/v1[/namespaces/<namespace>]/servers
server = Blueprint("server", __name__)  # mounted at .../servers/<name>


def server_json(state: ServerState, base: str) -> dict[str, Any]:
    """What the API shows of one server."""
    srv = state.server
    url = f"{base}/{srv.name}"
    hub = gateway().hub
    ref = state.ref
    return {
        "name": srv.name,
        "namespace": srv.namespace,
        "pool": srv.pool,
        "phase": state.phase,
        "reason": state.reason,
        "message": state.message,
        "transport": {"type": srv.transport.type, "port": srv.transport.port, "path": srv.transport.path},
        "isolation": srv.isolation,
        "sessions": max(state.sessions, hub.sessions_of(ref)),
        "lastActiveAt": state.last_active_at.isoformat() if state.last_active_at else None,
        "upstream": {"running": any(b.running for b in hub.bridges_of(ref)),
                     "starts": sum(b.restarts for b in hub.bridges_of(ref))},
        "endpoints": {"sse": f"{url}/sse", "streamableHttp": f"{url}/mcp"},
        **({"details": state.extra} if state.extra else {}),
    }


def _base(namespace: str | None) -> str:
    root = request.script_root
    return f"{root}/api/v1/namespaces/{namespace}/servers" if namespace else f"{root}/api/v1/servers"


@servers.get("")
def list_servers(namespace: str | None = None) -> Response:
    states = [s for s in gateway().runtime.list_servers() if namespace in (None, s.server.namespace)]
    base = _base(namespace)
    return jsonify({"servers": [server_json(s, base) for s in states]})


@server.get("")
def show(name: str, namespace: str | None = None) -> Response:
    ref = resolve(name, namespace)
    return jsonify(server_json(gateway().runtime.get(ref), _base(namespace)))


@server.post("/request")
def request_start(name: str, namespace: str | None = None) -> tuple[Response, int]:
    runtime = gateway().runtime
    ref = resolve(name, namespace)
    runtime.request(ref)
    return jsonify(server_json(runtime.get(ref), _base(namespace))), 202


@server.post("/shutdown")
def request_stop(name: str, namespace: str | None = None) -> tuple[Response, int]:
    runtime = gateway().runtime
    ref = resolve(name, namespace)
    runtime.shutdown(ref)
    return jsonify(server_json(runtime.get(ref), _base(namespace))), 202


@server.get("/logs")
def logs(name: str, namespace: str | None = None) -> Response:
    """The server's log as text; `?follow=true` keeps streaming new lines."""
    ref = resolve(name, namespace)
    follow = request.args.get("follow", "").lower() in ("1", "true", "yes")
    lines = gateway().runtime.logs(ref, follow)
    if not follow:
        return Response("".join(f"{line}\n" for line in lines), content_type="text/plain; charset=utf-8")
    gone: list[bool] = []
    environ = request.environ

    def stream() -> Iterator[bytes]:
        watcher = watch_disconnect(environ, lambda: gone.append(True))
        try:
            yield b""  # gunicorn sends the headers now, before the first line exists
            for line in lines:
                if gone:
                    return
                if line:  # "" is the runtime's periodic wake-up, not a log line
                    yield f"{line}\n".encode()
        finally:
            stop(watcher)
            close = getattr(lines, "close", None)
            if close is not None:
                close()

    return Response(stream(), content_type="text/plain; charset=utf-8", headers={"X-Accel-Buffering": "no"})
