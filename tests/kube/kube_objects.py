"""Small builders and status writers for the Kubernetes tests (what Metacontroller and a kubelet
would write; the tests play both)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from nmcp.resources import API_VERSION
from tests.support.kubeapi import KubeAPI


def mcpserver(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "MCPServer", "metadata": {"name": name},
            "spec": spec or {"image": "mcp/time:1"}}


def set_status(kube: KubeAPI, ns: str, name: str, **status: Any) -> dict[str, Any]:
    """Merge-patch an MCPServer's /status, as Metacontroller writes the sync hook's answer."""
    resp = kube.session().patch(
        f"{kube.base_url}/apis/nmcp.nwrx.io/v1/namespaces/{ns}/mcpservers/{name}/status",
        data=json.dumps({"status": status}), headers={"Content-Type": "application/merge-patch+json"}, timeout=10)
    resp.raise_for_status()
    return resp.json()


def get_server(kube: KubeAPI, ns: str, name: str) -> dict[str, Any]:
    resp = kube.session().get(f"{kube.base_url}/apis/nmcp.nwrx.io/v1/namespaces/{ns}/mcpservers/{name}", timeout=10)
    resp.raise_for_status()
    return resp.json()


def annotations(kube: KubeAPI, ns: str, name: str) -> dict[str, str]:
    return get_server(kube, ns, name)["metadata"].get("annotations") or {}


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll `check` until it is truthy (for counters that nothing signals); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s")
