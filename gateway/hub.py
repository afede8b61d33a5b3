"""Every client session and bridge of the gateway process (workers = 1: sessions live here).

The hub holds them within limits (gateway.limits): at most `max_sessions` per server, a new one
beyond that refused with the time until one expires (`SessionLimitReached`), and a Streamable
HTTP session nobody uses closed after its server's session timeout. A 2026-07-28 request asking
its client for input waits here (parked) for the retry that brings it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from gateway import limits
from gateway.auth import ANONYMOUS, Identity, identity
from gateway.auth.access import visible_tools
from gateway.bridge import Bridge
from gateway.runtime import Runtime, RuntimeError_, ServerRef
from gateway.session import Session, new_session_id
from gateway.spares import Spares, new_instance_key
from nmcp.model.vocabulary import Reason

log = logging.getLogger(__name__)

PARKED_TIMEOUT = 300.0  # how long a 2026 request asking for input waits for the client's retry


class SessionLimitReached(Exception):
    """A server holds as many client sessions as it may; one may expire in `retry_after` seconds."""

    def __init__(self, ref: ServerRef, limit: int, retry_after: int) -> None:
        super().__init__(f"the server {ref} holds {limit} client sessions, its limit (NMCP_MAX_SESSIONS); "
                         f"retry in {retry_after}s, or end unused sessions (DELETE)")
        self.ref = ref
        self.limit = limit
        self.retry_after = retry_after


class IdentityRequired(RuntimeError_):
    """A server with `isolation: identity` reached without an authenticated caller."""

    code = "identity_required"
    http_status = 403


def caller_of(who: Identity) -> tuple[str, str]:
    return who.via, who.subject


def expirable(session: Session) -> bool:
    """A Streamable HTTP session with no stream open: only its client's next request shows it is
    still wanted. (An SSE session ends with its stream; a stateless one with its request.)"""
    return session.transport == "streamable-http" and not session.main_attached and not session.streams


class Hub:
    """Every client session and bridge of this gateway process."""

    def __init__(self, runtime: Runtime, http_settings: Any = None, *,
                 max_sessions: int = 1000, session_timeout: float | None = None,
                 max_message: int | None = None) -> None:
        self.runtime = runtime
        self.http_settings = http_settings
        self.max_sessions = max_sessions  # per server
        self.configured_timeout = session_timeout  # None: each server's own (limits.session_timeout_for)
        self.max_message = max_message
        self.sessions: dict[str, Session] = {}
        self._by_server: dict[ServerRef, dict[str, Session]] = {}  # the same sessions, by server
        self.bridges: dict[tuple[ServerRef, str | None], Bridge] = {}
        self.parked: dict[str, Session] = {}  # stateless sessions waiting for a retry, by requestState
        self.spares = Spares(runtime)

    def open(self, ref: ServerRef, transport: str, isolation: str = "shared") -> Session:
        """A new session on the server's bridge (on an instance of its own under `isolation: session`).

        SessionLimitReached when the server holds `max_sessions` (stateless requests are not
        sessions that stay: they do not count).
        """
        if transport != "stateless":
            self._admit(ref)
        key = (ref, self._instance_key(ref, isolation))
        session = Session(new_session_id(), ref, transport)
        session.visible_tools = visible_tools()
        session.caller = caller_of(identity())
        bridge = self.bridges.get(key)
        if bridge is None:
            bridge = Bridge(self.runtime, ref, instance=key[1], per_session=isolation == "session",
                            http_settings=self.http_settings,
                            max_message=self.max_message,
                            count_sessions=lambda: sum(len(b.sessions) for b in self.bridges_of(ref)))
            self.bridges[key] = bridge
        bridge.attach(session)
        if transport != "stateless":
            self.sessions[session.id] = session
            self._by_server.setdefault(ref, {})[session.id] = session
        return session

    def _instance_key(self, ref: ServerRef, isolation: str) -> str | None:
        """The instance a new session of an isolated server runs on (None: the shared upstream).

        Per session: a warm spare, else a new random key; never reused, so an instance never serves
        another client. Per identity: a digest of the verifier and subject, so each caller has one
        instance of their own.
        """
        if isolation not in ("session", "identity") or not getattr(self.runtime, "isolates_sessions", False):
            return None
        if isolation == "session":
            return self.spares.take(ref) or new_instance_key()
        caller = identity()
        if caller.via == "anonymous":
            raise IdentityRequired(f"{ref} runs one instance per authenticated caller (isolation: identity), and "
                                   "this gateway authenticates no one: set NMCP_AUTH_ISSUER or "
                                   "NMCP_AUTH_TOKENREVIEW_AUDIENCES", reason=Reason.IDENTITY_REQUIRED)
        return hashlib.sha256(f"{caller.via}\0{caller.subject}".encode()).hexdigest()[:16]

    def _admit(self, ref: ServerRef) -> None:
        held = self._by_server.get(ref, {})
        if len(held) < self.max_sessions:
            return
        timeout = self.session_timeout(ref)
        now = time.monotonic()
        self._close_stale([s for s in held.values() if expirable(s)], timeout, now)  # what is due goes first
        idle_for = [now - s.touched_at for s in held.values() if expirable(s)]
        admission = limits.admit_session(len(held), self.max_sessions, idle_for, timeout)
        if not admission.admitted:
            raise SessionLimitReached(ref, self.max_sessions, admission.retry_after)

    def session_timeout(self, ref: ServerRef) -> float:
        """Seconds an unused session of this server lives."""
        try:
            idle = self.runtime.get(ref).server.effective_idle_timeout
        except RuntimeError_:
            idle = None  # the server went away: its sessions get the default
        return limits.session_timeout_for(self.configured_timeout, idle)

    def get(self, session_id: str, caller: Identity = ANONYMOUS) -> Session | None:
        """The open session `session_id` names, if `caller` opened it."""
        session = self.sessions.get(session_id)
        return session if session is not None and session.caller == caller_of(caller) else None

    def park(self, session: Session) -> None:
        """Keep a stateless session whose request waits for the client's input (requestState = its id)."""
        self.parked[session.id] = session

    def unpark(self, request_state: str, caller: Identity = ANONYMOUS) -> Session | None:
        """The parked request `request_state` names, if `caller` made it."""
        session = self.parked.get(request_state)
        if session is None or session.caller != caller_of(caller):
            return None
        return self.parked.pop(request_state)

    def close(self, session: Session) -> None:
        """End a session: wake its streams, detach it from its bridge."""
        self.sessions.pop(session.id, None)
        held = self._by_server.get(session.ref)
        if held is not None:
            held.pop(session.id, None)
            if not held:
                del self._by_server[session.ref]
        self.parked.pop(session.id, None)
        session.end()
        bridge = session.bridge
        if bridge is not None:
            bridge.detach(session)
            if bridge.instance is not None and bridge.closed:
                self.bridges.pop((bridge.ref, bridge.instance), None)

    def expire(self) -> int:
        """Close the Streamable HTTP sessions nobody used for their server's session timeout and
        that hold no stream, and parked requests whose client never came back; release the
        per-identity instances nobody used as long, and spares older than that."""
        now = time.monotonic()
        closed = 0
        for ref, held in list(self._by_server.items()):
            closed += self._close_stale([s for s in held.values() if expirable(s)], self.session_timeout(ref), now)
        for (ref, instance), bridge in list(self.bridges.items()):
            if instance is not None and not bridge.sessions and now - bridge.touched_at > self.session_timeout(ref):
                bridge.close()
                self.bridges.pop((ref, instance), None)
        self.spares.expire()
        return closed + self._close_stale(list(self.parked.values()), PARKED_TIMEOUT, now)

    def _close_stale(self, candidates: list[Session], timeout: float, now: float) -> int:
        stale = [s for s in candidates if now - s.touched_at > timeout]
        for session in stale:
            log.info("session %s on %s expired after %.0fs unused", session.id, session.ref, now - session.touched_at)
            self.close(session)
        return len(stale)

    def bridges_of(self, ref: ServerRef) -> Iterator[Bridge]:
        return (b for (r, _), b in list(self.bridges.items()) if r == ref)

    def sessions_of(self, ref: ServerRef) -> int:
        return len(self._by_server.get(ref, {}))

    def heartbeat(self) -> int:
        """Record activity for servers with calls in flight; returns how many were touched.

        The idle timeout counts from the last activity, and a call that is still running is
        activity: without this a tool call longer than `idleTimeout` would lose its server.
        """
        busy = [b for b in list(self.bridges.values()) if b.pending]
        for bridge in busy:
            bridge._touch_runtime()
        return len(busy)

    def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            self.close(session)
        for bridge in list(self.bridges.values()):
            bridge.close()
        self.spares.close()
