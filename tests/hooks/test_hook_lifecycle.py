"""Properties of the pure hook functions that no single fixture shows."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import kubernetes_validate
import pytest

from hooks import lifecycle
from hooks.children import new_pod, new_service
from hooks.sync import customize_server, sync_pool, sync_server
from nmcp.model.resources import read_pool, read_server
from nmcp.model.vocabulary import Phase
from tests.hooks.builders import NOW, POD_KEY, SERVER_KEY, pod, pool, pool_request, server, server_request
from tests.hooks.cases import CASES, call

pytestmark = pytest.mark.usefixtures("no_network")

SYNC_CASES = [c for c in CASES if c.hook.endswith(("sync", "finalize"))]


@pytest.mark.parametrize("case", SYNC_CASES, ids=lambda c: c.id)
def test_status_is_stable_when_nothing_changed(case: Any) -> None:
    """Fed its own status back a moment later, a hook returns the same status (no sync hot loop)."""
    first = call(case.hook, case.request, case.now)
    again = copy.deepcopy(case.request)
    again["parent"]["status"] = first["status"]
    second = call(case.hook, again, case.now + timedelta(seconds=0.5))
    assert second["status"] == first["status"]
    assert second["children"] == first["children"]


def test_condition_time_changes_only_with_its_status() -> None:
    requested = server_request(server("time", requested=-5), pool())
    first = sync_server(requested, NOW)
    later = NOW + timedelta(seconds=30)
    running = copy.deepcopy(requested)
    running["parent"]["status"] = first["status"]
    running["related"][POD_KEY] = {"team/mcp-time": pod("time", created=-20, ready=-10, now=later)}
    second = sync_server(running, later)
    times = {c["type"]: c["lastTransitionTime"] for c in second["status"]["conditions"]}
    assert times == {"Ready": "2026-11-24T12:00:30Z", "Admitted": "2026-11-24T12:00:30Z"}
    assert second["status"]["phase"] == "Ready"


def test_restricted_security_context_with_the_servers_overrides() -> None:
    srv = read_server(server("root", securityContext={"runAsNonRoot": False, "runAsUser": 0}))
    container = new_pod(srv, read_pool(pool()))["spec"]["containers"][0]
    assert container["securityContext"] == {
        "runAsNonRoot": False, "runAsUser": 0, "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }
    default = new_pod(read_server(server("plain")), None)["spec"]["containers"][0]["securityContext"]
    assert default["runAsNonRoot"] is True


def test_env_keeps_the_spec_and_our_names_win() -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
           {"name": "MCP_SERVER_NAME", "value": "spoofed"}]
    srv = read_server(server("time", env=env))
    container = new_pod(srv, read_pool(pool("gpu")))["spec"]["containers"][0]
    assert container["env"] == [env[0], {"name": "MCP_SERVER_NAME", "value": "time"},
                                {"name": "MCP_SERVER_POOL", "value": "gpu"}]


def test_stdio_pods_keep_stdin_open_and_http_pods_expose_their_port() -> None:
    stdio = new_pod(read_server(server("a")), None)["spec"]["containers"][0]
    # stdinOnce and tty default to false, and the API server drops a false it is given: returning
    # them would read as a changed Pod on every sync (tests/kube/test_children_roundtrip.py).
    assert stdio["stdin"] is True
    assert "stdinOnce" not in stdio and "tty" not in stdio
    assert "ports" not in stdio
    web = read_server(server("b", transport={"type": "sse", "port": 9000}))
    container = new_pod(web, None)["spec"]["containers"][0]
    assert "stdin" not in container
    assert container["ports"] == [{"name": "mcp", "containerPort": 9000, "protocol": "TCP"}]
    assert new_service(web)["spec"]["ports"][0]["port"] == 9000


def test_children_are_deterministic_and_named_for_kubernetes() -> None:
    obj = server("My.Server.v2", transport={"type": "streamable-http", "port": 8080}, requested=-1)
    obj["metadata"]["name"] = "my.server.v2"
    request = pool_request(pool(), [obj])
    first = sync_pool(request, NOW)["children"]
    assert first == sync_pool(copy.deepcopy(request), NOW + timedelta(seconds=3))["children"]
    assert [c["metadata"]["name"] for c in first] == ["mcp-my-server-v2", "mcp-my-server-v2"]
    for child in first:
        kubernetes_validate.validate(child, "1.32.0", strict=True)


def test_long_names_still_make_valid_children() -> None:
    name = "a" * 200
    request = pool_request(pool(), [server(name, requested=-1, transport={"type": "sse", "port": 80})])
    children = sync_pool(request, NOW)["children"]
    assert len(children) == 2
    for child in children:
        kubernetes_validate.validate(child, "1.32.0", strict=True)
        assert len(child["metadata"]["name"]) <= 63
        assert all(len(v) <= 63 for v in child["metadata"]["labels"].values())
    # The server hook finds the Pod the pool made, by the same shortened label.
    observed = pod(name, ready=-1)
    verdict = sync_server(server_request(server(name, requested=-5), pool(), [observed]), NOW)
    assert verdict["status"]["podName"] == children[0]["metadata"]["name"]


def test_runtime_is_read_from_the_controller() -> None:
    assert lifecycle.runtime_of({"metadata": {"annotations": {"nmcp.nwrx.io/runtime": "local"}}}) == "local"
    assert lifecycle.runtime_of({"metadata": {}}) == "kubernetes"
    assert lifecycle.runtime_of(None) == "kubernetes"
    both = read_server(server("x", command=["mcp-server-time"]))
    assert lifecycle.spec_problems(both, "local") == ()
    assert lifecycle.spec_problems(both, "kubernetes") == ()
    neither = read_server(server("y", image=None))
    assert [p.field for p in lifecycle.spec_problems(neither, "kubernetes")] == ["spec.image"]
    assert [p.field for p in lifecycle.spec_problems(neither, "local")] == ["spec.command"]


ODD_OBJECTS = [
    pytest.param({}, id="empty"),
    pytest.param({"metadata": {"name": "x", "namespace": "team", "labels": None}, "status": None}, id="nulls"),
    pytest.param({"metadata": {"name": "x", "namespace": "team", "labels": {"nmcp.nwrx.io/server": "time"}},
                  "status": {"conditions": "yes", "containerStatuses": [None, 3, {"restartCount": "many"}]}},
                 id="wrong-types"),
    pytest.param({"metadata": {"name": "x", "namespace": "team", "labels": {"nmcp.nwrx.io/server": "time",
                                                                              "nmcp.nwrx.io/pool": "default"},
                               "creationTimestamp": "yesterday"},
                  "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": 5}]}},
                 id="bad-times"),
]


@pytest.mark.parametrize("odd", ODD_OBJECTS)
def test_odd_observed_objects_never_break_a_sync(odd: dict[str, Any]) -> None:
    """Observed objects come from the cluster, not from us: read defensively, never crash."""
    request = pool_request(pool(), [server("time", requested=-5)])
    request["children"][POD_KEY]["team/odd"] = odd
    request["related"][SERVER_KEY]["team/odd"] = odd
    response = sync_pool(request, NOW)
    assert response["status"]["servers"] >= 1
    srv = server_request(server("time", requested=-5), pool())
    srv["related"][POD_KEY]["team/odd"] = odd
    assert sync_server(srv, NOW)["status"]["phase"] in Phase.ALL


def test_customize_depends_only_on_spec_name_and_namespace() -> None:
    a = server("time", pool="gpu", requested=-5, sessions=3)
    b = server("time", pool="gpu", generation=9, status={"phase": "Ready"})
    assert customize_server({"parent": a}) == customize_server({"parent": b})


def test_resources_are_returned_as_the_api_server_stores_them() -> None:
    srv = read_server(server("a", resources={"limits": {"cpu": "1000m", "memory": "1024Mi"},
                                             "requests": {"cpu": 0.5, "memory": "128974848"}}))
    container = new_pod(srv, None)["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"},
                                      "requests": {"cpu": "500m", "memory": "128974848"}}


@pytest.mark.parametrize(("resources", "field"), [
    pytest.param({"limits": {"cpu": "-1"}}, "spec.resources.limits.cpu", id="negative"),
    pytest.param({"limits": {"memory": "lots"}}, "spec.resources.limits.memory", id="not-a-quantity"),
    pytest.param({"requests": "1Gi"}, "spec.resources.requests", id="not-a-map"),
])
def test_unusable_resources_are_a_spec_problem(resources: dict[str, Any], field: str) -> None:
    srv = read_server(server("a", resources=resources))
    assert [p.field for p in srv.problems] == [field]


def test_empty_values_the_api_server_drops_are_not_returned() -> None:
    env = [{"name": "EMPTY", "value": ""}, {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    srv = read_server(server("a", env=env, securityContext={"capabilities": {"add": []}, "runAsUser": 0}))
    container = new_pod(srv, None)["spec"]["containers"][0]
    assert container["env"][:2] == [{"name": "EMPTY"}, env[1]]
    # The spec's securityContext replaces ours key by key; an empty one is no field at all.
    assert "capabilities" not in container["securityContext"]
    assert container["securityContext"]["runAsUser"] == 0


def test_a_pod_carries_the_hash_of_its_spec() -> None:
    a = new_pod(read_server(server("a")), None)
    again = new_pod(read_server(server("a", requested=-5, sessions=2, idle="5m")), None)
    edited = new_pod(read_server(server("a", args=["--verbose"])), None)
    hashes = [p["metadata"]["annotations"]["nmcp.nwrx.io/spec-hash"] for p in (a, again, edited)]
    assert hashes[0] == hashes[1] != hashes[2]


def test_the_pools_default_idle_timeout_reaches_readers_without_the_pool() -> None:
    """The gateway reads servers, not pools: the hook records the idle timeout in force, so the
    gateway's activity writes and session expiry follow a pool's defaultIdleTimeout too."""
    inherits = server("time", idle=None, requested=-5)
    inherits["spec"].pop("idleTimeout", None)
    status = sync_server(server_request(inherits, pool(idle="20s")), NOW)["status"]
    assert status["idleTimeout"] == "20s"
    assert read_server({**inherits, "status": status}).effective_idle_timeout == 20.0
    own = sync_server(server_request(server("time", idle="90s", requested=-5), pool(idle="20s")), NOW)["status"]
    assert own["idleTimeout"] == "90s"
    assert read_server(inherits).effective_idle_timeout == 300.0  # never synced: the CRD's default
