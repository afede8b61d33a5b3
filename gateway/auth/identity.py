"""Who is calling: what a verified token says about its bearer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Identity:
    """A verified caller. `subject` is the token's `sub` (a TokenReview's username); `via` says which
    verifier vouched for it: `jwt`, `tokenreview`, or `anonymous` when authentication is off."""

    subject: str
    via: str
    groups: tuple[str, ...] = ()
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)


ANONYMOUS = Identity(subject="anonymous", via="anonymous")
