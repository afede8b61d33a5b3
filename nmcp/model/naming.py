"""Deterministic names and label values for what nmcp creates.

Metacontroller matches desired children to observed ones by name, so names must be a pure
function of the server. Kubernetes caps label values and Service names at 63 characters; longer
inputs are cut and suffixed with a short hash so that two long names never collide.
"""

from __future__ import annotations

import hashlib

from nmcp.model.resources import LABEL_INSTANCE, LABEL_POOL, LABEL_SERVER, Server

_MAX_LABEL = 63


def _fit(text: str, limit: int = _MAX_LABEL) -> str:
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{text[: limit - 9].rstrip('-.')}-{digest}"


def label_value(name: str) -> str:
    """A label value standing for a (possibly longer) object name."""
    return _fit(name)


def child_name(server_name: str) -> str:
    """Name of the Pod and the Service of a server: a DNS-1035 label (dots become dashes)."""
    base = "mcp-" + server_name.replace(".", "-")
    return _fit(base)


def pod_name(server_name: str, instance: str = "") -> str:
    """Name of a server's Pod; an isolated server's instance Pods add their instance key."""
    if not instance:
        return child_name(server_name)
    # The key is cut from the base, never from the key: two instances never share a name.
    return f"{_fit('mcp-' + server_name.replace('.', '-'), _MAX_LABEL - len(instance) - 1)}-{instance}"


def server_labels(server: Server) -> dict[str, str]:
    """Labels on every child of a server; the MCPServer controller relates Pods by them."""
    labels = {
        LABEL_SERVER: label_value(server.name),
        LABEL_POOL: label_value(server.pool),
        "app.kubernetes.io/name": "mcp-server",
        "app.kubernetes.io/instance": label_value(server.name),
        "app.kubernetes.io/managed-by": "nmcp",
    }
    if server.instance:
        labels[LABEL_INSTANCE] = server.instance
    return labels
