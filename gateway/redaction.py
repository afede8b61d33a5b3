"""Which values of a server's environment are secret, and their removal from its log.

One rule, for every runtime: a variable of a server's `spec.env` is secret when it comes from
`valueFrom` (a secretKeyRef in a cluster; under the local runtimes, a value taken by name from the
gateway's own environment, which is how a local server is handed a secret) or when its name
contains one of SECRET_WORDS (case-insensitive). Its value is replaced by REDACTED in every line
of the server's log that nmcp shows or writes: `GET .../logs`, and the gateway's own log.
Values shorter than MIN_SECRET are left alone: a "1" or a "true" would blank out half the log,
and is no secret.

What each runtime can know: the local runtimes resolve every variable themselves, so every secret
value is redacted. On Kubernetes the kubelet resolves `valueFrom`, and the gateway cannot read
Secrets (its Role grants none, deliberately), so only literal `value`s of secret-named variables
are redacted there; the container log itself, as `kubectl logs` shows it, is the cluster's.

Redaction is by exact value: a secret the server transforms (encodes, splits across lines) before
printing it is not recognised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "KEY", "AUTH")
MIN_SECRET = 4
REDACTED = "[redacted]"


def is_secret(item: Mapping[str, Any]) -> bool:
    """Whether one EnvVar of a spec is secret by the rule above."""
    name = str(item.get("name", "")).upper()
    return "valueFrom" in item or any(word in name for word in SECRET_WORDS)


def secret_values(env: Sequence[Mapping[str, Any]], resolved: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The secret values among `env` (a spec's EnvVar list), longest first.

    `resolved`: what the process actually gets, by name (a local runtime knows it); without it,
    only literal `value`s can be known (the Kubernetes runtime)."""
    found = set()
    for item in env:
        if not is_secret(item):
            continue
        name = str(item.get("name", ""))
        value = resolved.get(name, "") if resolved is not None else str(item.get("value", ""))
        if len(value) >= MIN_SECRET:
            found.add(value)
    return tuple(sorted(found, key=len, reverse=True))


def redact(line: str, secrets: Sequence[str]) -> str:
    """`line` with every occurrence of each secret replaced by REDACTED (longest secrets first)."""
    for secret in secrets:
        if secret in line:
            line = line.replace(secret, REDACTED)
    return line
