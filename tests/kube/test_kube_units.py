"""The pure parts of the Kubernetes runtime, without an API server: the demand write plan, the
channel framing, API error messages, and reading kubeconfig files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gateway.kube.attach import CLOSE, STDIN, STDOUT, LineSplitter, close_frame, exit_reason, frame, parse
from gateway.kube.client import MCPSERVERS, PODS, Access, Gone, KubeForbidden, NotFound, error_for
from gateway.kube.config import ClusterConfigError, from_kubeconfig
from gateway.kube.demand import Policy, Wanted, plan_write
from gateway.runtime import Forbidden
from nmcp.model.resources import (
    ANN_INSTANCES,
    ANN_LAST_ACTIVE_AT,
    ANN_REQUESTED_AT,
    ANN_SESSIONS,
    ANN_STOP_REQUESTED_AT,
    Demand,
    InstanceDemand,
    read_instances,
    write_instances,
)

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
POLICY = Policy(interval=20.0)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


# --- demand: what to write, and when ---------------------------------------------------------------


@pytest.mark.parametrize("phase", ["Idle", "Requested", "Stopping", "Degraded"])
def test_a_start_request_on_a_server_not_running_is_written_at_once(phase: str) -> None:
    plan = plan_write(phase, Demand(), Wanted(requested_at=NOW), NOW, since_last_write=1.0, policy=POLICY)
    assert plan.annotations == {ANN_REQUESTED_AT: "2026-11-24T12:00:00.000000Z"}
    assert plan.wanted == Wanted()


def test_a_request_already_stored_and_fresh_is_not_rewritten() -> None:
    stored = Demand(requested_at=ago(5))
    plan = plan_write("Requested", stored, Wanted(requested_at=NOW), NOW, since_last_write=5.0, policy=POLICY,
                      start_timeout=120)
    assert plan.annotations is None  # rewriting would move the server back in its pool's queue


def test_a_stale_request_is_renewed() -> None:
    stored = Demand(requested_at=ago(100))
    plan = plan_write("Requested", stored, Wanted(requested_at=NOW), NOW, since_last_write=100.0, policy=POLICY,
                      start_timeout=120)
    assert plan.annotations is not None and ANN_REQUESTED_AT in plan.annotations


def test_a_request_after_a_stop_is_written_even_while_stopping() -> None:
    stored = Demand(requested_at=ago(30), last_active_at=ago(10), stop_requested_at=ago(2))
    plan = plan_write("Stopping", stored, Wanted(requested_at=NOW), NOW, since_last_write=2.0, policy=POLICY)
    assert plan.annotations is not None
    written = Demand.from_annotations({**{ANN_STOP_REQUESTED_AT: "2026-11-24T11:59:58Z"}, **plan.annotations})
    assert not written.stopped_by_request


def test_a_request_on_a_running_server_is_only_activity() -> None:
    plan = plan_write("Ready", Demand(), Wanted(requested_at=NOW), NOW, since_last_write=None, policy=POLICY)
    assert plan.annotations == {ANN_LAST_ACTIVE_AT: "2026-11-24T12:00:00.000000Z"}


def test_activity_is_coalesced_to_one_write_per_interval() -> None:
    stored = Demand(last_active_at=ago(5), sessions=1)
    plan = plan_write("Ready", stored, Wanted(last_active_at=NOW, sessions=2), NOW, since_last_write=5.0,
                      policy=POLICY)
    assert plan.annotations is None
    assert plan.due_in == pytest.approx(15.0)
    later = plan_write("Ready", stored, plan.wanted, NOW, since_last_write=20.0, policy=POLICY)
    assert later.annotations == {ANN_LAST_ACTIVE_AT: "2026-11-24T12:00:00.000000Z", ANN_SESSIONS: "2"}


def test_a_short_idle_timeout_shortens_the_interval() -> None:
    plan = plan_write("Ready", Demand(last_active_at=ago(5)), Wanted(last_active_at=NOW), NOW, since_last_write=5.0,
                      policy=POLICY, idle_timeout=9.0)
    assert plan.due_in is None and plan.annotations is not None  # 9s / 3 = 3s have passed already


def test_activity_is_held_back_while_a_start_is_pending() -> None:
    plan = plan_write("Requested", Demand(requested_at=ago(1)), Wanted(last_active_at=NOW), NOW,
                      since_last_write=30.0, policy=POLICY)
    assert plan.annotations is None and plan.due_in is None
    assert plan.wanted.last_active_at == NOW  # kept for when the server is Ready


def test_a_stop_is_written_at_once_and_wins_over_an_older_request() -> None:
    plan = plan_write("Ready", Demand(), Wanted(requested_at=ago(1), stop_requested_at=NOW), NOW,
                      since_last_write=1.0, policy=POLICY)
    assert plan.annotations == {ANN_STOP_REQUESTED_AT: "2026-11-24T12:00:00.000000Z"}


def test_an_instance_asked_for_or_released_is_written_at_once() -> None:
    held = {"a1": InstanceDemand(requested_at=ago(30), last_active_at=ago(5))}
    stored = Demand(instances=held)
    asked = plan_write("Ready", stored, Wanted(instances={**held, "b2": InstanceDemand(requested_at=NOW)}), NOW,
                       since_last_write=1.0, policy=POLICY)
    assert asked.annotations is not None
    assert set(read_instances(asked.annotations[ANN_INSTANCES])[0]) == {"a1", "b2"}
    released = plan_write("Ready", stored, Wanted(instances={}), NOW, since_last_write=1.0, policy=POLICY)
    assert released.annotations == {ANN_INSTANCES: "{}"}


def test_an_instances_activity_is_coalesced() -> None:
    held = {"a1": InstanceDemand(requested_at=ago(30), last_active_at=ago(5))}
    busy = {"a1": InstanceDemand(requested_at=ago(30), last_active_at=NOW)}
    plan = plan_write("Ready", Demand(instances=held), Wanted(instances=busy), NOW, since_last_write=5.0,
                      policy=POLICY)
    assert plan.annotations is None and plan.due_in == pytest.approx(15.0)


def test_a_spare_instance_reads_back_as_a_spare_and_claiming_it_is_written_at_once() -> None:
    spare = {"a1": InstanceDemand(requested_at=ago(30), spare=True)}
    assert read_instances(write_instances(spare)) == (spare, "")
    claimed = plan_write("Ready", Demand(instances=spare), Wanted(instances={"a1": InstanceDemand(requested_at=NOW)}),
                         NOW, since_last_write=1.0, policy=POLICY)
    assert claimed.annotations is not None
    assert read_instances(claimed.annotations[ANN_INSTANCES])[0]["a1"].spare is False


@pytest.mark.parametrize("raw", ["nope", "[]", '{"A": {}}', '{"a1": {"requestedAt": "soon"}}',
                                 '{"a1": {"requestedAt": "2026-11-24T12:00:00Z", "spare": "yes"}}',
                                 json.dumps({f"k{i}": {"requestedAt": "2026-11-24T12:00:00Z"} for i in range(501)})])
def test_a_malformed_instances_annotation_is_a_problem_not_an_error(raw: str) -> None:
    instances, problem = read_instances(raw)
    assert instances == {} and problem


# --- attach framing ----------------------------------------------------------------------------------


def test_channel_frames() -> None:
    assert frame(STDIN, b'{"id":1}\n') == b'\x00{"id":1}\n'
    assert parse(b"\x01hello") == (STDOUT, b"hello")
    assert parse(b"") == (-1, b"")
    assert close_frame(STDIN) == bytes([CLOSE, STDIN])


def test_lines_split_across_messages() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b'{"a":') == []
    assert splitter.feed(b'1}\n{"b":2}\r\n{"c"') == [b'{"a":1}', b'{"b":2}']
    big = b"x" * (16 * 1024 * 1024)
    assert splitter.feed(b":3}\n" + big + b"\n") == [b'{"c":3}', big]


def test_a_runaway_line_is_dropped_not_kept() -> None:
    splitter = LineSplitter(limit=10)
    assert splitter.feed(b"0123456789abc") == []
    assert splitter.dropped == 1
    assert splitter.feed(b"ok\n") == [b"ok"]


def test_exit_reasons() -> None:
    failure = {"status": "Failure", "message": "command terminated with non-zero exit code: 3",
               "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert exit_reason(json.dumps(failure).encode()) == "command terminated with non-zero exit code: 3 (exit code 3)"
    assert exit_reason(b'{"status": "Success"}') == "the container's streams ended"
    assert exit_reason(b"not json") == "not json"


# --- API errors -------------------------------------------------------------------------------------


def test_forbidden_names_verb_resource_and_namespace() -> None:
    err = error_for(403, "Forbidden", "denied", Access("get", PODS, "team", "attach"), "kubeconfig x")
    assert isinstance(err, Forbidden) and isinstance(err, KubeForbidden)
    assert err.code == "forbidden"
    assert "may not get pods/attach in namespace team" in err.message
    cluster_wide = error_for(403, "Forbidden", "denied", Access("watch", MCPSERVERS, None), "in-cluster")
    assert "watch mcpservers.nmcp.nwrx.io in all namespaces (cluster-wide)" in cluster_wide.message


def test_other_statuses() -> None:
    access = Access("get", MCPSERVERS, "team")
    assert isinstance(error_for(404, "NotFound", "gone", access, "x"), NotFound)
    assert isinstance(error_for(410, "Expired", "too old", access, "x"), Gone)
    assert "credentials" in error_for(401, "Unauthorized", "", access, "x").message


def test_resource_paths() -> None:
    assert PODS.path("ns", "p", "attach") == "/api/v1/namespaces/ns/pods/p/attach"
    assert MCPSERVERS.path(None) == "/apis/nmcp.nwrx.io/v1/mcpservers"


# --- kubeconfig -------------------------------------------------------------------------------------


def test_kubeconfig_relative_paths_and_data(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("CA")
    config = {"current-context": "dev",
              "contexts": [{"name": "dev", "context": {"cluster": "k", "user": "u", "namespace": "team"}}],
              "clusters": [{"name": "k", "cluster": {"server": "https://k.example:6443/",
                                                     "certificate-authority": "ca.pem"}}],
              "users": [{"name": "u", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}]}
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    cluster = from_kubeconfig([path])
    assert cluster.server == "https://k.example:6443"
    assert cluster.namespace == "team"
    assert cluster.ca_file == str(tmp_path / "ca.pem") and cluster.verify == cluster.ca_file
    assert cluster.client_cert is not None
    assert Path(cluster.client_cert[0]).read_bytes() == b"CERT"
    assert Path(cluster.client_cert[1]).read_bytes() == b"KEY"


@pytest.mark.parametrize(("config", "message"), [
    pytest.param({"contexts": []}, "no current-context", id="no-context"),
    pytest.param({"current-context": "a", "contexts": [{"name": "a", "context": {"cluster": "k"}}]},
                 "cluster 'k' of context 'a' not found", id="missing-cluster"),
    pytest.param({"current-context": "a", "contexts": [{"name": "a", "context": {"cluster": "k", "user": "u"}}],
                  "clusters": [{"name": "k", "cluster": {"server": "https://x"}}],
                  "users": [{"name": "u", "user": {"client-certificate-data": "Q0VSVA=="}}]},
                 "both a client certificate and a key", id="cert-without-key"),
])
def test_broken_kubeconfigs_are_named(tmp_path: Path, config: dict, message: str) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ClusterConfigError, match=message):
        from_kubeconfig([path])
