"""The Flask application that exposes the hooks to Metacontroller.

One blueprint, one view per hook: parse and validate the body (`schemas`), call the pure
function (`sync`) with the current time, return its JSON with 200. Input that is not a hook
request gets a JSON error naming the problem (400 not JSON or nested too deeply to read, 422
wrong shape, each field named); only a bug is a 500. Values the schema lets through but nmcp
cannot use (an idle timeout of 99999999h, a quantity of 1e999999999) are the pure functions' to
report, as conditions (see `nmcp.model.resources`); tests/adversarial fuzzes this. gunicorn serves
`hooks.app:create_app()` (see `hooks.cli`).

Every response carries `Server-Timing: app;dur=<wall ms>, cpu;dur=<cpu ms>`, so the time a
hook takes is visible from outside (bench/hooks_bench.py reads it).

Configuration: `create_app(config)` overrides, else the operator's settings (hooks/settings.py),
read once at start-up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from hooks import sync
from hooks.schemas import SCHEMAS, flatten_errors
from hooks.settings import OperatorSettings

bp = Blueprint("hooks", __name__)


class BadRequest(Exception):
    """Input that is not a hook request; carries the HTTP status and the JSON error body."""

    def __init__(self, status: int, code: str, message: str, fields: Mapping[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, dict(fields or {})


def _error(status: int, code: str, message: str, fields: Mapping[str, list[str]] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = dict(fields)
    response = jsonify({"error": body})
    response.status_code = status
    return response


def _too_deep() -> BadRequest:
    return BadRequest(400, "too_deep", "the request body nests arrays and objects too deeply to be read "
                                       "(Kubernetes objects nest a few dozen levels; this is several hundred)")


def _load(kind: str, hook: str) -> dict[str, Any]:
    """The request body, parsed and checked against the hook's schema."""
    try:
        body = json.loads(request.get_data(cache=False))
    except ValueError as err:  # also UnicodeDecodeError
        raise BadRequest(400, "invalid_json", f"the request body is not JSON: {err}") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(body, dict):
        raise BadRequest(422, "invalid_request", "the request body must be a JSON object",
                         {"request": [f"expected an object, got {type(body).__name__}"]})
    try:
        return SCHEMAS[kind, hook].load(body)
    except ValidationError as err:
        fields = flatten_errors(err.messages)
        names = ", ".join(sorted(fields))
        raise BadRequest(422, "invalid_request", f"not a valid {kind} {hook} request: check {names}", fields) from None


def _now() -> datetime:
    return datetime.now(UTC)


def _answer(compute: Callable[[], Any]) -> Response:
    """The hook's answer as JSON. Only the input can make the hooks recurse deeply (they walk
    what they were given: a securityContext, a divisor, the body itself), so a RecursionError is
    the body's fault, and a 400, wherever it happens."""
    try:
        return jsonify(compute())
    except RecursionError:
        raise _too_deep() from None


def _sync_view(kind: str, func: Callable[[Mapping[str, Any], datetime], Any], finalizing: bool) -> Callable[[], Any]:
    def view() -> Any:
        body = _load(kind, "sync")
        # The route says which hook this is, whatever the body claims.
        body["finalizing"] = finalizing
        return _answer(lambda: func(body, _now()))

    return view


def _customize_view(kind: str, func: Callable[[Mapping[str, Any]], Any]) -> Callable[[], Any]:
    def view() -> Any:
        body = _load(kind, "customize")
        return _answer(lambda: func(body))

    return view


for _kind, _sync, _customize in (("pool", sync.sync_pool, sync.customize_pool),
                                  ("server", sync.sync_server, sync.customize_server)):
    bp.add_url_rule(f"/{_kind}/sync", f"{_kind}_sync", _sync_view(_kind, _sync, False), methods=["POST"])
    bp.add_url_rule(f"/{_kind}/finalize", f"{_kind}_finalize", _sync_view(_kind, _sync, True), methods=["POST"])
    bp.add_url_rule(f"/{_kind}/customize", f"{_kind}_customize", _customize_view(_kind, _customize),
                    methods=["POST"])


@bp.before_app_request
def _start_clock() -> None:
    g.started = (time.perf_counter(), time.thread_time())


@bp.after_app_request
def _server_timing(response: Response) -> Response:
    """How long the hook took, as wall and CPU time of this request (a Server-Timing header)."""
    started = g.get("started")
    if started is not None:
        wall, cpu = (time.perf_counter() - started[0]) * 1000, (time.thread_time() - started[1]) * 1000
        response.headers["Server-Timing"] = f"app;dur={wall:.2f}, cpu;dur={cpu:.2f}"
    return response


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    # Stateless: ready as soon as the app is loaded and can answer.
    return jsonify({"status": "ready"})


@bp.app_errorhandler(BadRequest)
def _bad_request(err: BadRequest) -> Response:
    current_app.logger.warning("rejected %s %s: %s", request.method, request.path, err.message)
    return _error(err.status, err.code, err.message, err.fields)


@bp.app_errorhandler(HTTPException)
def _http_error(err: HTTPException) -> Response:
    code = (err.name or "error").lower().replace(" ", "_")
    response = _error(err.code or 500, code, err.description or err.name or "error")
    allowed = getattr(err, "valid_methods", None)
    if allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response


@bp.app_errorhandler(Exception)
def _bug(err: Exception) -> Response:
    # Only a bug gets here: Metacontroller backs off and records a SyncError event on the parent.
    current_app.logger.exception("hook failed on %s %s", request.method, request.path)
    return _error(500, "internal_error", f"the hook failed: {type(err).__name__}; see the operator's log")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The webhook application (gunicorn: `hooks.app:create_app()`)."""
    app = Flask("hooks")
    app.config["MAX_CONTENT_LENGTH"] = OperatorSettings.from_env().max_body
    if config:
        app.config.from_mapping(config)
    app.json.sort_keys = False
    app.register_blueprint(bp)
    return app
