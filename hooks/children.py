"""The Pod and Service a running server needs, built from scratch on every sync.

Metacontroller decides whether a child changed by merging the desired object onto the observed
one and comparing, and its `Recreate` strategy deletes a Pod that changed. So every object built
here must come back from the API server exactly as given:

* deterministic: nothing depends on the clock or the order of anything; the one observed value
  (the request a running Pod answers) is handed back as it was read;
* only fields the API server stores as given: no default-valued field it drops (a `false`
  `stdinOnce`, an empty `value`, an empty list), quantities in their stored form
  (`nmcp.model.quantity`), integers as integers. tests/kube/test_children_roundtrip.py proves it on a
  real API server for every option of the spec;
* only fields we own: no status, no server-set metadata.

Under the local runtime (`nmcp up`) the same Pod says which process to run: the container's
command, args and env; its image may then be absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from nmcp.model.naming import child_name, label_value, pod_name, server_labels
from nmcp.model.quantity import canonical_quantity
from nmcp.model.resources import ANN_ANSWERS_REQUEST, ANN_SPEC_HASH, LABEL_SERVER, Pool, Server

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


def compact(value: Any) -> Any:
    """`value` without the empty strings, lists and maps (and nulls) the API server would drop:
    each means the same as an absent field, and each would read back as a change."""
    if isinstance(value, Mapping):
        kept = {str(k): compact(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [v for v in (compact(item) for item in value) if v not in (None, "", [], {})]
    return value


def _env_var(var: Mapping[str, Any]) -> dict[str, Any]:
    result = compact(var)
    field_ref = (result.get("valueFrom") or {}).get("resourceFieldRef")
    if isinstance(field_ref, dict) and "divisor" in field_ref:
        with contextlib.suppress(ValueError):  # an unreadable divisor is the API server's to refuse
            field_ref["divisor"] = canonical_quantity(field_ref["divisor"])
    return result


def _env(server: Server, pool_name: str) -> list[dict[str, Any]]:
    ours = {"MCP_SERVER_NAME": server.name, "MCP_SERVER_POOL": pool_name}
    # Our two names win over the spec's: they are how a server learns who it is.
    env = [_env_var(e) for e in server.env if e.get("name") not in ours]
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
        # stdio: the gateway attaches to the container's stdin and stdout. (stdinOnce and tty
        # stay unset: false is their default, and the API server drops a false it is given.)
        container["stdin"] = True
    resources = server.resources if server.resources is not None else (pool.default_resources if pool else None)
    if resources:
        container["resources"] = resources
    container["securityContext"] = compact({**RESTRICTED_CONTAINER, **(server.security_context or {})})
    # The last log lines become the termination message: a Degraded condition can quote them.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


def new_pod_spec(server: Server, pool: Pool | None) -> dict[str, Any]:
    """The spec of a server's Pod: what runs, and the one thing a spec edit can change."""
    return {
        "containers": [new_container(server, pool)],
        "restartPolicy": "Always",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    }


def spec_hash(pod_spec: Mapping[str, Any]) -> str:
    """A short digest of a Pod spec; the Pod carries it so a newer server spec can be told apart."""
    return hashlib.sha256(json.dumps(pod_spec, sort_keys=True).encode()).hexdigest()[:16]


def new_pod(server: Server, pool: Pool | None, answers: str | None = None) -> dict[str, Any]:
    """The Pod of a running server; `answers` is the request it was started for, as recorded on it."""
    spec = new_pod_spec(server, pool)
    annotations = {ANN_SPEC_HASH: spec_hash(spec)}
    if answers:
        annotations[ANN_ANSWERS_REQUEST] = answers
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(server.name, server.instance),
            "namespace": server.namespace,
            "labels": server_labels(server),
            "annotations": annotations,
        },
        "spec": spec,
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


def desired_children(server: Server, pool: Pool | None, answers: str | None = None) -> list[dict[str, Any]]:
    """Everything a running server needs: its Pod, and a Service for HTTP transports."""
    children = [new_pod(server, pool, answers)]
    if server.transport.is_http and server.transport.port:
        children.append(new_service(server))
    return children
