"""The hook fixture cases: each a Metacontroller request, its fixed `now`, and what it must show.

`tests/hooks/fixtures/<hook>/<case>.request.json` and `.response.json` are written from this
table (`python -m tests.hooks.cases` rewrites them; review the diff like code). A request file
is exactly the body Metacontroller posts (hook version v2 keys) plus one extra top-level key,
`"now"`: the clock the response was computed at. Tests strip it before use. The `expect`
checks here are asserted on every run as well, so a regenerated fixture cannot silently change
what a case means.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hooks import sync
from hooks.schemas import SCHEMAS
from nmcp.model.resources import ANN_ANSWERS_REQUEST, format_time_precise
from tests.hooks.builders import (
    NOW,
    customize_request,
    pod,
    pool,
    pool_request,
    server,
    server_request,
    service,
    t,
    tp,
)

FIXTURES = Path(__file__).with_name("fixtures")

HOOKS: dict[str, tuple[str, str, Callable[..., Any]]] = {
    # hook directory: (resource kind, schema, function)
    "pool-sync": ("pool", "sync", sync.sync_pool),
    "pool-finalize": ("pool", "sync", sync.sync_pool),
    "pool-customize": ("pool", "customize", sync.customize_pool),
    "server-sync": ("server", "sync", sync.sync_server),
    "server-finalize": ("server", "sync", sync.sync_server),
    "server-customize": ("server", "customize", sync.customize_server),
}

Expect = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Case:
    hook: str
    name: str
    request: dict[str, Any]
    expect: Expect
    now: datetime = NOW

    @property
    def id(self) -> str:
        return f"{self.hook}/{self.name}"


def call(hook: str, request: Mapping[str, Any], now: datetime = NOW) -> dict[str, Any]:
    """Run a hook as the app does: schema-load the body, then the pure function."""
    kind, schema, func = HOOKS[hook]
    body = SCHEMAS[kind, schema].load(dict(request))
    if schema == "customize":
        return func(body)
    body["finalizing"] = hook.endswith("finalize")
    return func(body, now)


# --- expectations -------------------------------------------------------------------------------


def cond(response: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return next(c for c in response["status"]["conditions"] if c["type"] == type_)


def phase(expected: str, reason: str, *, admitted: str | None = None, message: str | None = None,
          finalized: bool | None = None, resync: float | None = None, **status: Any) -> Expect:
    """A server response: its phase and Ready reason (and optionally more)."""

    def check(response: Mapping[str, Any]) -> None:
        st = response["status"]
        assert st["phase"] == expected, st
        ready = cond(response, "Ready")
        assert ready["reason"] == reason, ready
        assert ready["status"] == ("True" if expected == "Ready" else "False")
        if message is not None:
            assert message in ready["message"], ready["message"]
        if admitted is not None:
            assert cond(response, "Admitted")["reason"] == admitted, cond(response, "Admitted")
        assert response["children"] == []
        if finalized is not None:
            assert response["finalized"] is finalized
        else:
            assert "finalized" not in response
        assert response.get("resyncAfterSeconds") == resync, response.get("resyncAfterSeconds")
        for key, value in status.items():
            assert st.get(key) == value, (key, st.get(key), value)

    return check


def plan(pods: list[str], *, services: tuple[str, ...] = (), finalized: bool | None = None,
         resync: float | None = None, answers: Mapping[str, str] | None = None, **status: Any) -> Expect:
    """A pool response: the servers that get a Pod (and Service), and status counts.
    `answers`: server name -> the answers-request annotation its desired Pod must carry."""

    def check(response: Mapping[str, Any]) -> None:
        kinds: dict[str, list[str]] = {"Pod": [], "Service": []}
        for child in response["children"]:
            kinds[child["kind"]].append(child["metadata"]["name"])
            if child["kind"] == "Pod" and answers is not None:
                server_name = child["metadata"]["labels"]["nmcp.nwrx.io/server"]
                got = child["metadata"]["annotations"].get(ANN_ANSWERS_REQUEST)
                assert got == answers[server_name], (server_name, got)
        assert kinds["Pod"] == [f"mcp-{name}" for name in pods], kinds["Pod"]
        assert kinds["Service"] == [f"mcp-{name}" for name in services], kinds["Service"]
        if finalized is not None:
            assert response["finalized"] is finalized
        else:
            assert "finalized" not in response
        assert response.get("resyncAfterSeconds") == resync, response.get("resyncAfterSeconds")
        for key, value in status.items():
            if key == "at_capacity":
                assert cond(response, "AtCapacity")["status"] == value
            elif key == "ready":
                assert cond(response, "Ready")["reason"] == value, cond(response, "Ready")
            elif key == "answeredRequests":
                assert response["status"].get(key) == value, (key, response["status"].get(key), value)
            else:
                assert response["status"][key] == value, (key, response["status"][key], value)

    return check


def rules(*expected: tuple[str, dict[str, Any]]) -> Expect:
    def check(response: Mapping[str, Any]) -> None:
        got = [(r["resource"], {k: v for k, v in r.items() if k not in ("apiVersion", "resource")})
               for r in response["relatedResources"]]
        assert got == list(expected), got

    return check


# --- the cases ----------------------------------------------------------------------------------

P = pool()
HTTP = {"type": "streamable-http", "port": 8080, "path": "/mcp"}
CASES: list[Case] = []


def case(hook: str, name: str, request: dict[str, Any], expect: Expect) -> None:
    CASES.append(Case(hook, name, request, expect))


def running(count: int, **answered: float) -> dict[str, Any]:
    """The default pool as its last sync left it: `count` servers running, and the requests its
    starts answered (server name -> offset). The server hook reads only these from its pool."""
    status: dict[str, Any] = {"active": count}
    if answered:
        status["answeredRequests"] = {name: tp(offset) for name, offset in answered.items()}
    return pool(status=status)


# Server phases -----------------------------------------------------------------------------------

case("server-sync", "idle-never-requested", server_request(server("time"), P),
     phase("Idle", "NeverRequested", admitted="NotRequested", sessions=0))
case("server-sync", "requested-scheduling", server_request(server("time", requested=-5), running(1)),
     phase("Requested", "Scheduling", admitted="Scheduling", resync=115.0))
case("server-sync", "requested-waiting-for-capacity",
     server_request(server("time", requested=-5), running(5)),
     phase("Requested", "WaitingForCapacity", admitted="WaitingForCapacity",
           message="pool default has 5/5 servers running", resync=115.0))
case("server-sync", "requested-after-degraded",
     server_request(server("time", requested=-2, generation=3, status={
         "phase": "Degraded", "observedGeneration": 2, "conditions": [
             {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "spec.image: ...",
              "lastTransitionTime": t(-600), "observedGeneration": 2},
             {"type": "Admitted", "status": "False", "reason": "InvalidSpec", "message": "...",
              "lastTransitionTime": t(-600), "observedGeneration": 2}]}), P),
     phase("Requested", "Scheduling", admitted="Scheduling", resync=118.0))
_pending_pod = pod("time", created=-3)
del _pending_pod["status"]["containerStatuses"]
case("server-sync", "starting-pod-pending", server_request(server("time", requested=-4), P, [_pending_pod]),
     phase("Starting", "PodPending", admitted="PodCreated", podName="mcp-time", resync=57.0))
case("server-sync", "starting-container-creating",
     server_request(server("time", requested=-12), P, [pod("time", created=-10)]),
     phase("Starting", "ContainerCreating", admitted="PodCreated", startedAt=t(-10), resync=50.0))
_web = server("time", requested=-12, transport=HTTP)
_unready = pod("time", created=-10, built_for=_web)
_unready["status"]["phase"] = "Running"
_unready["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": t(-8)}}
case("server-sync", "starting-running-not-ready",
     server_request(_web, P, [_unready]),
     phase("Starting", "ContainersNotReady", admitted="PodCreated", resync=50.0))
case("server-sync", "starting-kept-past-idle-timeout",
     server_request(server("time", requested=-30, idle="10s"), P, [pod("time", created=-28)]),
     phase("Starting", "ContainerCreating", resync=90.0))
case("server-sync", "ready",
     server_request(server("time", requested=-100, active=-20, sessions=1), P, [pod("time", created=-95, ready=-90)]),
     phase("Ready", "Running", admitted="PodCreated", resync=40.0, startedAt=t(-90), sessions=1,
           requestedAt=t(-100), lastActiveAt=t(-20), podName="mcp-time"))
case("server-sync", "ready-keeps-condition-times",
     server_request(server("time", requested=-100, active=-20, status={
         "phase": "Ready", "podName": "mcp-time", "startedAt": t(-90), "stoppedAt": t(-4000), "conditions": [
             {"type": "Ready", "status": "True", "reason": "Running", "message": "Pod mcp-time is ready",
              "lastTransitionTime": t(-89), "observedGeneration": 1},
             {"type": "Admitted", "status": "True", "reason": "PodCreated", "message": "x",
              "lastTransitionTime": t(-95), "observedGeneration": 1}]}), P, [pod("time", created=-95, ready=-90)]),
     phase("Ready", "Running", resync=40.0, stoppedAt=t(-4000)))
case("server-sync", "ready-idle-timeout-from-pool",
     server_request(server("time", requested=-100, active=-100, idle=None), pool(idle="5m"),
                    [pod("time", created=-95, ready=-90)]),
     phase("Ready", "Running", resync=210.0))
case("server-sync", "stopping-idle-timeout",
     server_request(server("time", requested=-300, active=-90), P, [pod("time", created=-295, ready=-290)]),
     phase("Stopping", "IdleTimeout", admitted="PodCreated", resync=None))
case("server-sync", "stopping-after-start-and-idle-timeout",
     server_request(server("time", requested=-150), P, [pod("time", created=-140)]),
     phase("Stopping", "IdleTimeout"))
case("server-sync", "stopping-stopped-by-request",
     server_request(server("time", requested=-100, active=-50, stop=-10), P, [pod("time", created=-95, ready=-90)]),
     phase("Stopping", "StoppedByRequest"))
case("server-sync", "stopping-evicted",
     server_request(server("time", requested=-100, active=-20, sessions=0), running(3),
                    [pod("time", created=-95, ready=-90, terminating=True)]),
     phase("Stopping", "Evicted", message="stopped by pool default: more than maxIdle=2 idle servers", resync=None))
# With no more Pods than maxIdle the pool cannot have evicted it: someone else deleted the Pod.
case("server-sync", "stopping-pod-deleted",
     server_request(server("time", requested=-100, active=-20, sessions=0), running(2),
                    [pod("time", created=-95, ready=-90, terminating=True)]),
     phase("Stopping", "PodTerminating", message="Pod mcp-time is terminating", resync=None))
case("server-sync", "stopping-pod-terminating",
     server_request(server("time", requested=-100, active=-20, sessions=2), P,
                    [pod("time", created=-95, ready=-90, terminating=True)]),
     phase("Stopping", "PodTerminating", resync=None))
case("server-sync", "idle-just-stopped",
     server_request(server("time", requested=-400, active=-200, status={
         "phase": "Stopping", "podName": "mcp-time", "startedAt": t(-390), "conditions": []}), P),
     phase("Idle", "IdleTimeout", admitted="NotRequested", stoppedAt=t(0), startedAt=t(-390)))
# The pool's record says a start answered the request: the server does not wait for another one.
case("server-sync", "idle-after-an-unused-manual-start",
     server_request(server("manual", requested=-70, idle="30s", status={
         "phase": "Idle", "startedAt": t(-68), "stoppedAt": t(-30), "conditions": []}), running(0, manual=-70)),
     phase("Idle", "IdleTimeout", admitted="NotRequested", startedAt=t(-68)))
# Without that record (or the server's own Pod saying so) the request still waits for a start.
case("server-sync", "requested-not-yet-answered",
     server_request(server("manual", requested=-70, idle="30s", status={
         "phase": "Requested", "startedAt": t(-68), "conditions": []}), running(0, manual=-75)),
     phase("Requested", "Scheduling", admitted="Scheduling", resync=50.0))
case("server-sync", "requested-again-while-in-use",
     server_request(server("edited", requested=-300, active=-10, sessions=1, status={"startedAt": t(-290)}), P),
     phase("Requested", "Scheduling", admitted="Scheduling", resync=50.0))
# A spec edit while clients hold sessions: the Pod of the old spec is replaced, and until the new
# one is ready the server says so rather than Ready at the new generation.
_edited = server("time", requested=-100, active=-20, sessions=1, generation=2, args=["--local-timezone", "UTC"])
case("server-sync", "starting-updating",
     server_request(_edited, P, [pod("time", created=-95, ready=-90)]),
     phase("Starting", "Updating", admitted="PodCreated", observedGeneration=2, resync=40.0))
case("server-sync", "starting-updating-old-pod-terminating",
     server_request(_edited, P, [pod("time", created=-95, ready=-90, terminating=True)]),
     phase("Starting", "Updating", resync=None))
case("server-sync", "ready-on-the-new-spec",
     server_request(_edited, P, [pod("time", created=-5, ready=-3, built_for=_edited)]),
     phase("Ready", "Running", observedGeneration=2, resync=57.0))
# The same edit with nobody using the server: its Pod stops; the next request runs the new spec.
case("server-sync", "stopping-spec-changed",
     server_request(server("time", requested=-100, active=-20, sessions=0, generation=2, args=["--x"]), P,
                    [pod("time", created=-95, ready=-90)]),
     phase("Stopping", "SpecChanged", message="the next request starts the new spec", resync=40.0))
case("server-sync", "idle-stopped-by-request", server_request(server("time", requested=-100, stop=-10), P),
     phase("Idle", "StoppedByRequest"))
case("server-sync", "idle-stopped-after-eviction", server_request(server("time", requested=-100, active=-30), P),
     phase("Idle", "Stopped", admitted="NotRequested", resync=30.0))
case("server-sync", "idle-request-expired",
     server_request(server("time", requested=-200, idle="10m"), running(5)),
     phase("Idle", "RequestExpired", admitted="NotRequested"))
case("server-sync", "degraded-kubernetes-needs-image",
     server_request(server("time", image=None, command=["uvx", "mcp-server-time"], requested=-5), P),
     phase("Degraded", "InvalidSpec", admitted="InvalidSpec",
           message="spec.image: the Kubernetes runtime needs an image", resync=115.0))
case("server-sync", "degraded-local-needs-command",
     server_request(server("time", requested=-5), P, runtime="local"),
     phase("Degraded", "InvalidSpec",
           message="spec.command: the local runtime runs a command; this server only names an image", resync=115.0))
case("server-sync", "local-requested",
     server_request(server("time", image=None, command=["uvx", "mcp-server-time"], requested=-5), P, runtime="local"),
     phase("Requested", "Scheduling", resync=115.0))
case("server-sync", "degraded-negative-idle-timeout", server_request(server("time", idle=-5), P),
     phase("Degraded", "InvalidSpec", message="spec.idleTimeout: must not be negative"))
case("server-sync", "degraded-unreadable-duration", server_request(server("time", start="soon"), P),
     phase("Degraded", "InvalidSpec", message="spec.startTimeout: expected a duration"))
case("server-sync", "degraded-pool-not-found", server_request(server("time", requested=-5), None),
     phase("Degraded", "PoolNotFound", admitted="PoolNotFound",
           message="pool 'default' not found in namespace 'team'", resync=115.0))
case("server-sync", "degraded-image-pull-backoff",
     server_request(server("time", requested=-40), P, [pod("time", created=-38, waiting=(
         "ImagePullBackOff", f'Back-off pulling image "{server("x")["spec"]["image"]}"'))]),
     phase("Degraded", "ImagePullFailing", admitted="PodCreated", message="Back-off pulling image", resync=22.0))
case("server-sync", "degraded-invalid-image-name",
     server_request(_bad := server("time", requested=-40, image="Bad Image"), P, [pod("time", created=-38, waiting=(
         "InvalidImageName", 'Failed to apply default image tag "Bad Image": invalid reference format'),
         built_for=_bad)]),
     phase("Degraded", "ImagePullFailing", message="invalid reference format", resync=22.0))
case("server-sync", "degraded-crash-loop",
     server_request(server("time", requested=-40), P, [pod("time", created=-38, restarts=3, exit_code=1, waiting=(
         "CrashLoopBackOff", "back-off 40s restarting failed container=server pod=mcp-time_team"))]),
     phase("Degraded", "CrashLoopBackOff", message="restarted 3 times, last exit code 1", resync=22.0))
case("server-sync", "degraded-create-container-config-error",
     server_request(server("time", requested=-40), P, [pod("time", created=-38, waiting=(
         "CreateContainerConfigError", 'secret "api-key" not found'))]),
     phase("Degraded", "CreateContainerConfigError", message='secret "api-key" not found', resync=22.0))
case("server-sync", "degraded-unschedulable",
     server_request(server("time", requested=-40), P, [pod("time", created=-38, unschedulable=(
         "0/3 nodes are available: 3 Insufficient memory."))]),
     phase("Degraded", "Unschedulable", message="3 Insufficient memory", resync=22.0))
case("server-sync", "degraded-pod-failed",
     server_request(server("time", requested=-100, active=-20), P, [pod("time", created=-95, ready=-90, failed=(
         "Evicted", "The node was low on resource: memory."))]),
     phase("Degraded", "PodFailed", message="Evicted: The node was low on resource: memory."))
case("server-sync", "degraded-start-timeout",
     server_request(server("time", requested=-10), P, [pod("time", created=-140)]),
     phase("Degraded", "StartTimeout", message="not ready within the start timeout of 120s", resync=50.0))

# Server finalize ---------------------------------------------------------------------------------

case("server-finalize", "pod-still-running",
     server_request(server("time", requested=-100, active=-20, deleting=True), P,
                    [pod("time", created=-95, ready=-90)], finalizing=True),
     phase("Stopping", "Deleting", finalized=False))
case("server-finalize", "pod-terminating",
     server_request(server("time", requested=-100, active=-20, deleting=True), P,
                    [pod("time", created=-95, ready=-90, terminating=True)], finalizing=True),
     phase("Stopping", "Deleting", finalized=False))
_gone = server_request(server("time", requested=-100, active=-20, deleting=True), running(2), finalizing=True)
case("server-finalize", "pod-gone", _gone, phase("Idle", "Deleting", finalized=True))
case("server-finalize", "pod-gone-again",
     server_request(server("time", requested=-100, active=-20, deleting=True,
                           status=call("server-finalize", _gone)["status"]), running(2), finalizing=True),
     phase("Idle", "Deleting", finalized=True))
case("server-finalize", "pool-missing",
     server_request(server("time", deleting=True), None, finalizing=True),
     phase("Degraded", "PoolNotFound", finalized=True))

# Customize ---------------------------------------------------------------------------------------

case("server-customize", "default-pool", customize_request("server", server("time")),
     rules(("mcppools", {"namespace": "team", "names": ["default"]}),
           ("pods", {"namespace": "team", "names": ["mcp-time"]})))
_long = "gpu-" + "x" * 70
case("server-customize", "long-pool-name", customize_request("server", server("time", pool=_long, ns="ml")),
     rules(("mcppools", {"namespace": "ml", "names": [_long]}),
           ("pods", {"namespace": "ml", "names": ["mcp-time"]})))
case("pool-customize", "default", customize_request("pool", pool()),
     rules(("mcpservers", {"namespace": "team", "labelSelector": {}})))

# Pool admission ----------------------------------------------------------------------------------

case("pool-sync", "empty", pool_request(pool(), []),
     plan([], active=0, idle=0, waiting=0, stopped=0, servers=0, at_capacity="False"))
case("pool-sync", "admits-requested",
     pool_request(pool(), [server("alpha", requested=-2), server("beta", requested=-1), server("gamma", requested=-3),
                           server("delta"), server("eps", requested=-300, active=-290)]),
     plan(["alpha", "beta", "gamma"], resync=117.0, active=0, waiting=0, stopped=2, servers=5))
case("pool-sync", "first-come-first-served",
     pool_request(pool(), [server(f"s{n}", requested=-n) for n in (3, 7, 1, 5, 2, 6, 4)]),
     plan(["s3", "s4", "s5", "s6", "s7"], resync=113.0, waiting=2, active=0))
case("pool-sync", "same-second-by-name",
     pool_request(pool(), [server(name, requested=-1) for name in ("h", "c", "f", "a", "g", "b", "e", "d")]),
     plan(["a", "b", "c", "d", "e"], resync=119.0, waiting=3))
case("pool-sync", "full-pool-waits",
     pool_request(pool(), [server(f"s{i}", requested=-100, active=-10, sessions=1) for i in range(5)]
                  + [server("late", requested=-1)],
                  [pod(f"s{i}", created=-95, ready=-90) for i in range(5)]),
     plan([f"s{i}" for i in range(5)], resync=50.0, active=5, waiting=1, idle=0, at_capacity="True"))
# Started by a REST request that no client used, then stopped by its idle timeout. The Pod says
# which request it answered; the pool keeps that in its own status once the Pod is gone, so the
# request is not admitted again while it is fresh. (Never from the server's status: it lags.)
case("pool-sync", "records-the-request-a-pod-answered",
     pool_request(pool(), [server("manual", requested=-70, idle="30s")],
                  [pod("manual", created=-68, ready=-67, answers=-70)]),
     plan([], active=1, servers=1, answeredRequests={"manual": tp(-70)}))
case("pool-sync", "request-answered-by-a-start-is-not-readmitted",
     pool_request(pool(status={"answeredRequests": {"manual": tp(-70), "deleted": tp(-5)}}),
                  [server("manual", requested=-70, idle="30s", status={"phase": "Requested"})]),
     plan([], waiting=0, stopped=1, servers=1, answeredRequests={"manual": tp(-70)}))
case("pool-sync", "answered-record-dropped-once-the-request-is-old",
     pool_request(pool(status={"answeredRequests": {"manual": tp(-130)}}),
                  [server("manual", requested=-130, idle="30s")]),
     plan([], stopped=1, servers=1, answeredRequests=None))
# A running Pod keeps the request it was made for, whatever came since: a changed annotation
# would read as a changed Pod, and Metacontroller's Recreate would replace it.
case("pool-sync", "running-pod-keeps-its-answer",
     pool_request(pool(), [server("busy", requested=-2, active=-1, sessions=1), server("new", requested=-1)],
                  [pod("busy", created=-95, ready=-90, answers=-100)]),
     plan(["busy", "new"], resync=59.0, active=1, answers={"busy": tp(-100), "new": tp(-1)}))
# A server in use whose Pod went away (replaced for a spec change by Metacontroller's Recreate,
# deleted by hand) gets a new one; one whose idle timeout passed does not, sessions or not.
case("pool-sync", "in-use-server-without-its-pod-gets-a-new-one",
     pool_request(pool(), [server("edited", requested=-300, active=-10, sessions=1, status={"startedAt": t(-290)}),
                           server("timed-out", requested=-300, active=-70, sessions=1, status={"startedAt": t(-290)})]),
     plan(["edited"], resync=50.0, waiting=0, stopped=1, servers=2))
# A new request after the last start, even within the same second, wants a new start.
case("pool-sync", "request-after-the-last-start-is-not-lost",
     pool_request(pool(status={"answeredRequests": {"again": tp(-10)}}), [server("again", requested=-9.5, idle="5s")]),
     plan(["again"], resync=111.0, waiting=0, servers=1, answeredRequests=None))
case("pool-sync", "dropped-pods-hold-slots-until-gone",
     pool_request(pool(max_active=2), [server("old", requested=-300, active=-120), server("warm", requested=-30),
                                       server("next", requested=-2)],
                  [pod("old", created=-295, ready=-290), pod("warm", created=-28, ready=-25)]),
     plan(["warm"], resync=35.0, active=2, waiting=1))
case("pool-sync", "terminating-pods-count",
     pool_request(pool(max_active=2), [server("a"), server("b"), server("c", requested=-2)],
                  [pod("a", ready=-20, terminating=True), pod("b", ready=-20, terminating=True)]),
     plan([], resync=118.0, active=2, waiting=1, at_capacity="True"))
case("pool-sync", "max-idle-evicts-longest-idle",
     pool_request(pool(max_active=10, max_idle=2),
                  [server(f"idle{n}", requested=-100, active=-n) for n in (40, 10, 30, 20)]
                  + [server("busy", requested=-100, active=-50, sessions=3),
                     server("waited-for", requested=-1, active=-100)],
                  [pod(f"idle{n}", created=-95, ready=-90) for n in (10, 20, 30, 40)]
                  + [pod("busy", created=-95, ready=-90), pod("waited-for", created=-95, ready=-90)]),
     plan(["busy", "idle10", "idle20", "waited-for"], resync=10.0, idle=2, active=6))
case("pool-sync", "starting-pod-kept-past-idle-timeout",
     pool_request(pool(), [server("slow", requested=-30, idle="10s")], [pod("slow", created=-28)]),
     plan(["slow"], resync=90.0, active=1))
case("pool-sync", "invalid-specs-not-admitted",
     pool_request(pool(), [server("no-image", image=None, command=["x"], requested=-3),
                           server("negative", idle=-5, requested=-2), server("fine", requested=-1)]),
     plan(["fine"], resync=117.0, waiting=0, stopped=2))
case("pool-sync", "local-runtime-runs-commands",
     pool_request(pool(), [server("cmd", image=None, command=["uvx", "mcp-server-time"], requested=-2),
                           server("img", requested=-1)], runtime="local"),
     plan(["cmd"], resync=118.0))
case("pool-sync", "http-servers-get-services",
     pool_request(pool(), [server("sse", transport={"type": "sse", "port": 3001, "path": "/sse"}, requested=-2),
                           server("web", transport=HTTP, requested=-100, active=-5)],
                  [pod("web", created=-95, ready=-90)]),
     plan(["sse", "web"], services=("sse", "web"), resync=55.0, active=1))
case("pool-sync", "default-resources",
     pool_request(pool(resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}),
                  [server("own", requested=-1, resources={"limits": {"cpu": "2"}}), server("dflt", requested=-1)]),
     plan(["dflt", "own"], resync=119.0))
case("pool-sync", "invalid-default-resources",
     pool_request(pool(resources={"limits": {"memory": "-1Gi", "cpu": "1000m"}}), [server("a", requested=-1)]),
     plan(["a"], resync=119.0, ready="InvalidSpec"))
case("pool-sync", "deleting-server-dropped",
     pool_request(pool(max_active=1), [server("gone", requested=-10, deleting=True), server("next", requested=-2)],
                  [pod("gone", created=-9, ready=-5)]),
     plan([], resync=118.0, waiting=1, active=1))
case("pool-sync", "orphan-pod-dropped",
     pool_request(pool(max_active=1), [server("next", requested=-2)], [pod("deleted-server", ready=-20)]),
     plan([], resync=118.0, waiting=1, active=1))
case("pool-sync", "stopped-by-request-dropped",
     pool_request(pool(), [server("stop", requested=-100, active=-20, stop=-5)], [pod("stop", created=-95, ready=-90)]),
     plan([], active=1, stopped=0))
case("pool-sync", "failed-pod-dropped",
     pool_request(pool(), [server("evicted", requested=-5, active=-20)],
                  [pod("evicted", created=-95, ready=-90,
                       failed=("Evicted", "The node was low on resource: memory."))]),
     plan([], resync=115.0, active=1))
case("pool-sync", "servers-of-other-pools-ignored",
     pool_request(pool(), [server("mine", requested=-1), server("theirs", pool="gpu", requested=-1)]),
     plan(["mine"], resync=119.0, servers=1))
case("pool-sync", "keeps-condition-times",
     pool_request(pool(status={"active": 0, "conditions": [
         {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "", "lastTransitionTime": t(-900)},
         {"type": "AtCapacity", "status": "True", "reason": "PoolFull", "message": "",
          "lastTransitionTime": t(-60)}]}), [server("a", requested=-1)]),
     plan(["a"], resync=119.0, at_capacity="False"))

# Pool finalize -----------------------------------------------------------------------------------

# Isolated servers: one Pod per instance the gateway asked for, admitted like any other ----------

def isolated(name: str = "own", **kwargs: Any) -> dict[str, Any]:
    return server(name, isolation="session", **kwargs)


_two_of_three = {"a1": (-5, None), "b2": (-4, None), "c3": (-3, None)}
case("pool-sync", "isolated-instances-count-against-max-active",
     pool_request(pool(max_active=2), [isolated(instances=_two_of_three)]),
     plan(["own-a1", "own-b2"], active=0, waiting=1, stopped=0, servers=1, resync=115.0))
case("pool-sync", "isolated-full-pool-instances-and-servers-wait",
     pool_request(pool(max_active=2), [isolated(instances=_two_of_three), server("time", requested=-1)],
                  [pod("own", instance="a1", ready=-3), pod("own", instance="b2", ready=-2)]),
     plan(["own-a1", "own-b2"], active=2, waiting=2, idle=0, resync=57.0, at_capacity="True"))
case("pool-sync", "isolated-idle-instance-stopped",
     pool_request(pool(), [isolated(instances={"a1": (-100, -70), "b2": (-100, -10)})],
                  [pod("own", instance="a1", created=-99, ready=-98), pod("own", instance="b2", created=-99,
                                                                           ready=-98)]),
     plan(["own-b2"], active=2, idle=0, resync=50.0))
case("pool-sync", "isolated-released-instance-dropped",
     pool_request(pool(), [isolated(instances={"b2": (-20, -10)})],
                  [pod("own", instance="a1", ready=-15), pod("own", instance="b2", ready=-15)]),
     plan(["own-b2"], active=2, resync=50.0))
# An instance stopped for being idle before anyone used it is not started again for its old request:
# the pool remembers which request a start answered, per instance, once the Pod is gone.
case("pool-sync", "isolated-answered-instance-not-restarted",
     pool_request(pool(status={"answeredRequests": {"own#b2": tp(-100)}}),
                  [isolated(instances={"b2": (-100, None)}, start="1h")]),
     plan([], active=0, waiting=0, stopped=1, answeredRequests={"own#b2": tp(-100)}))
case("pool-sync", "isolated-server-demand-starts-no-shared-pod",
     pool_request(pool(), [isolated(requested=-5, sessions=1)]),
     plan([], active=0, waiting=0, stopped=1))
# Warm spares (`"spare": true`): started for no client yet. They wait behind every client's
# instance, count as idle (maxIdle bounds them), and make room for a client left waiting.
case("pool-sync", "isolated-spare-waits-behind-clients",
     pool_request(pool(max_active=2), [isolated(instances={"a1": (-5, None, True), "b2": (-3, None),
                                                           "c3": (-2, None)})]),
     plan(["own-b2", "own-c3"], active=0, waiting=1, servers=1, resync=115.0))
case("pool-sync", "isolated-idle-spare-makes-room-for-a-client",
     pool_request(pool(max_active=2), [isolated(instances={"a1": (-50, None, True), "b2": (-40, -1),
                                                           "c3": (-2, None)})],
                  [pod("own", instance="a1", created=-49, ready=-48),
                   pod("own", instance="b2", created=-39, ready=-38)]),
     plan(["own-b2"], active=2, waiting=1, idle=0, at_capacity="True", resync=12.0))
case("pool-sync", "isolated-spares-beyond-max-idle-evicted",
     pool_request(pool(max_idle=1), [isolated(instances={"a1": (-50, None, True), "b2": (-40, None, True)})],
                  [pod("own", instance="a1", created=-49, ready=-48),
                   pod("own", instance="b2", created=-39, ready=-38)]),
     plan(["own-b2"], active=2, idle=1, resync=12.0))
case("server-sync", "isolated-warm-spares-are-the-pools-max-idle",
     server_request(isolated(instances={"a1": (-50, None, True)}), P,
                    [pod("own", instance="a1", created=-49, ready=-48)]),
     phase("Ready", "Running", message="1 of 1 instances ready", runningInstances=1, warmSpares=2, resync=10.0))
case("server-sync", "isolated-evicted-spare-says-why",
     server_request(isolated(instances={"a1": (-50, None, True)}), P,
                    [pod("own", instance="a1", created=-49, ready=-48, terminating=True)]),
     phase("Stopping", "Evicted", message="a client needed its slot", runningInstances=0, resync=10.0))
_bad_instances = isolated(requested=-5)
_bad_instances["metadata"]["annotations"]["nmcp.nwrx.io/instances"] = '{"A B": "now"}'
case("pool-sync", "isolated-malformed-instances-start-nothing",
     pool_request(pool(), [_bad_instances], [pod("own", instance="a1", ready=-15)]),
     plan([], active=1, stopped=1))
case("server-sync", "isolated-malformed-instances-degraded",
     server_request(_bad_instances, P, [pod("own", instance="a1", ready=-15)]),
     phase("Degraded", "InvalidSpec", message="metadata.annotations[nmcp.nwrx.io/instances]: instance 'A B'",
           runningInstances=1))
case("server-sync", "isolated-http-transport-degraded",
     server_request(isolated(transport=HTTP), P),
     phase("Degraded", "InvalidSpec", message="spec.isolation: isolation: session needs the stdio transport",
           runningInstances=0))
case("server-sync", "isolated-no-instance-idle",
     server_request(isolated(), P),
     phase("Idle", "NeverRequested", admitted="NotRequested", runningInstances=0))
case("server-sync", "isolated-ready-with-one-instance-waiting",
     server_request(isolated(instances={"a1": (-30, -10), "b2": (-2, None)}), running(5),
                    [pod("own", instance="a1", created=-29, ready=-28)]),
     phase("Ready", "Running", admitted="PodCreated", message="1 of 2 instances ready", runningInstances=1,
           resync=50.0, instances={
               "a1": {"phase": "Ready", "reason": "Running", "message": "Pod mcp-own-a1 is ready",
                      "podName": "mcp-own-a1"},
               "b2": {"phase": "Requested", "reason": "WaitingForCapacity",
                      "message": "pool default has 5/5 servers running"}}))
case("server-sync", "isolated-instance-waiting-for-capacity",
     server_request(isolated(instances={"b2": (-2, None)}), running(5)),
     phase("Requested", "WaitingForCapacity", admitted="WaitingForCapacity", runningInstances=0, resync=58.0))
case("server-sync", "isolated-instances-stopping",
     server_request(isolated(instances={"a1": (-100, -70)}), P, [pod("own", instance="a1", created=-99, ready=-98)]),
     phase("Stopping", "IdleTimeout", runningInstances=1))
case("server-finalize", "isolated-instance-pods-left",
     server_request(isolated(deleting=True, instances={"a1": (-10, -5)}), P,
                    [pod("own", instance="a1", ready=-8, terminating=True)], finalizing=True),
     phase("Stopping", "Deleting", finalized=False, runningInstances=0))
case("server-customize", "isolated-relates-its-instance-pods", customize_request("server", isolated()),
     rules(("mcppools", {"namespace": "team", "names": ["default"]}),
           ("pods", {"namespace": "team", "labelSelector": {"matchLabels": {"nmcp.nwrx.io/server": "own"}}})))


_finished = pool_request(pool(deleting=True), [server("a", requested=-1)], finalizing=True)
case("pool-finalize", "children-left",
     pool_request(pool(deleting=True), [server("a", requested=-10, active=-5), server("web", transport=HTTP)],
                  [pod("a", ready=-5), pod("web", ready=-5, terminating=True)],
                  [service("web")], finalizing=True),
     plan([], finalized=False, active=2))
case("pool-finalize", "all-gone", _finished, plan([], finalized=True, active=0))
case("pool-finalize", "all-gone-again",
     pool_request(pool(deleting=True, status=call("pool-finalize", _finished)["status"]),
                  [server("a", requested=-1)], finalizing=True),
     plan([], finalized=True, active=0))


# --- writing the fixture files -------------------------------------------------------------------


def request_file(c: Case) -> Path:
    return FIXTURES / c.hook / f"{c.name}.request.json"


def response_file(c: Case) -> Path:
    return FIXTURES / c.hook / f"{c.name}.response.json"


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"


def write_all() -> None:
    for c in CASES:
        response = call(c.hook, c.request, c.now)
        c.expect(response)
        request_file(c).parent.mkdir(parents=True, exist_ok=True)
        request_file(c).write_text(_dump({"now": format_time_precise(c.now), **c.request}))
        response_file(c).write_text(_dump(response))
    print(f"wrote {len(CASES)} cases under {FIXTURES}", file=sys.stderr)


if __name__ == "__main__":
    write_all()
