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
| `NMCP_SESSION_TIMEOUT` | `3600` | seconds after which an unused Streamable HTTP session (no open stream) is closed |
| `NMCP_ALLOWED_ORIGINS` | (none) | browser Origins allowed besides localhost ones, comma-separated; `*` allows any |
| `NMCP_STOP_GRACE` | `5` | seconds between SIGTERM and SIGKILL when a local server stops |
| `NMCP_LOG_LINES` | `1000` | log lines kept per server for `GET .../logs` |
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
    session_timeout: float = 3600.0
    allowed_origins: tuple[str, ...] = ()
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


def _parse(name: str, raw: str) -> Any:
    if name == "manifests":
        return tuple(p for p in raw.split(os.pathsep) if p)
    if name in ("namespaces", "allowed_origins"):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if name == "runtime":
        return raw.strip() or "local"
    try:
        value = int(raw) if name == "log_lines" else float(raw)
    except ValueError as err:
        raise ConfigError(f"NMCP_{name.upper()}: expected a number, got {raw!r}") from err
    if value <= 0:
        raise ConfigError(f"NMCP_{name.upper()}: must be positive, got {raw!r}")
    return value
