"""A cluster with a fake kubelet for the Kubernetes tests: a Node the API server proxies attach and
log requests to, Pods "running" real processes there, and MCP spoken over the attach."""

from __future__ import annotations

import json
import os
import queue
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from gateway.kube.attach import AttachConnection
from nmcp.model.naming import child_name
from tests.kube.fakekubelet import FakeKubelet
from tests.kube.kube_objects import mcpserver, set_status
from tests.support import NODE_BIN, ROOT, VENV_BIN
from tests.support.kubeapi import KubeAPI

# A test waits this long for a line on an attach before failing (rather than hanging the suite).
ANSWER_WITHIN = 60.0
SERVER_ARGV = ["sh", "-c", f"echo 'time server starting' >&2; exec {VENV_BIN / 'mcp-server-time'}"]


@dataclass
class Cluster:
    kube: KubeAPI
    kubelet: FakeKubelet
    node: str


def make_kubelet(kube: KubeAPI, protocols: tuple[str, ...]) -> Iterator[Cluster]:
    cert, key = kube.serving_certificate("kubelet")
    kubelet = FakeKubelet(cert, key, protocols)
    node = f"fake-node-{kubelet.port}"
    session = kube.session()
    resp = session.post(f"{kube.base_url}/api/v1/nodes", json={"metadata": {"name": node}}, timeout=10)
    resp.raise_for_status()
    status = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                         "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}}}}
    session.patch(f"{kube.base_url}/api/v1/nodes/{node}/status", data=json.dumps(status),
                  headers={"Content-Type": "application/merge-patch+json"}, timeout=10).raise_for_status()
    try:
        yield Cluster(kube, kubelet, node)
    finally:
        kubelet.close()
        session.delete(f"{kube.base_url}/api/v1/nodes/{node}", timeout=10)


def pod_status(restarts: int = 0) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
        {"name": "server", "ready": True, "restartCount": restarts, "image": "mcp/time:1", "imageID": "mcp/time@sha",
         "state": {"running": {"startedAt": now}}}]}


def run_server(cluster: Cluster, ns: str, name: str = "time") -> str:
    """An MCPServer that is Ready, its Pod 'running' on the fake kubelet: what the hooks and a kubelet make."""
    cluster.kube.apply(mcpserver(name), namespace=ns)
    return start_pod(cluster, ns, name)


def start_pod(cluster: Cluster, ns: str, name: str) -> str:
    """The Pod of MCPServer `name` created, running on the fake kubelet, and the server's status Ready."""
    kube = cluster.kube
    pod = child_name(name)
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "labels": {"nmcp.nwrx.io/server": name}},
                "spec": {"nodeName": cluster.node,
                         "containers": [{"name": "server", "image": "mcp/time:1", "stdin": True}]}}, namespace=ns)
    patch_pod_status(kube, ns, pod, pod_status())
    cluster.kubelet.add(ns, pod, SERVER_ARGV)
    set_status(kube, ns, name, phase="Ready", podName=pod)
    return pod


def patch_pod_status(kube: KubeAPI, ns: str, pod: str, status: dict[str, Any]) -> None:
    kube.session().patch(f"{kube.base_url}/api/v1/namespaces/{ns}/pods/{pod}/status",
                         data=json.dumps({"status": status}), headers={"Content-Type": "application/merge-patch+json"},
                         timeout=10).raise_for_status()


def receive(conn: AttachConnection, what: str) -> bytes | None:
    """The next stdout line of the attach (None once it ended); fails naming `what` rather than hang."""
    try:
        return conn.receive(timeout=ANSWER_WITHIN)
    except queue.Empty:
        raise AssertionError(f"no {what} within {ANSWER_WITHIN:g}s") from None


def call(conn: AttachConnection, ident: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON-RPC request over the attach; the answer with the same id (notifications skipped)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": method}
    if params is not None:
        message["params"] = params
    conn.send(json.dumps(message).encode())
    while True:
        line = receive(conn, f"an answer to {method}")
        assert line is not None, f"the attach ended: {conn.ended}"
        answer = json.loads(line)
        if answer.get("id") == ident:
            return answer


def initialize(conn: AttachConnection) -> dict[str, Any]:
    answer = call(conn, 1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                          "clientInfo": {"name": "nmcp-test", "version": "1"}})
    conn.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())
    return answer


def current_time(conn: AttachConnection, ident: int) -> str:
    answer = call(conn, ident, "tools/call", {"name": "get_current_time", "arguments": {"timezone": "UTC"}})
    assert "result" in answer, answer
    return answer["result"]["content"][0]["text"]


GATEWAY_RBAC = ("templates/gateway-serviceaccount.yaml", "templates/gateway-role.yaml",
                "templates/gateway-rolebinding.yaml", "templates/gateway-tokenreview.yaml")


def render_gateway_rbac(release_ns: str, served: list[str], tmp: Path, release: str = "nmcp") -> list[dict[str, Any]]:
    """The gateway's ServiceAccount, Roles and RoleBindings (and its TokenReview ClusterRole) exactly as
    the chart renders them."""
    env = dict(os.environ, HELM_CACHE_HOME=str(tmp), HELM_CONFIG_HOME=str(tmp), HELM_DATA_HOME=str(tmp))
    args = [str(NODE_BIN / "helm"), "template", release, str(ROOT / "helm" / "nmcp"), "--namespace", release_ns]
    for i, namespace in enumerate(served):
        args += ["--set", f"gateway.namespaces[{i}]={namespace}"]
    for template in GATEWAY_RBAC:
        args += ["--show-only", template]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]
