"""The gateway's settings: defaults here, overrides from `NMCP_*` environment variables.

Read once, when the app is created (`Config.from_env`); nothing else reads the environment.

| variable | default | meaning |
|---|---|---|
| `NMCP_RUNTIME` | `local` | `local`, `kubernetes`, or `module:function` returning a Runtime |
| `NMCP_MANIFESTS` | (none) | MCPServer manifest files/directories, `os.pathsep`-separated (local) |
| `NMCP_NAMESPACES` | (none) | namespaces to serve, comma-separated (kubernetes) |
| `NMCP_START_TIMEOUT` | `120` | seconds a client is held while its server starts (a server's own `startTimeout` wins) |
| `NMCP_KEEPALIVE` | `15` | seconds between SSE keep-alive comments; also how long a Streamable HTTP |
|  |  | response may wait to be plain JSON before it turns into an SSE stream |
| `NMCP_SESSION_TIMEOUT` | (the server's) | seconds after which a Streamable HTTP session nobody uses (no open stream, |
|  |  | no request) is closed. Unset: the server's `idleTimeout` (5 minutes when it sets |
|  |  | none), at least 60 s: a session lasts as long as its server would stay up for it |
| `NMCP_MAX_SESSIONS` | `1000` | client sessions (SSE and Streamable HTTP) one server may hold; beyond it a new |
|  |  | session gets 429 with `Retry-After` (when the least recently used one expires) |
| `NMCP_ALLOWED_ORIGINS` | (none) | browser Origins allowed besides localhost ones, comma-separated; `*` allows any. |
|  |  | Checked on the MCP endpoints and on every state-changing request (POST, DELETE) |
| `NMCP_MAX_BODY` | `33554432` | largest request body in bytes (32 MiB: a 16 MB MCP message and its JSON |
|  |  | escaping pass); a larger one gets 413 before it is read |
| `NMCP_MAX_MESSAGE` | `8388608` | largest message in bytes the gateway writes to an upstream server (8 MiB: |
|  |  | servers on the TypeScript SDK exit on a stdio line over 10 MiB); a larger client |
|  |  | request gets a JSON-RPC error instead of reaching the server |
| `NMCP_WORKER_CONNECTIONS` | `16384` | connections the gateway holds at once (idle streams included); the |
|  |  | open-file limit is raised to fit at start where the system allows it |
| `NMCP_HEADER_TIMEOUT` | `10` | seconds a client has to send a complete request head (from connecting, or from |
|  |  | its first byte on a kept-alive connection); a slower one is disconnected |
| `NMCP_STOP_GRACE` | `5` | seconds between SIGTERM and SIGKILL when a local server stops |
| `NMCP_LOG_LINES` | `1000` | log lines kept per server for `GET .../logs` |

`NMCP_BIND`, `NMCP_LOG_LEVEL` and `NMCP_GRACEFUL_TIMEOUT` are gunicorn's, read by gunicorn.conf.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """An NMCP_* variable holds a value the gateway cannot use; the message names it."""


@dataclass(frozen=True)
class Config:
    runtime: str = "local"
    manifests: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    start_timeout: float = 120.0
    keepalive: float = 15.0
    session_timeout: float | None = None  # None: each server's idle timeout (see session_timeout_for)
    max_sessions: int = 1000
    allowed_origins: tuple[str, ...] = ()
    max_body: int = 32 * 1024 * 1024
    max_message: int = 8 * 1024 * 1024
    worker_connections: int = 16384
    header_timeout: float = 10.0
    stop_grace: float = 5.0
    log_lines: int = 1000
    extra: Mapping[str, str] = field(default_factory=dict)  # every NMCP_* variable, for runtime factories

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"NMCP_{f.name.upper()}")
            if raw is None or f.name == "extra":
                continue
            values[f.name] = _parse(f.name, raw)
        values["extra"] = {k: v for k, v in env.items() if k.startswith("NMCP_")}
        return cls(**values)

    def seconds(self, name: str, default: float, *, allow_zero: bool = False) -> float:
        """A runtime's own duration setting from `extra` (e.g. NMCP_KUBE_WRITE_INTERVAL)."""
        raw = self.extra.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError as err:
            raise ConfigError(f"{name}: expected a number of seconds, got {raw!r}") from err
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigError(f"{name}: must be {'zero or more' if allow_zero else 'positive'}, got {raw!r}")
        return value


_INTEGERS = frozenset({"log_lines", "max_sessions", "max_body", "max_message", "worker_connections"})


def _parse(name: str, raw: str) -> Any:
    if name == "manifests":
        return tuple(p for p in raw.split(os.pathsep) if p)
    if name in ("namespaces", "allowed_origins"):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if name == "runtime":
        return raw.strip() or "local"
    integer = name in _INTEGERS
    try:
        value = int(raw) if integer else float(raw)
    except ValueError as err:
        raise ConfigError(f"NMCP_{name.upper()}: expected {'an integer' if integer else 'a number'}, "
                          f"got {raw!r}") from err
    if value <= 0:
        raise ConfigError(f"NMCP_{name.upper()}: must be positive, got {raw!r}")
    return value
