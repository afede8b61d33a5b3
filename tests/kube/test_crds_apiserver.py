"""The CRDs on a real kube-apiserver: they apply, print their columns, default and reject as the
schema says, and `nmcp.model.schema.validate` (what `nmcp up` checks locally) agrees with the API server.

The CRDs are installed the way the README tells users to: `nmcp export ... | kubectl apply -f -`.
"""

from __future__ import annotations

import copy
import json
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from hooks.sync import sync_pool
from nmcp.model import schema
from nmcp.model.resources import format_time_precise
from tests.kube.kube_objects import set_status
from tests.support import ROOT, VENV_BIN
from tests.support.kubeapi import KubeAPI

pytestmark = pytest.mark.kube

API = "nmcp.nwrx.io/v1"


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> KubeAPI:
    """The API server with the CRDs applied through the real CLI."""
    for resource in ("server", "pool"):
        exported = subprocess.run([str(VENV_BIN / "nmcp"), "export", "--type", "crd", "--resource", resource],
                                  check=True, capture_output=True, text=True).stdout
        kube_api.kubectl("apply", "-f", "-", input=exported)
    kube_api.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/mcpservers.nmcp.nwrx.io", "crd/mcppools.nmcp.nwrx.io")
    return kube_api


@pytest.fixture(scope="module")
def ns(kube: KubeAPI) -> str:
    return kube.create_namespace("crds")


def server(name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": API, "kind": "MCPServer", "metadata": meta, "spec": spec}


def pool(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "MCPPool", "metadata": {"name": name}, "spec": spec}


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def test_examples_apply_as_written(kube: KubeAPI) -> None:
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert examples
    try:
        for path in examples:
            out = kube.kubectl("apply", "-f", str(path)).stdout
            assert "created" in out or "configured" in out or "unchanged" in out
        got = json.loads(kube.kubectl("get", "mcpservers,mcppools", "-n", "default", "-o", "json").stdout)
        kinds = {(item["kind"], item["metadata"]["name"]) for item in got["items"]}
        for path in examples:
            doc = yaml.safe_load(path.read_text())
            assert (doc["kind"], doc["metadata"]["name"]) in kinds
    finally:
        for path in examples:
            kube.kubectl("delete", "-f", str(path), "--ignore-not-found")


def test_server_columns_show_the_phase_written_to_status(kube: KubeAPI, ns: str) -> None:
    kube.apply(server("columns", {"image": "mcp/time:1", "pool": "team"}), namespace=ns)
    before = table(kube.kubectl("get", "mcpservers", "-n", ns).stdout)
    assert before[0] == ["NAME", "STATUS", "POOL", "INSTANCES", "AGE"]
    assert before[1][:2] == ["columns", "team"]  # no status yet: the STATUS and INSTANCES cells are empty

    # What Metacontroller does with the sync hook's answer: a merge patch on /status.
    set_status(kube, ns, "columns", phase="Ready", runningInstances=3)
    rows = table(kube.kubectl("get", "mcp", "-n", ns).stdout)  # the short name works too
    assert rows[0] == ["NAME", "STATUS", "POOL", "INSTANCES", "AGE"]
    assert rows[1][:4] == ["columns", "Ready", "team", "3"]


def test_status_phase_outside_the_enum_is_rejected(kube: KubeAPI, ns: str) -> None:
    kube.apply(server("bad-phase", {"image": "mcp/time:1"}), namespace=ns)
    resp = kube.session().patch(f"{kube.base_url}/apis/nmcp.nwrx.io/v1/namespaces/{ns}/mcpservers/bad-phase/status",
                                data=json.dumps({"status": {"phase": "Running"}}),
                                headers={"Content-Type": "application/merge-patch+json"}, timeout=10)
    assert resp.status_code == 422
    assert 'status.phase: Unsupported value: "Running"' in resp.json()["message"]


def test_pool_columns_show_the_counts_written_to_status(kube: KubeAPI, ns: str) -> None:
    kube.apply(pool("counted", {"maxActive": 5}), namespace=ns)
    resp = kube.session().patch(f"{kube.base_url}/apis/nmcp.nwrx.io/v1/namespaces/{ns}/mcppools/counted/status",
                                data=json.dumps({"status": {"active": 3, "idle": 1, "waiting": 2, "stopped": 4}}),
                                headers={"Content-Type": "application/merge-patch+json"}, timeout=10)
    resp.raise_for_status()
    rows = table(kube.kubectl("get", "mcppools", "-n", ns).stdout)
    assert rows[0] == ["NAME", "ACTIVE", "IDLE", "WAITING", "AGE"]
    assert rows[1][:4] == ["counted", "3", "1", "2"]


def test_defaults_are_applied(kube: KubeAPI, ns: str) -> None:
    kube.apply([server("defaulted", {"image": "mcp/time:1"}), pool("defaulted", {})], namespace=ns)
    srv = json.loads(kube.kubectl("get", "mcpserver", "defaulted", "-n", ns, "-o", "json").stdout)
    assert srv["spec"] == {"image": "mcp/time:1", "pool": "default", "transport": {"type": "stdio"},
                           "startTimeout": "2m", "isolation": "shared"}
    got = json.loads(kube.kubectl("get", "mcppool", "defaulted", "-n", ns, "-o", "json").stdout)
    assert got["spec"] == {"maxActive": 10, "maxIdle": 2, "defaultIdleTimeout": "5m"}


@pytest.mark.parametrize(("spec", "message"), [
    pytest.param({"image": "a", "transport": {"type": "websocket"}},
                 'spec.transport.type: Unsupported value: "websocket": supported values: "stdio", "sse", '
                 '"streamable-http"', id="unknown-transport"),
    pytest.param({"image": "a", "idleTimeout": -5},
                 "spec.idleTimeout in body should be greater than or equal to 0", id="negative-idle-timeout"),
    pytest.param({"image": "a", "idleTimeout": "-5s"},
                 'spec.idleTimeout: Invalid value: "-5s": spec.idleTimeout in body should match', id="minus-5s"),
    pytest.param({"image": "a", "transport": {"type": "sse", "port": 0}},
                 "spec.transport.port in body should be greater than or equal to 1", id="port-zero"),
])
def test_invalid_server_is_rejected_with_the_schema_message(kube: KubeAPI, ns: str, spec: dict[str, Any],
                                                            message: str) -> None:
    proc = kube.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(server("invalid", spec)), check=False)
    assert proc.returncode != 0
    assert 'The MCPServer "invalid" is invalid' in proc.stderr
    assert message in proc.stderr
    assert kube.kubectl("get", "mcpserver", "invalid", "-n", ns, check=False).returncode != 0


# One table of manifests, judged by the API server (through kubectl, which adds its own check of
# unknown fields from the published OpenAPI schema) and by nmcp.model.schema: the verdicts must agree.
GOOD = [
    pytest.param(server("minimal", {"image": "mcp/time:1"}), id="minimal"),
    pytest.param(server("command-only", {"command": ["uvx", "mcp-server-time"]}), id="command-only"),
    pytest.param(server("sse", {"image": "a", "transport": {"type": "sse", "port": 8000, "path": "/events"}}),
                 id="sse"),
    pytest.param(server("http", {"image": "a", "transport": {"type": "streamable-http", "port": 3000}}),
                 id="streamable-http"),
    pytest.param(server("int-timeout", {"image": "a", "idleTimeout": 60, "startTimeout": 30}), id="int-seconds"),
    pytest.param(server("compound", {"image": "a", "idleTimeout": "1m30s", "startTimeout": "500ms"}),
                 id="compound-duration"),
    pytest.param(server("env", {"image": "a", "env": [
        {"name": "PLAIN", "value": "x"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}]}), id="env-valueFrom"),
    pytest.param(server("res", {"image": "a", "resources": {"limits": {"cpu": "500m", "memory": "1Gi"},
                                                            "requests": {"cpu": 1}}}), id="resources"),
    pytest.param(server("root", {"image": "a", "isolation": "session",
                                 "securityContext": {"runAsNonRoot": False, "anything": {"goes": 1}}}),
                 id="security-context"),
    pytest.param(server("pooled", {"image": "a", "pool": "team.a"}), id="dotted-pool"),
    pytest.param(pool("full", {"maxActive": 5, "maxIdle": 0, "defaultIdleTimeout": "60s",
                               "defaultResources": {"limits": {"memory": "256Mi"}}}), id="pool-full"),
    pytest.param(pool("empty", {}), id="pool-empty"),
]
BAD = [
    pytest.param(server("ws", {"image": "a", "transport": {"type": "websocket"}}), id="unknown-transport"),
    pytest.param(server("neg", {"image": "a", "idleTimeout": -5}), id="negative-idle"),
    pytest.param(server("negs", {"image": "a", "idleTimeout": "-5s"}), id="minus-5s"),
    pytest.param(server("words", {"image": "a", "idleTimeout": "5 minutes"}), id="duration-words"),
    pytest.param(server("zero-start", {"image": "a", "startTimeout": 0}), id="start-timeout-zero"),
    pytest.param(server("port", {"image": "a", "transport": {"type": "sse", "port": 70000}}), id="port-too-big"),
    pytest.param(server("path", {"image": "a", "transport": {"type": "sse", "port": 1, "path": "mcp"}}),
                 id="relative-path"),
    pytest.param(server("poolname", {"image": "a", "pool": "Bad_Pool"}), id="bad-pool-name"),
    pytest.param(server("unknown", {"image": "a", "bogus": 1}), id="unknown-field"),
    pytest.param(server("unknown-t", {"image": "a", "transport": {"type": "stdio", "host": "x"}}),
                 id="unknown-transport-field"),
    pytest.param(server("envname", {"image": "a", "env": [{"value": "x"}]}), id="env-without-name"),
    pytest.param(server("empty-image", {"image": ""}), id="empty-image"),
    pytest.param(server("cmd", {"image": "a", "command": "uvx mcp-server-time"}), id="command-not-a-list"),
    pytest.param(server("iso", {"image": "a", "isolation": "thread"}), id="unknown-isolation"),
    pytest.param(server("cpu", {"image": "a", "resources": {"limits": {"cpu": "lots"}}}), id="bad-quantity"),
    pytest.param(server("Upper", {"image": "a"}), id="bad-name"),
    pytest.param(pool("neg", {"maxActive": -1}), id="pool-negative-max-active"),
    pytest.param(pool("forever", {"defaultIdleTimeout": "forever"}), id="pool-bad-duration"),
    pytest.param(pool("extra", {"maxActive": 1, "minActive": 1}), id="pool-unknown-field"),
]


def server_verdict(kube: KubeAPI, ns: str, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kube.kubectl("apply", "--dry-run=server", "-o", "json", "-n", ns, "-f", "-",
                        input=yaml.safe_dump(doc), check=False)


@pytest.mark.parametrize("doc", GOOD)
def test_parity_good_manifests_get_the_same_defaults(kube: KubeAPI, ns: str, doc: dict[str, Any]) -> None:
    local, problems = schema.validate(copy.deepcopy(doc), namespace=ns)
    proc = server_verdict(kube, ns, doc)
    assert proc.returncode == 0, proc.stderr
    assert problems == []
    assert local is not None
    assert local["spec"] == json.loads(proc.stdout)["spec"]


@pytest.mark.parametrize("doc", BAD)
def test_parity_bad_manifests_are_refused_on_the_same_field(kube: KubeAPI, ns: str, doc: dict[str, Any]) -> None:
    local, problems = schema.validate(copy.deepcopy(doc), namespace=ns)
    proc = server_verdict(kube, ns, doc)
    assert proc.returncode != 0, f"the API server accepted what nmcp.model.schema refuses: {problems}"
    assert local is None
    assert problems
    # The field nmcp.model.schema names is the one the API server (or kubectl's schema check) names.
    leaf = problems[0].field.rsplit(".", 1)[-1].split("[")[0]
    assert leaf in proc.stderr, (problems, proc.stderr)


def test_children_of_the_pool_hook_are_accepted(kube: KubeAPI) -> None:
    """A pool sync in Metacontroller's v2 shape, built from objects read back from the API server:
    every Pod and Service the hook returns is created for real."""
    namespace = kube.create_namespace("children")
    now = datetime.now(UTC)
    requested = {"nmcp.nwrx.io/requested-at": format_time_precise(now)}
    kube.apply([
        pool("default", {"maxActive": 10, "defaultResources": {"limits": {"memory": "256Mi"}}}),
        {**server("stdio", {"image": "mcp/time:1", "args": ["--local-timezone", "UTC"],
                            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}}]}),
         "metadata": {"name": "stdio", "annotations": requested}},
        {**server("sse", {"image": "mcp/everything:1", "transport": {"type": "sse", "port": 3001}}),
         "metadata": {"name": "sse", "annotations": requested}},
        {**server("http.dotted", {"image": "mcp/everything:1", "resources": {"limits": {"cpu": "1"}},
                                  "transport": {"type": "streamable-http", "port": 3000, "path": "/v1/mcp"}}),
         "metadata": {"name": "http.dotted", "annotations": requested}},
    ], namespace=namespace)
    got = json.loads(kube.kubectl("get", "mcpservers,mcppools", "-n", namespace, "-o", "json").stdout)["items"]
    parent = next(o for o in got if o["kind"] == "MCPPool")
    related = {f"{namespace}/{o['metadata']['name']}": o for o in got if o["kind"] == "MCPServer"}
    request = {
        "controller": {"metadata": {"name": "nmcp-mcppool"}, "spec": {"generateSelector": True}},
        "parent": parent,
        "children": {"Pod.v1": {}, "Service.v1": {}},
        "related": {"MCPServer.nmcp.nwrx.io/v1": related},
        "finalizing": False,
    }
    response = sync_pool(request, now)
    children = response["children"]
    kinds = sorted(child["kind"] for child in children)
    assert kinds == ["Pod", "Pod", "Pod", "Service", "Service"]
    for child in children:
        proc = kube.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(child), check=False)
        assert proc.returncode == 0, (child["kind"], child["metadata"]["name"], proc.stderr)
    pods = json.loads(kube.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert sorted(p["metadata"]["name"] for p in pods) == sorted(c["metadata"]["name"] for c in children
                                                                 if c["kind"] == "Pod")
