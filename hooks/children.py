"""The Pod and Service a running server needs, built from scratch on every sync.

Metacontroller applies these objects as they are (3-way merge or server-side apply) and its
`Recreate` strategy replaces a Pod whose desired spec differs from the last one applied, so the
builders are deterministic: nothing here depends on the clock, the observed objects or the order
of anything. They hold only the fields we own (no status, no server-set metadata).

Under the local runtime (`nmcp up`) the same Pod says which process to run: the container's
command, args and env; its image may then be absent.
"""

from __future__ import annotations

from typing import Any

from nmcp.naming import child_name, label_value, server_labels
from nmcp.resources import LABEL_SERVER, Pool, Server

CONTAINER = "server"
PORT_NAME = "mcp"

# The "restricted" Pod Security Standard for the container; a server's spec.securityContext is
# laid over it (for images that must run as root, say).
RESTRICTED_CONTAINER: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# Terminating Pods still count against maxActive, so a stdio server gets a short grace period.
TERMINATION_GRACE_SECONDS = 10


def _env(server: Server, pool_name: str) -> list[dict[str, Any]]:
    ours = {"MCP_SERVER_NAME": server.name, "MCP_SERVER_POOL": pool_name}
    # Our two names win over the spec's: they are how a server learns who it is.
    env = [dict(e) for e in server.env if e.get("name") not in ours]
    return env + [{"name": name, "value": value} for name, value in ours.items()]


def new_container(server: Server, pool: Pool | None) -> dict[str, Any]:
    """The one container, named `server`, that runs the MCP server."""
    container: dict[str, Any] = {"name": CONTAINER}
    if server.image:
        container["image"] = server.image
    if server.command:
        container["command"] = list(server.command)
    if server.args:
        container["args"] = list(server.args)
    container["env"] = _env(server, pool.name if pool else server.pool)
    transport = server.transport
    if transport.is_http and transport.port:
        container["ports"] = [{"name": PORT_NAME, "containerPort": transport.port, "protocol": "TCP"}]
        # Ready means "accepts connections", so the gateway never reaches a server still booting.
        container["readinessProbe"] = {"tcpSocket": {"port": transport.port}, "periodSeconds": 2,
                                       "failureThreshold": 1}
    else:
        # stdio: the gateway attaches to the container's stdin and stdout.
        container.update({"stdin": True, "stdinOnce": False, "tty": False})
    resources = server.resources if server.resources is not None else (pool.default_resources if pool else None)
    if resources:
        container["resources"] = resources
    container["securityContext"] = {**RESTRICTED_CONTAINER, **(server.security_context or {})}
    # The last log lines become the termination message: a Degraded condition can quote them.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


def new_pod(server: Server, pool: Pool | None) -> dict[str, Any]:
    """The Pod of a running server."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": child_name(server.name),
            "namespace": server.namespace,
            "labels": server_labels(server),
        },
        "spec": {
            "containers": [new_container(server, pool)],
            "restartPolicy": "Always",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        },
    }


def new_service(server: Server) -> dict[str, Any]:
    """The Service in front of a server with an HTTP transport (same name as its Pod)."""
    port = server.transport.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": child_name(server.name),
            "namespace": server.namespace,
            "labels": server_labels(server),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_SERVER: label_value(server.name)},
            "ports": [{"name": PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def desired_children(server: Server, pool: Pool | None) -> list[dict[str, Any]]:
    """Everything a running server needs: its Pod, and a Service for HTTP transports."""
    children = [new_pod(server, pool)]
    if server.transport.is_http and server.transport.port:
        children.append(new_service(server))
    return children
