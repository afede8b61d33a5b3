"""Which `Host` headers the gateway answers: the defence against DNS rebinding.

A page on an attacker's domain can make a victim's browser resolve that domain to the gateway's
address (a rebound name) and read its answers: the browser sends no `Origin` on a simple GET, but
it always sends the attacker's name as `Host`. So a request is answered only when its Host is:

* an IP address (a rebound request always carries a name; probes and scrapers use the Pod's IP);
* `localhost` (or `*.localhost`), when the gateway listens on a loopback address;
* a name the operator allowed (`NMCP_ALLOWED_HOSTS`: exact names, `.example.com` for every name
  under a domain, `*` for any). The chart allows the gateway Service's names.

A request without Host (HTTP/1.0) comes from no browser and is answered.
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost",)
# Verdicts kept per (Host, settings): every request asks, and a gateway is reached by a handful
# of names. A client sending ever new names only makes the oldest ones be worked out again.
VERDICTS_KEPT = 256


def host_name(header: str) -> str:
    """The name or address in a Host header, without port, brackets, case or trailing dot."""
    return (urlsplit(f"//{header.strip()}").hostname or "").rstrip(".")


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=16)
def is_loopback(address: str) -> bool:
    """Whether a bind address (HOST:PORT) listens on loopback only."""
    host = host_name(address)
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=VERDICTS_KEPT)
def host_allowed(header: str | None, allowed: tuple[str, ...], *, loopback: bool) -> bool:
    """Whether to answer a request with this Host header (see the module docstring)."""
    if header is None:
        return True
    name = host_name(header)
    if not name:
        return False
    if is_ip(name) or "*" in allowed:
        return True
    if loopback and (name in LOOPBACK_NAMES or name.endswith(".localhost")):
        return True
    entries = (entry.lower().rstrip(".") for entry in allowed)
    return any(name == entry or (entry.startswith(".") and name.endswith(entry)) for entry in entries)
