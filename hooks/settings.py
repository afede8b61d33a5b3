"""The operator's settings table: every `NMCP_OPERATOR_*` and `NMCP_HOOKS_*` variable `nmcp operator`
reads, with its type, default and meaning, declared once (see nmcp.model.settings).

Read once at start-up by hooks/gunicorn.conf.py and `hooks.app.create_app`; the `nmcp operator`
flags override them.
"""

from __future__ import annotations

from dataclasses import dataclass

from nmcp.model import settings as s
from nmcp.model.settings import setting

# A pool sync carries every MCPServer of its namespace in full (managedFields included):
# thousands of servers are tens of megabytes.
DEFAULT_MAX_BODY = 256 * 1024 * 1024


@dataclass(frozen=True)
class OperatorSettings:
    bind: str = setting("NMCP_OPERATOR_BIND", "0.0.0.0:8000", "address the webhooks listen on", s.address)
    workers: int = setting(
        "NMCP_OPERATOR_WORKERS", 0, "gunicorn worker processes; 0: one per CPU, at least 2", s.count_or_zero,
        shown="(one per CPU, at least 2)")
    threads: int = setting("NMCP_OPERATOR_THREADS", 4, "threads per worker (keep-alive connections)", s.count)
    access_log: bool = setting("NMCP_OPERATOR_ACCESS_LOG", True, "one line per hook call", s.flag)
    log_level: str = setting(
        "NMCP_OPERATOR_LOG_LEVEL", "info", "log level", s.choice("debug", "info", "warning", "error", "critical"))
    max_body: int = setting(
        "NMCP_HOOKS_MAX_CONTENT_LENGTH", DEFAULT_MAX_BODY, "largest hook request body in bytes; a larger one "
        "gets 413", s.count)

    @classmethod
    def from_env(cls) -> OperatorSettings:
        return s.from_env(cls)
