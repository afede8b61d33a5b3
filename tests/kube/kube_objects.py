"""Small builders and status writers for the Kubernetes tests (what Metacontroller and a kubelet
would write; the tests play both)."""

from __future__ import annotations

import json
from typing import Any

from nmcp.model.resources import API_VERSION
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
