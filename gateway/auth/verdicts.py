"""Token verdicts kept for a few seconds, so that a busy client costs one verification, not one per call.

Bounded twice: an entry lives at most its own deadline (never past the token's expiry), and the
cache holds at most `size` entries, the oldest going first, however many tokens clients send.
Keys are digests: the cache never holds a token.
"""

from __future__ import annotations

import hashlib
import time
from typing import Generic, TypeVar

T = TypeVar("T")

SECONDS = 10.0
SIZE = 10000


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class Verdicts(Generic[T]):
    def __init__(self, seconds: float = SECONDS, size: int = SIZE) -> None:
        self.seconds = seconds
        self.size = size
        self._entries: dict[str, tuple[float, T]] = {}  # key -> (monotonic deadline, verdict), oldest first

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: str, verdict: T, lifetime: float | None = None) -> None:
        """Keep `verdict` for `seconds`, or for `lifetime` when that is shorter (the token expires)."""
        keep = self.seconds if lifetime is None else min(self.seconds, lifetime)
        if keep <= 0:
            return
        now = time.monotonic()
        if len(self._entries) >= self.size:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            while len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]
        self._entries.pop(key, None)
        self._entries[key] = (now + keep, verdict)
