"""Warm spare instances of servers with `isolation: session`.

Each session of such a server runs on an instance of its own, and every 2026-07-28 request is a
session of one request: without spares, each would wait for a cold start. So a new session takes
a spare (an instance started for no one, that has served no one) when there is one, and asks for
one new spare while this gateway holds fewer than the server's `status.warmSpares` (its pool's
`maxIdle`): one after sequential sessions, as many as arrived together after a burst, never more
than maxIdle. A spare is never handed out twice: taking it removes it from here, and the
session's end releases it like any instance.

Spares are requested with `spare=True`, so the pool admits them only after every client's unit,
counts them as idle (maxIdle bounds them, and a client waiting for a slot evicts them) and stops
one after the server's idle timeout, which is also how long this gateway offers it. Nobody keeps
spares of a server nobody uses: they are only asked for when a session takes one.
"""

from __future__ import annotations

import logging
import secrets
import time

import gevent

from gateway.runtime import Runtime, RuntimeError_, ServerRef

log = logging.getLogger(__name__)


def new_instance_key() -> str:
    """A random instance key, never reused (gateway.hub)."""
    return secrets.token_hex(8)


class Spares:
    """The spare instances this gateway asked for, by server, oldest first."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.held: dict[ServerRef, list[tuple[str, float]]] = {}  # (instance key, asked for at, monotonic)

    def take(self, ref: ServerRef) -> str | None:
        """A spare instance of the server for a new session (None: there is none), and a new spare
        asked for in the background while fewer than the server's `warmSpares` are held."""
        try:
            server = self.runtime.get(ref).server
        except RuntimeError_:
            return None
        self._drop_stale(ref, server.effective_idle_timeout)
        held = self.held.pop(ref, [])
        key = held.pop(0)[0] if held else None
        if len(held) < server.status_warm_spares:
            wanted = new_instance_key()
            held.append((wanted, time.monotonic()))
            gevent.spawn(self._ask, ref, wanted)
        if held:
            self.held[ref] = held
        return key

    def _ask(self, ref: ServerRef, key: str) -> None:
        if not any(k == key for k, _ in self.held.get(ref, [])):
            return  # already taken: its session asked for it as its own
        try:
            self.runtime.request(ref, key, spare=True)
        except RuntimeError_ as err:  # the server went away: so do its spares
            log.info("%s: asking for a spare instance failed: %s", ref, err)
            self._forget(ref, key)

    def expire(self) -> None:
        """Release the spares the pool has stopped for their idle timeout (their entries would stay)."""
        for ref in list(self.held):
            try:
                idle = self.runtime.get(ref).server.effective_idle_timeout
            except RuntimeError_:
                idle = 0.0
            self._drop_stale(ref, idle)

    def _drop_stale(self, ref: ServerRef, idle_timeout: float) -> None:
        now = time.monotonic()
        held = self.held.get(ref, [])
        for key, _ in [(k, t) for k, t in held if now - t >= idle_timeout]:
            self._forget(ref, key)
            self._release(ref, key)

    def _forget(self, ref: ServerRef, key: str) -> None:
        held = [(k, t) for k, t in self.held.get(ref, []) if k != key]
        if held:
            self.held[ref] = held
        else:
            self.held.pop(ref, None)

    def _release(self, ref: ServerRef, key: str) -> None:
        try:
            self.runtime.release(ref, key)
        except RuntimeError_ as err:
            log.info("%s: releasing spare instance %s failed: %s", ref, key, err)

    def close(self) -> None:
        """The gateway stops: its spares are nobody's."""
        for ref, held in list(self.held.items()):
            for key, _ in held:
                self._release(ref, key)
        self.held.clear()
