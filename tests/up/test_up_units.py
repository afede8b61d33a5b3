"""The pure parts of `nmcp up`: reading manifests, building Metacontroller's view, observed Pods.

No processes here; the behaviour end to end is in the other test_up_* modules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hooks.lifecycle import read_pod
from nmcp.embedded import controller as mc
from nmcp.embedded.observe import Exit, PodSnapshot, observed_pod
from nmcp.model.manifests import fingerprint, load
from tests.up.running import pool, time_server, write

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_several_documents_load_with_the_crds_defaults(tmp_path: Path) -> None:
    write(tmp_path, "all.yaml", pool(), time_server("time"), "")
    result = load([tmp_path])
    assert result.problems == ()
    kinds = {(m.kind, m.key) for m in result.manifests}
    assert kinds == {("MCPPool", "default/default"), ("MCPServer", "default/time")}
    (server,) = result.of_kind("MCPServer")
    assert server.obj["spec"]["transport"] == {"type": "stdio"}  # the CRD default, as kubectl applies it
    assert server.obj["spec"]["startTimeout"] == "2m"
    assert server.document == 2


def test_a_bad_document_is_named_by_file_position_and_field_and_the_rest_load(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", time_server("fine"), """
        apiVersion: nmcp.nwrx.io/v1
        kind: MCPServer
        metadata: {name: broken}
        spec:
          command: [x]
          transport: {type: ftp}
        """)
    result = load([tmp_path])
    assert [m.name for m in result.manifests] == ["fine"]
    (problem,) = result.problems
    assert (problem.source, problem.document, problem.field) == (str(bad), 2, "spec.transport.type")
    assert str(problem).startswith(f"{bad} (document 2): MCPServer broken: spec.transport.type: unsupported value")


def test_yaml_errors_duplicates_and_foreign_kinds_are_problems(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", time_server("twice"))
    write(tmp_path, "b.yaml", time_server("twice"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    write(tmp_path, "c.yaml", "kind: [unclosed\n")
    write(tmp_path, ".#a.yaml", "editor lock file: not a manifest")
    result = load([tmp_path])
    assert [m.source for m in result.manifests] == [str(tmp_path / "a.yaml")]
    found = {(Path(p.source).name, p.document, p.field) for p in result.problems}
    assert found == {("b.yaml", 1, "metadata.name"), ("b.yaml", 2, "kind"), ("c.yaml", 1, "(yaml)")}
    assert any("already defined in" in p.message for p in result.problems)


def test_a_missing_path_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    result = load([tmp_path / "nope.yaml"])
    assert result.manifests == ()
    assert [p.message for p in result.problems] == ["no such file or directory"]


def test_the_fingerprint_changes_when_a_file_is_added_edited_or_removed(tmp_path: Path) -> None:
    first = fingerprint([tmp_path])
    path = write(tmp_path, "a.yaml", time_server("a"))
    added = fingerprint([tmp_path])
    path.write_text(path.read_text() + "\n# edited, and longer\n")
    edited = fingerprint([tmp_path])
    path.unlink()
    assert len({first, added, edited}) == 3
    assert fingerprint([tmp_path]) == first


def _obj(kind: str, name: str, namespace: str = "default", labels: dict[str, str] | None = None) -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace, "labels": labels or {}}}


def test_related_objects_are_selected_by_namespace_names_and_labels() -> None:
    world = {
        mc.POOLS: [_obj("MCPPool", "p"), _obj("MCPPool", "q"), _obj("MCPPool", "p", "other")],
        mc.PODS: [_obj("Pod", "a", labels={"pool": "p"}), _obj("Pod", "b", labels={"pool": "q"}),
                  _obj("Pod", "c", labels={"pool": "p"}, namespace="other")],
    }
    rules = [
        {"apiVersion": "nmcp.nwrx.io/v1", "resource": "mcppools", "namespace": "default", "names": ["p"]},
        {"apiVersion": "v1", "resource": "pods", "namespace": "default",
         "labelSelector": {"matchLabels": {"pool": "p"}}},
    ]
    related = mc.select_related(rules, world)
    assert set(related[mc.POOLS]) == {"default/p"}
    assert set(related[mc.PODS]) == {"default/a"}
    # One map per rule type even when nothing matches; an empty selector selects everything.
    assert mc.select_related([{"apiVersion": "nmcp.nwrx.io/v1", "resource": "mcpservers"}], world) == {mc.SERVERS: {}}
    everything = mc.select_related([{"apiVersion": "v1", "resource": "pods", "labelSelector": {}}], world)
    assert set(everything[mc.PODS]) == {"default/a", "default/b", "other/c"}


@pytest.mark.parametrize(("labels", "selector", "expected"), [
    pytest.param({"a": "1"}, {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, True,
                 id="in"),
    pytest.param({"a": "3"}, {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["3"]}]}, False,
                 id="not-in"),
    pytest.param({}, {"matchExpressions": [{"key": "a", "operator": "Exists"}]}, False, id="exists"),
    pytest.param({}, {"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, True, id="does-not-exist"),
    pytest.param({"a": "1"}, {"matchLabels": {"a": "2"}}, False, id="match-labels"),
])
def test_label_selectors_follow_kubernetes(labels: dict[str, str], selector: dict, expected: bool) -> None:
    assert mc.matches(labels, selector) is expected


def _pod(name: str, command: str = "x") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {}},
            "spec": {"containers": [{"name": "server", "command": [command]}]}}


def test_child_management_creates_deletes_and_recreates_changed_pods() -> None:
    observed = {
        "default/kept": mc.ObservedPod(_pod("kept"), "default/p", False),
        "default/dropped": mc.ObservedPod(_pod("dropped"), "default/p", False),
        "default/changed": mc.ObservedPod(_pod("changed", "old"), "default/p", False),
        "default/going": mc.ObservedPod(_pod("going"), "default/p", True),
        "default/theirs": mc.ObservedPod(_pod("theirs"), "default/q", False),
    }
    desired = [_pod("kept"), _pod("changed", "new"), _pod("going"), _pod("theirs"), _pod("new")]
    actions = mc.plan_pods("default/p", desired, observed)
    assert actions.delete == ("default/changed", "default/dropped")
    # A terminating Pod, or one another pool still owns, blocks its name until it is gone.
    assert [p["metadata"]["name"] for p in actions.create] == ["new"]


def _snapshot(**changes: object) -> PodSnapshot:
    base = {"desired": _pod("mcp-time"), "uid": "u", "created_at": T0}
    return PodSnapshot(**{**base, **changes})  # type: ignore[arg-type]


def test_observed_pods_read_by_the_hooks_as_a_kubelet_would_report_them() -> None:
    creating = read_pod(observed_pod(_snapshot()))
    assert creating.starting and creating.waiting_reason == "ContainerCreating" and creating.phase == "Pending"

    running = read_pod(observed_pod(_snapshot(pid=42, running_since=T0, ready_since=T0 + timedelta(seconds=1))))
    assert running.ready and running.ready_at == T0 + timedelta(seconds=1) and running.phase == "Running"

    probing = read_pod(observed_pod(_snapshot(pid=42, running_since=T0)))  # HTTP server, port not open yet
    assert probing.starting and not probing.ready

    crashed = read_pod(observed_pod(_snapshot(
        waiting_reason="CrashLoopBackOff", waiting_message="exited with status 3", restarts=2,
        last_exit=Exit(3, T0, T0 + timedelta(seconds=1), "boom"))))
    assert (crashed.waiting_reason, crashed.restarts, crashed.last_exit_code) == ("CrashLoopBackOff", 2, 3)
    assert crashed.phase == "Running"  # restartPolicy Always: the Pod stays Running, its container waits

    stopping = read_pod(observed_pod(_snapshot(pid=42, running_since=T0, ready_since=T0, deleting_since=T0)))
    assert stopping.terminating
