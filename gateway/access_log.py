"""gunicorn's logger for the gateway: the access log only when NMCP_ACCESS_LOG asks for it.

gunicorn formats an access line for every request as soon as any logging configuration is given
(gunicorn.conf.py gives one, for the format of every other line), whether or not `accesslog` is
set; building that line (a dict of every request header and response detail) was about a tenth
of the gateway's CPU per MCP call. Off, MCP calls and REST operations are still recorded: the
audit stream (NMCP_AUDIT) has an event per request, /metrics counts them.

Imported by gunicorn's master before the worker forks: plain gunicorn, nothing gevent patches.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger


class GatewayLogger(Logger):
    """gunicorn's Logger, writing access lines only when `accesslog` is set."""

    access_wanted = False

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.access_wanted = bool(cfg.accesslog)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.access_wanted:
            super().access(resp, req, environ, request_time)
