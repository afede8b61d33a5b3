"""The gateway's Flask application factory: `create_app(config, runtime)`.

The caller reads the settings (`Config.from_env()`, gateway/config.py) and builds the runtime:
`nmcp.serve:create_app()` is what gunicorn runs. `close_all()` (called by gunicorn.conf.py when
the worker exits) closes every runtime an app of this process was given.

Before any view runs, `web.guard_request` refuses a state-changing request from a foreign
Origin (403) and a body over NMCP_MAX_BODY (413, before it is read); a chunked body that grows
past the limit is cut off as it is read (`web.read_body`) with the same 413.
"""

from __future__ import annotations

import logging

import gevent
from flask import Flask, Response
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gateway import api, audit, probes, sse, streamable
from gateway.auth import Authenticator
from gateway.auth import views as auth_views
from gateway.config import Config
from gateway.fastpath import FastPath
from gateway.hub import Hub, SessionLimitReached
from gateway.metrics import Telemetry
from gateway.runtime import Runtime, RuntimeError_
from gateway.upstreams.http import UpstreamSettings
from gateway.web import ApiError, Gateway, body_too_large, error_response, guard_request

log = logging.getLogger(__name__)
# How often unused sessions are looked for (a full session limit also looks, for its server, at once).
SESSION_EXPIRY_INTERVAL = 10.0
# Calls in flight count as activity this often (the runtime rate-limits what it writes).
HEARTBEAT_INTERVAL = 2.0
_apps: list[Gateway] = []


def create_app(config: Config, runtime: Runtime) -> Flask:
    """The gateway app serving `runtime`'s servers with `config`'s settings; close_all() closes `runtime`."""
    http_settings = UpstreamSettings(connect_timeout=config.upstream_connect_timeout,
                                     request_timeout=config.upstream_request_timeout,
                                     close_timeout=config.upstream_close_timeout,
                                     reconnect_delay=config.upstream_reconnect_delay)
    hub = Hub(runtime, http_settings, max_sessions=config.max_sessions,
              session_timeout=config.session_timeout, max_message=config.max_message)
    gw = Gateway(config=config, runtime=runtime, hub=hub)
    _apps.append(gw)

    app = Flask(__name__)
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = config.max_body + 1  # see web.read_body
    app.extensions["nmcp"] = gw
    app.extensions["nmcp.auth"] = Authenticator.from_config(config)
    app.before_request(guard_request)
    telemetry = app.extensions["nmcp.telemetry"] = Telemetry(gw)
    recorder = audit.install(app, config, telemetry)
    # Calls on open Streamable HTTP sessions skip Flask's per-request machinery (gateway.fastpath).
    authenticating = app.extensions["nmcp.auth"].enabled
    app.wsgi_app = FastPath(app.wsgi_app, gw, recorder, authenticating)  # type: ignore[method-assign]
    app.register_blueprint(probes.bp)
    app.register_blueprint(auth_views.bp)
    for prefix, suffix in (("/api/v1", ""), ("/api/v1/namespaces/<namespace>", "_ns")):
        app.register_blueprint(api.servers, url_prefix=f"{prefix}/servers", name=f"servers{suffix}")
        app.register_blueprint(api.server, url_prefix=f"{prefix}/servers/<name>", name=f"server{suffix}")
        app.register_blueprint(sse.bp, url_prefix=f"{prefix}/servers/<name>", name=f"sse{suffix}")
        app.register_blueprint(streamable.bp, url_prefix=f"{prefix}/servers/<name>", name=f"streamable{suffix}")
    _register_errors(app)
    gw.background.append(gevent.spawn(_expire_sessions, gw))
    gw.background.append(gevent.spawn(_heartbeat, gw))
    log.info("nmcp gateway: runtime %s, %d servers", config.runtime, len(runtime.list_servers()))
    return app


def _register_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(err: ApiError) -> Response:
        return error_response(err.status, err.code, err.message)

    @app.errorhandler(RuntimeError_)
    def runtime_error(err: RuntimeError_) -> Response:
        return error_response(err.http_status, err.code, err.message, reason=err.reason)

    @app.errorhandler(SessionLimitReached)
    def session_limit(err: SessionLimitReached) -> Response:
        response = error_response(429, "too_many_sessions", str(err))
        response.headers["Retry-After"] = str(err.retry_after)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_err: RequestEntityTooLarge) -> Response:
        return body_too_large()

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        code = (err.name or "error").lower().replace(" ", "_").replace("'", "")
        response = error_response(err.code or 500, code, err.description or err.name)
        if err.code == 405 and err.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(err.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def internal_error(err: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", f"internal error: {type(err).__name__}")


def _expire_sessions(gw: Gateway) -> None:
    configured = gw.config.session_timeout
    interval = min(SESSION_EXPIRY_INTERVAL, configured / 2) if configured else SESSION_EXPIRY_INTERVAL
    while True:
        gevent.sleep(interval)
        try:
            gw.hub.expire()
        except Exception:
            log.exception("session expiry failed")


def _heartbeat(gw: Gateway) -> None:
    while True:
        gevent.sleep(HEARTBEAT_INTERVAL)
        try:
            gw.hub.heartbeat()
        except Exception:
            log.exception("activity heartbeat failed")


def close_all() -> None:
    """Stop what every app of this process started (gunicorn's worker_exit calls this)."""
    while _apps:
        gw = _apps.pop()
        for greenlet in gw.background:
            greenlet.kill(block=False)
        try:
            gw.hub.shutdown()
        finally:
            gw.runtime.close()
