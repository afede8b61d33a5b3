"""Every hook fixture, in hook versions v1 and v2, gives exactly its recorded response.

A fixture is `fixtures/<hook>/<case>.request.json` (the body Metacontroller posts, plus `"now"`)
and `<case>.response.json` (the body the hook must answer). See tests/hooks/cases.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from nmcp.model.resources import parse_time
from tests.hooks.builders import rekey
from tests.hooks.cases import CASES, FIXTURES, Case, call, request_file, response_file

pytestmark = pytest.mark.usefixtures("no_network")

REQUESTS = sorted(FIXTURES.glob("*/*.request.json"))
VERSIONS = [pytest.param("v2", id="v2"), pytest.param("v1", id="v1")]


def _fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name.removesuffix('.request.json')}"


def _response_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".request.", ".response."))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", REQUESTS, ids=_fixture_id)
def test_fixture(path: Path, version: str) -> None:
    request = json.loads(path.read_text())
    now = parse_time(request.pop("now", None))
    assert now is not None, f"{path} has no valid top-level 'now'"
    expected = json.loads(_response_path(path).read_text())
    assert call(path.parent.name, rekey(request, version), now) == expected


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_means_what_it_says(case: Case) -> None:
    case.expect(call(case.hook, case.request, case.now))


def test_every_case_has_current_fixture_files() -> None:
    """The stored files are the cases: none missing, none stale (regenerate: python -m tests.hooks.cases)."""
    assert sorted(map(_fixture_id, REQUESTS)) == sorted(c.id for c in CASES)
    for case in CASES:
        stored = json.loads(request_file(case).read_text())
        stored.pop("now")
        assert stored == case.request, f"{case.id}: request file differs from the case"
        assert response_file(case).exists()


def _children() -> list[Any]:
    found = []
    for path in REQUESTS:
        response = json.loads(_response_path(path).read_text())
        for child in response.get("children", []):
            found.append(pytest.param(child, id=f"{_fixture_id(path)}:{child['kind']}/{child['metadata']['name']}"))
    return found


CHILDREN = _children()


def test_fixtures_return_children() -> None:
    kinds = {param.values[0]["kind"] for param in CHILDREN}
    assert kinds == {"Pod", "Service"}


@pytest.mark.parametrize("child", CHILDREN)
def test_child_is_valid_kubernetes(child: dict[str, Any]) -> None:
    kubernetes_validate.validate(child, "1.32.0", strict=True)
    # Only fields we own: Metacontroller and the API server set the rest.
    assert "status" not in child
    assert set(child["metadata"]) <= {"name", "namespace", "labels", "annotations"}


def _reasons(hook_prefix: str) -> set[tuple[str, str, str]]:
    found = set()
    for path in REQUESTS:
        if path.parent.name.startswith(hook_prefix):
            status = json.loads(_response_path(path).read_text()).get("status") or {}
            found |= {(status.get("phase", "-"), c["type"], c["reason"]) for c in status.get("conditions", [])}
    return found


def test_fixtures_cover_every_phase_and_reason() -> None:
    ready = {(phase, reason) for phase, type_, reason in _reasons("server") if type_ == "Ready"}
    assert ready == {
        ("Idle", "NeverRequested"), ("Idle", "StoppedByRequest"), ("Idle", "IdleTimeout"), ("Idle", "Stopped"),
        ("Idle", "RequestExpired"), ("Idle", "Deleting"),
        ("Requested", "Scheduling"), ("Requested", "WaitingForCapacity"),
        ("Starting", "PodPending"), ("Starting", "ContainerCreating"), ("Starting", "ContainersNotReady"),
        ("Starting", "Updating"), ("Stopping", "SpecChanged"),
        ("Ready", "Running"),
        ("Stopping", "IdleTimeout"), ("Stopping", "StoppedByRequest"), ("Stopping", "Evicted"),
        ("Stopping", "PodTerminating"), ("Stopping", "Deleting"),
        ("Degraded", "InvalidSpec"), ("Degraded", "PoolNotFound"), ("Degraded", "ImagePullFailing"),
        ("Degraded", "CrashLoopBackOff"), ("Degraded", "CreateContainerConfigError"), ("Degraded", "Unschedulable"),
        ("Degraded", "PodFailed"), ("Degraded", "StartTimeout"),
    }
    admitted = {reason for _, type_, reason in _reasons("server") if type_ == "Admitted"}
    assert admitted == {"PodCreated", "InvalidSpec", "PoolNotFound", "WaitingForCapacity", "Scheduling", "NotRequested"}
    pool = {(type_, reason) for _, type_, reason in _reasons("pool")}
    assert pool == {("Ready", "Reconciled"), ("Ready", "Deleting"), ("Ready", "InvalidSpec"),
                    ("AtCapacity", "PoolFull"), ("AtCapacity", "HasCapacity")}
