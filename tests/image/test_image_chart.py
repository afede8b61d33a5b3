"""The image run the way the chart runs it: each Deployment's container, as `helm template` renders
it, run under podman with the settings a kubelet applies (tests/image/podman.py): its args and
env, user 10001, a read-only root filesystem with only the chart's emptyDirs writable, every
capability dropped, no privilege escalation, the memory limit, and the service account token where
the Pod mounts one. Probes and clients reach it on loopback, where the chart's ports put it.

- the operator (hooks) container passes its readiness probe and answers a Metacontroller pool sync;
- the gateway container, given the token of the chart's gateway ServiceAccount (bound to the
  chart's Role in the served namespace) the way a kubelet mounts it, talks to the suite's real
  kube-apiserver, passes its readiness probe, refuses a caller without a token, and for an agent
  with its ServiceAccount token (verified by TokenReview) lists the MCPServers and serves an MCP
  session through an HTTP MCP server.

No network plugin runs here. A kubelet would give the gateway cluster DNS, where an HTTP server's
Service name `mcp-<server>.<namespace>.svc` resolves (gateway/runtimes/kubernetes.py); here the MCP
server runs on a loopback port and the container's /etc/hosts maps that name to 127.0.0.1
(`--add-host`), so the gateway connects to the very URL it computes, and the test plays
Metacontroller and the kubelet by writing the Ready status once the gateway asks for the server.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from nmcp.model.naming import child_name
from nmcp.model.resources import ANN_REQUESTED_AT, parse_time
from tests.gateway_http.servers import running
from tests.helm.chart import one, template
from tests.image.podman import ServiceAccount, kubelet_flags, probe_url, run, service_account_files, wait_answering
from tests.kube.kube_cluster import render_gateway_rbac
from tests.kube.kube_objects import annotations, mcpserver, set_status
from tests.support import ROOT, free_port
from tests.support.kubeapi import KubeAPI

HTTP_SERVER = Path(__file__).with_name("http_server.py")
POOL_SYNC = ROOT / "tests" / "hooks" / "fixtures" / "pool-sync" / "admits-requested"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def chart_container(tmp_path: Path, component: str, sets: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Pod spec of the chart's `component` Deployment (hooks or gateway) and its one container."""
    objects = template(tmp_path / "helm", sets=sets)
    pod = one(objects, "Deployment", f"nmcp-{component}")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def shifted(value: Any, delta: timedelta) -> Any:
    """`value` with every RFC 3339 timestamp in it moved by `delta` (same precision)."""
    if isinstance(value, dict):
        return {key: shifted(item, delta) for key, item in value.items()}
    if isinstance(value, list):
        return [shifted(item, delta) for item in value]
    if isinstance(value, str) and TIMESTAMP.fullmatch(value):
        moved = parse_time(value) + delta  # type: ignore[operator]
        return moved.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if "." in value else "%Y-%m-%dT%H:%M:%SZ")
    return value


def test_the_operator_container_answers_a_pool_sync(image: str, tmp_path: Path) -> None:
    port = free_port()
    pod, container = chart_container(tmp_path, "hooks", {"hooks.port": str(port)})
    # The recorded request as of now: the fixture's clock ("now") is moved to the real one,
    # in whole seconds, so every age in it stays what the recorded response was computed from.
    recorded = json.loads(POOL_SYNC.with_suffix(".request.json").read_text())
    expected = json.loads(POOL_SYNC.with_suffix(".response.json").read_text())
    delta = timedelta(seconds=round((datetime.now(UTC) - parse_time(recorded.pop("now"))).total_seconds()))
    body = shifted(recorded, delta)
    with run(container["image"], container["args"], kubelet_flags(pod, container)) as box:
        wait_answering(box, probe_url(container, "readinessProbe"))
        answer = requests.post(f"http://127.0.0.1:{port}/pool/sync", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert [(c["kind"], c["metadata"]["name"]) for c in got["children"]] == \
            [(c["kind"], c["metadata"]["name"]) for c in expected["children"]]
        counts = ("active", "idle", "waiting", "stopped", "servers")
        assert {k: got["status"][k] for k in counts} == {k: expected["status"][k] for k in counts}
        assert [(c["type"], c["status"], c["reason"]) for c in got["status"]["conditions"]] == \
            [(c["type"], c["status"], c["reason"]) for c in expected["status"]["conditions"]]
        assert requests.get(probe_url(container, "livenessProbe"), timeout=10).status_code == 200


def play_metacontroller(kube: KubeAPI, ns: str, name: str, done: threading.Event) -> None:
    """Once the gateway asks for `name` (its requested-at annotation), report it Ready, as the
    hooks, Metacontroller and a kubelet would once its Pod and Service run."""
    deadline = time.monotonic() + 120
    while not done.is_set() and time.monotonic() < deadline:
        if ANN_REQUESTED_AT in annotations(kube, ns, name):
            set_status(kube, ns, name, phase="Ready", conditions=[
                {"type": "Ready", "status": "True", "reason": "Running", "message": "test: the server runs"}])
            return
        time.sleep(0.1)


async def echo_session(url: str, headers: dict[str, str]) -> tuple[list[str], str]:
    async with create_mcp_http_client(headers=headers) as http, \
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        tools = await client.list_tools()
        answer = await client.call_tool("echo", {"text": "through the gateway container"})
        return [tool.name for tool in tools.tools], answer.content[0].text  # type: ignore[union-attr]


@pytest.mark.kube
def test_the_gateway_container_serves_an_http_mcp_server(image: str, kube: KubeAPI, tmp_path: Path) -> None:
    ns, release_ns = kube.create_namespace("img"), kube.create_namespace("release")
    rbac = render_gateway_rbac(release_ns, [ns], tmp_path)
    kube.apply(rbac)
    (account,) = [doc["metadata"]["name"] for doc in rbac if doc["kind"] == "ServiceAccount"]
    port = free_port()
    pod, container = chart_container(tmp_path, "gateway", {"gateway.namespaces[0]": ns, "gateway.port": str(port)})
    assert pod["serviceAccountName"] == account
    token = kube.service_account_token(release_ns, account)
    # Authentication is on in the chart: the caller is an in-cluster agent with its ServiceAccount
    # token (TokenReview, the chart's audience) and a policy that lets it use the server.
    kube.apply([{"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPAccessPolicy",
                 "metadata": {"name": "agent", "namespace": ns},
                 "spec": {"subjects": [{"serviceAccount": f"{ns}/agent"}], "servers": ["web"],
                          "operations": ["request"]}}])
    agent = {"Authorization": f"Bearer {kube.service_account_token(ns, 'agent', audiences=['nmcp'])}"}
    mounted = ServiceAccount(service_account_files(tmp_path / "serviceaccount", token, kube.ca_file, release_ns),
                             host="127.0.0.1", port=kube.port)
    base = f"http://127.0.0.1:{port}"
    done = threading.Event()
    service, upstream_port = f"{child_name('web')}.{ns}.svc", free_port()  # the name cluster DNS would resolve
    with running([sys.executable, str(HTTP_SERVER), str(upstream_port), service], upstream_port):
        transport = {"type": "streamable-http", "port": upstream_port, "path": "/mcp"}
        kube.apply(mcpserver("web", image="example.org/mcp/web:1", transport=transport), namespace=ns)
        helper = threading.Thread(target=play_metacontroller, args=(kube, ns, "web", done), daemon=True)
        with run(container["image"], container["args"], kubelet_flags(pod, container, mounted),
                 add_hosts={service: "127.0.0.1"}) as box:
            try:
                wait_answering(box, probe_url(container, "readinessProbe"))
                assert requests.get(f"{base}/api/v1/servers", timeout=10).status_code == 401
                listed = requests.get(f"{base}/api/v1/servers", headers=agent, timeout=10).json()["servers"]
                assert [(s["namespace"], s["name"], s["phase"]) for s in listed] == [(ns, "web", "Idle")]
                helper.start()
                tools, text = anyio.run(echo_session, f"{base}/api/v1/servers/web/mcp", agent)
                assert "echo" in tools
                assert text == "through the gateway container"
                server = requests.get(f"{base}/api/v1/namespaces/{ns}/servers/web", headers=agent, timeout=10).json()
                assert server["phase"] == "Ready"
                assert requests.get(probe_url(container, "livenessProbe"), timeout=10).status_code == 200
            finally:
                done.set()
