"""Every child the hooks return comes back from the real API server as given.

Metacontroller merges the desired child onto the observed one and compares (tests/kube/dynamic_apply.py);
a field the API server drops or rewrites (a `false` stdinOnce, an empty env value, `1000m`) looks
like a change on every sync, and under `Recreate` that deletes the Pod each time. Here each kind of
child the pool hook can return, with every option of the MCPServer spec, is created on the real
kube-apiserver as Metacontroller creates it (with its last-applied annotation and controller-uid
label), read back, and merged again: nothing may differ.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from hooks.sync import sync_pool
from tests.hooks.builders import NOW, pool, pool_request, server
from tests.kube.dynamic_apply import LAST_APPLIED, apply_update, differences, last_applied
from tests.support.kubeapi import KubeAPI

pytestmark = pytest.mark.kube

ODD_QUANTITIES = {"cpu": "1000m", "memory": "1024Mi", "ephemeral-storage": "1.5Gi"}
ODD_REQUESTS = {"cpu": 0.5, "memory": "129e6"}

SPECS: list[Any] = [
    pytest.param({}, id="stdio-image"),
    pytest.param({"command": ["mcp-server-time"], "args": ["--local-timezone", "UTC"], "env": [
        {"name": "PLAIN", "value": "x"},
        {"name": "EMPTY", "value": ""},
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token", "optional": False}}},
        {"name": "CONFIG", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MEMORY", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1024Ki"}}},
        {"name": "MCP_SERVER_NAME", "value": "spoofed"},
    ]}, id="stdio-command-args-env"),
    pytest.param({"resources": {"limits": ODD_QUANTITIES, "requests": ODD_REQUESTS}}, id="stdio-resources"),
    pytest.param({"securityContext": {"runAsNonRoot": False, "runAsUser": 0, "readOnlyRootFilesystem": False,
                                      "privileged": False, "capabilities": {"add": []}}}, id="stdio-security-context"),
    pytest.param({"transport": {"type": "streamable-http", "port": 8080, "path": "/mcp"}}, id="streamable-http"),
    pytest.param({"transport": {"type": "sse", "port": 3001, "path": "/sse"},
                  "resources": {"requests": {"cpu": ".25"}}}, id="sse-resources"),
    # (`instances` is the demand annotation's builder argument: an isolated server runs instances.)
    pytest.param({"isolation": "session", "idleTimeout": "5m", "startTimeout": 30, "instances": {"a1": (-1, None)}},
                 id="timeouts-isolation"),
]


def desired_children(ns: str, spec: dict[str, Any], *, name: str = "rt", default_resources: Any = None
                     ) -> list[dict[str, Any]]:
    """What the pool hook returns for one requested server (exactly, not a hand-made copy)."""
    requested = server(name, ns=ns, requested=-1, **spec)
    answer = sync_pool(pool_request(pool(ns=ns, resources=default_resources), [requested]), NOW)
    assert answer["children"], answer["status"]
    return answer["children"]


def create_as_metacontroller(kube: KubeAPI, desired: dict[str, Any]) -> dict[str, Any]:
    """Create a child the way Metacontroller does; return it as the API server stored it."""
    obj = copy.deepcopy(desired)
    obj["metadata"].setdefault("labels", {})["controller-uid"] = "0000-test"
    want = copy.deepcopy(obj)
    obj["metadata"].setdefault("annotations", {})[LAST_APPLIED] = last_applied(want)
    kind = "pods" if obj["kind"] == "Pod" else "services"
    url = f"{kube.base_url}/api/v1/namespaces/{obj['metadata']['namespace']}/{kind}"
    created = kube.session().post(url, data=json.dumps(obj), headers={"Content-Type": "application/json"}, timeout=10)
    assert created.status_code == 201, created.text
    stored = kube.session().get(f"{url}/{obj['metadata']['name']}", timeout=10)
    stored.raise_for_status()
    return stored.json()


def changes_on_next_sync(observed: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    want = copy.deepcopy(desired)
    want["metadata"].setdefault("labels", {})["controller-uid"] = "0000-test"
    return differences(observed, apply_update(observed, want))


@pytest.mark.parametrize("spec", SPECS)
def test_children_survive_a_round_trip(kube: KubeAPI, spec: dict[str, Any]) -> None:
    ns = kube.create_namespace("rt")
    for child in desired_children(ns, spec):
        observed = create_as_metacontroller(kube, child)
        assert changes_on_next_sync(observed, child) == [], child["kind"]


def test_pool_default_resources_survive_a_round_trip(kube: KubeAPI) -> None:
    ns = kube.create_namespace("rt")
    (pod,) = desired_children(ns, {}, default_resources={"limits": {"memory": "0.5Gi", "cpu": "2000m"}})
    assert changes_on_next_sync(create_as_metacontroller(kube, pod), pod) == []


@pytest.mark.parametrize(("field", "value"), [
    pytest.param("stdinOnce", False, id="false-bool"),
    pytest.param("workingDir", "", id="empty-string"),
])
def test_the_check_finds_what_the_api_server_drops(kube: KubeAPI, field: str, value: Any) -> None:
    """The check above can fail: a field the API server drops (what the hooks once returned) is found."""
    ns = kube.create_namespace("rt")
    (pod,) = desired_children(ns, {})
    pod["spec"]["containers"][0][field] = value
    observed = create_as_metacontroller(kube, pod)
    found = changes_on_next_sync(observed, pod)
    assert any(field in line for line in found), found


def test_an_unchanged_desired_pod_with_its_answer_is_no_change(kube: KubeAPI) -> None:
    """The pool hands back a running Pod's answers-request annotation as it read it."""
    ns = kube.create_namespace("rt")
    request = pool_request(pool(ns=ns), [server("kept", ns=ns, requested=-1)])
    (pod,) = sync_pool(request, NOW)["children"]
    observed = create_as_metacontroller(kube, pod)
    again = copy.deepcopy(request)
    again["children"]["Pod.v1"] = {f"{ns}/{pod['metadata']['name']}": observed}
    # A later request came in while the Pod runs: the Pod still answers the first one.
    again["related"]["MCPServer.nmcp.nwrx.io/v1"][f"{ns}/kept"]["metadata"]["annotations"][
        "nmcp.nwrx.io/requested-at"] = "2026-11-24T12:00:05.000000Z"
    (desired,) = sync_pool(again, NOW)["children"]
    assert changes_on_next_sync(observed, desired) == []
