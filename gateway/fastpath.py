"""The hot path: `POST .../mcp` carrying a request on an open Streamable HTTP session, without
Flask's per-request machinery.

Nearly every request a busy gateway serves is a client's call on its session. Through Flask each
builds a request context, matches the URL against every route, runs the before- and after-request
hooks through proxies, and builds a response object: more CPU than the gateway's own work on the
call. This WSGI layer, in front of the Flask app, serves exactly that common case with the same
functions the Flask view uses (gateway.streamable), under the same checks and with the same audit
and metrics, and hands every other request to Flask untouched: any other route or method, a Host
or Origin the guard would refuse, a body without Content-Length or over NMCP_MAX_BODY, no session
or one that is not this server's, an unsupported protocol version or Accept header, a body that is
not one valid request, an id already in flight, and any request at all while authentication is on
(its checks and policy stay in one place, gateway.auth). Flask then answers it as it always did,
the body it reads being the one read here.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Response

from gateway import audit, hosts, streamable
from gateway.auth import ANONYMOUS
from gateway.protocol import jsonrpc
from gateway.protocol.versions import SERVED_VERSIONS
from gateway.runtime import RuntimeError_
from gateway.session import Session
from gateway.web import Gateway, origin_allowed

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
SESSION_KEY = "HTTP_MCP_SESSION_ID"
VERSION_KEY = "HTTP_MCP_PROTOCOL_VERSION"
REQUEST_ID_KEY = "HTTP_X_REQUEST_ID"


def target(path: str) -> tuple[str, str | None] | None:
    """(server name, namespace) when `path` is a server's MCP endpoint, as the Flask routes spell it."""
    parts = path.split("/")
    # /api/v1/servers/NAME/mcp and /api/v1/namespaces/NS/servers/NAME/mcp
    if len(parts) == 6 and parts[:4] == ["", "api", "v1", "servers"] and parts[5] == "mcp" and parts[4]:
        return parts[4], None
    if (len(parts) == 8 and parts[:4] == ["", "api", "v1", "namespaces"] and parts[5] == "servers"
            and parts[7] == "mcp" and parts[4] and parts[6]):
        return parts[6], parts[4]
    return None


class FastPath:
    """WSGI middleware: calls on open Streamable HTTP sessions here, everything else to `app`."""

    def __init__(self, app: WsgiApp, gw: Gateway, recorder: audit.Recorder, authenticating: bool) -> None:
        self.app = app
        self.gw = gw
        self.recorder = recorder
        self.enabled = not authenticating
        config = gw.config
        self.max_body = config.max_body
        self.allowed_hosts = config.allowed_hosts
        self.allowed_origins = config.allowed_origins
        self.loopback = hosts.is_loopback(config.bind)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()
        if not self.enabled or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        where = target(environ.get("PATH_INFO", ""))
        if where is None or not self._admissible(environ):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        environ["wsgi.input"] = io.BytesIO(body)  # Flask reads the same body, should it take over
        call = self._call(environ, where, body)
        if call is None:
            return self.app(environ, start_response)
        session, message = call
        request_id = environ.get(REQUEST_ID_KEY) or audit.new_request_id()
        try:
            response = streamable.answer(self.gw, session, message, False,
                                         accept=environ.get("HTTP_ACCEPT", "*/*"), environ=environ)
        except Exception as err:  # as the app's last error handler does
            log.exception("unhandled error")
            response = Response(jsonrpc.dumps({"error": {"code": "internal_error",
                                                         "message": f"internal error: {type(err).__name__}"}}),
                                status=500, content_type="application/json")
        response.headers[audit.REQUEST_ID_HEADER] = request_id
        name, namespace = where
        self.recorder.record(audit.describe(
            response, server=audit.server_label(name, namespace), operation="", messages=[message], started=started,
            request_id=request_id, caller=ANONYMOUS if self.recorder.auditing else None,
            with_arguments=self.recorder.with_arguments))
        return response(environ, start_response)

    def _admissible(self, environ: dict[str, Any]) -> bool:
        """What the guard (gateway.web.guard_request) lets through, and a session to serve."""
        length = environ.get("CONTENT_LENGTH")
        if not length or not length.isdigit() or int(length) > self.max_body or "HTTP_TRANSFER_ENCODING" in environ:
            return False
        if not hosts.host_allowed(environ.get("HTTP_HOST"), self.allowed_hosts, loopback=self.loopback):
            return False
        if not origin_allowed(environ.get("HTTP_ORIGIN"), self.allowed_origins):
            return False
        version = environ.get(VERSION_KEY)
        if SESSION_KEY not in environ or (version is not None and version not in SERVED_VERSIONS):
            return False
        can_stream, can_json = streamable.acceptable(environ.get("HTTP_ACCEPT", "*/*"))
        return can_stream or can_json

    def _call(self, environ: dict[str, Any], where: tuple[str, str | None],
              body: bytes) -> tuple[Session, dict[str, Any]] | None:
        """The session and the valid request to send on it; None when Flask is to answer."""
        try:
            ref = self.gw.runtime.resolve(*where)
        except RuntimeError_:
            return None
        session = streamable.session_for(self.gw.hub, environ[SESSION_KEY], ref)
        if session is None or session.bridge is None:
            return None
        message, malformed = jsonrpc.parse(body)
        if malformed is not None or jsonrpc.validate(message) is not None or jsonrpc.kind(message) != "request":
            return None
        if streamable.duplicate(session, message["id"]):
            return None
        self.gw.metrics.inc("nmcp_gateway_messages_total", transport="streamable-http", server=str(ref))
        return session, message
