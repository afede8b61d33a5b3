"""How long an HTTP upstream session waits for what, in seconds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SETTINGS_ENV = {
    "connect_timeout": "NMCP_UPSTREAM_CONNECT_TIMEOUT",
    "request_timeout": "NMCP_UPSTREAM_REQUEST_TIMEOUT",
    "close_timeout": "NMCP_UPSTREAM_CLOSE_TIMEOUT",
    "reconnect_delay": "NMCP_UPSTREAM_RECONNECT_DELAY",
}


@dataclass(frozen=True)
class UpstreamSettings:
    """Timeouts of HTTP upstream sessions, in seconds."""

    connect_timeout: float = 10.0
    # How long a POST may wait for its answer (JSON body, or the next bytes of its SSE stream);
    # long enough for slow tools, short enough that a hung server does not hold a request forever.
    request_timeout: float = 300.0
    # How long close() waits for the DELETE and for its reader threads. (SSE's endpoint event and
    # Streamable HTTP's GET stream must come within connect_timeout.)
    close_timeout: float = 5.0
    # Pause before reopening a GET stream the server ended cleanly, unless the server sent `retry`.
    reconnect_delay: float = 1.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> UpstreamSettings:
        """Defaults overridden by `NMCP_UPSTREAM_*` variables; ValueError naming a bad one."""
        values: dict[str, float] = {}
        for name, var in SETTINGS_ENV.items():
            raw = environ.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a number of seconds") from None
            if not value > 0 or value == float("inf"):
                raise ValueError(f"{var}={raw!r} must be a positive, finite number of seconds")
            values[name] = value
        return cls(**values)
