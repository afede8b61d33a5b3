"""How long an HTTP upstream session waits for what, in seconds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UpstreamSettings:
    """Timeouts of HTTP upstream sessions, in seconds (the gateway fills them from its settings table)."""

    connect_timeout: float = 10.0
    # How long a POST may wait for its answer (JSON body, or the next bytes of its SSE stream);
    # long enough for slow tools, short enough that a hung server does not hold a request forever.
    request_timeout: float = 300.0
    # How long close() waits for the DELETE and for its reader threads. (SSE's endpoint event and
    # Streamable HTTP's GET stream must come within connect_timeout.)
    close_timeout: float = 5.0
    # Pause before reopening a GET stream the server ended cleanly, unless the server sent `retry`.
    reconnect_delay: float = 1.0
