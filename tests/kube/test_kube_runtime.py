"""The Kubernetes runtime against a real API server: listing, demand annotations, waiting on a
watch, and a watch that drops or expires. The tests play Metacontroller (they write /status)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from gateway.runtime import AmbiguousServer, HttpEndpoint, ServerNotFound, ServerRef, StartFailed
from hooks import lifecycle
from nmcp.model.resources import (
    ANN_LAST_ACTIVE_AT,
    ANN_REQUESTED_AT,
    ANN_SESSIONS,
    ANN_STOP_REQUESTED_AT,
    Demand,
    format_time,
    parse_time,
    read_server,
)
from tests.kube.conftest import RuntimeFactory
from tests.kube.kube_objects import annotations, get_server, mcpserver, set_status
from tests.support import wait_for
from tests.support.kubeapi import KubeAPI

pytestmark = pytest.mark.kube

WAIT = 30.0  # failure guard for anything that waits on the API server


def test_lists_only_the_served_namespaces(kube: KubeAPI, make_runtime: RuntimeFactory) -> None:
    one, two, other = (kube.create_namespace("list") for _ in range(3))
    for namespace in (one, two, other):
        kube.apply([mcpserver("time"), mcpserver(f"only-{namespace}")], namespace=namespace)
    runtime = make_runtime((one, two))
    names = sorted(str(state.ref) for state in runtime.list_servers())
    assert names == sorted([f"{one}/time", f"{one}/only-{one}", f"{two}/time", f"{two}/only-{two}"])
    assert all(state.phase == "Idle" for state in runtime.list_servers())
    assert runtime.resolve(f"only-{two}") == ServerRef(two, f"only-{two}")
    assert runtime.resolve("time", one) == ServerRef(one, "time")
    with pytest.raises(AmbiguousServer, match="several namespaces"):
        runtime.resolve("time")
    with pytest.raises(ServerNotFound, match="not served"):
        runtime.resolve("time", other)
    with pytest.raises(ServerNotFound):
        runtime.resolve(f"only-{other}")
    assert runtime.ready() == (True, "")


def test_all_namespaces(kube: KubeAPI, make_runtime: RuntimeFactory) -> None:
    namespace = kube.create_namespace("all")
    kube.apply(mcpserver("everywhere"), namespace=namespace)
    runtime = make_runtime(None)
    assert ServerRef(namespace, "everywhere") in {state.ref for state in runtime.list_servers()}


def test_cache_follows_changes_and_deletions(kube: KubeAPI, ns: str, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime((ns,))
    kube.apply(mcpserver("late"), namespace=ns)
    ref = ServerRef(ns, "late")
    assert runtime.store.wait_for(lambda: any(s.ref == ref for s in runtime.list_servers()), WAIT)
    set_status(kube, ns, "late", phase="Degraded", conditions=[
        {"type": "Ready", "status": "False", "reason": "ImagePullFailing", "message": "cannot pull image x"}])
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Degraded", WAIT)
    state = runtime.get(ref)
    assert (state.reason, state.message) == ("ImagePullFailing", "cannot pull image x")
    kube.kubectl("delete", "mcpserver", "late", "-n", ns)
    assert runtime.store.wait_for(lambda: not runtime.list_servers(), WAIT)
    with pytest.raises(ServerNotFound):
        runtime.get(ref)


def test_request_is_written_at_once_and_wait_ready_wakes_on_the_status(kube: KubeAPI, ns: str,
                                                                     make_runtime: RuntimeFactory) -> None:
    kube.apply(mcpserver("time"), namespace=ns)
    runtime = make_runtime((ns,))
    ref = runtime.resolve("time")
    before = datetime.now(UTC)
    runtime.request(ref)
    stored = annotations(kube, ns, "time")  # on the API server when request() returns
    requested = parse_time(stored[ANN_REQUESTED_AT])
    assert requested is not None and requested >= before.replace(microsecond=0)
    # The hook would now see a pending request: the contract between gateway and hooks.
    assert lifecycle.pending(read_server(get_server(kube, ns, "time")), datetime.now(UTC))

    def metacontroller() -> None:
        time.sleep(0.5)
        set_status(kube, ns, "time", phase="Requested")
        set_status(kube, ns, "time", phase="Starting")
        set_status(kube, ns, "time", phase="Ready", podName="mcp-time")

    threading.Thread(target=metacontroller, daemon=True).start()
    state = runtime.wait_ready(ref, WAIT)
    assert state.phase == "Ready"
    assert state.extra["podName"] == "mcp-time"


def test_fifty_simultaneous_requests_cost_one_write(kube: KubeAPI, ns: str, make_runtime: RuntimeFactory) -> None:
    kube.apply(mcpserver("busy"), namespace=ns)
    runtime = make_runtime((ns,))
    ref = runtime.resolve("busy")
    threads = [threading.Thread(target=runtime.request, args=(ref,)) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runtime.writer.stats.per_server[ref] == 1
    assert ANN_REQUESTED_AT in annotations(kube, ns, "busy")


def test_activity_under_load_is_coalesced(kube: KubeAPI, ns: str, make_runtime: RuntimeFactory) -> None:
    kube.apply(mcpserver("hot"), namespace=ns)
    set_status(kube, ns, "hot", phase="Ready")
    interval = 1.0
    runtime = make_runtime((ns,), write_interval=interval)
    ref = runtime.resolve("hot")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Ready", WAIT)
    start = time.monotonic()
    touches = 0
    while time.monotonic() - start < 4.0:  # 50 requests per second, as the bridge would touch
        runtime.touch(ref, sessions=3)
        touches += 1
        time.sleep(0.02)
    elapsed = time.monotonic() - start
    last_touch = datetime.now(UTC)
    # Activity lands within one interval of the last touch, whatever the load.
    assert runtime.store.wait_for(
        lambda: (t := parse_time((get_server(kube, ns, "hot")["metadata"].get("annotations") or {})
                                 .get(ANN_LAST_ACTIVE_AT))) and (last_touch - t).total_seconds() < interval + 0.5,
        WAIT)
    writes = runtime.writer.stats.per_server[ref]
    assert 1 <= writes <= elapsed / interval + 2, (writes, touches)
    assert annotations(kube, ns, "hot")[ANN_SESSIONS] == "3"
    assert ANN_REQUESTED_AT not in annotations(kube, ns, "hot")  # activity on a Ready server is not a start


def test_activity_is_not_written_while_a_start_is_pending(kube: KubeAPI, ns: str,
                                                         make_runtime: RuntimeFactory) -> None:
    kube.apply(mcpserver("queued"), namespace=ns)
    runtime = make_runtime((ns,), write_interval=0.2)
    ref = runtime.resolve("queued")
    runtime.request(ref)
    set_status(kube, ns, "queued", phase="Requested")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Requested", WAIT)
    runtime.touch(ref, sessions=1)
    # The writer settles (the sessions count is written), but no last-active-at: it would cancel the request.
    assert runtime.store.wait_for(lambda: annotations(kube, ns, "queued").get(ANN_SESSIONS) == "1", WAIT)
    server = read_server(get_server(kube, ns, "queued"))
    assert server.demand.last_active_at is None
    assert lifecycle.pending(server, datetime.now(UTC))


def test_a_request_while_stopping_is_not_lost(kube: KubeAPI, ns: str, make_runtime: RuntimeFactory) -> None:
    kube.apply(mcpserver("phoenix"), namespace=ns)
    set_status(kube, ns, "phoenix", phase="Ready")
    runtime = make_runtime((ns,))
    ref = runtime.resolve("phoenix")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Ready", WAIT)
    runtime.shutdown(ref)
    assert Demand.from_annotations(annotations(kube, ns, "phoenix")).stopped_by_request
    set_status(kube, ns, "phoenix", phase="Stopping")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Stopping", WAIT)
    runtime.request(ref)  # a client arrives while the Pod goes away
    stored = annotations(kube, ns, "phoenix")
    assert parse_time(stored[ANN_REQUESTED_AT]) > parse_time(stored[ANN_STOP_REQUESTED_AT])
    server = read_server(get_server(kube, ns, "phoenix"))
    assert not server.demand.stopped_by_request
    assert lifecycle.pending(server, datetime.now(UTC))  # the hook starts it again once the Pod is gone


def test_wait_ready_rerequests_a_server_that_stopped_meanwhile(kube: KubeAPI, ns: str,
                                                              make_runtime: RuntimeFactory) -> None:
    kube.apply(mcpserver("again"), namespace=ns)
    set_status(kube, ns, "again", phase="Ready")
    runtime = make_runtime((ns,))
    ref = runtime.resolve("again")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Ready", WAIT)
    runtime.request(ref)  # Ready: only activity, nothing written
    assert ANN_REQUESTED_AT not in annotations(kube, ns, "again")
    set_status(kube, ns, "again", phase="Stopping")  # ...but it was just being stopped
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Stopping", WAIT)  # as the gateway sees it

    def metacontroller() -> None:
        deadline = time.monotonic() + WAIT
        while ANN_REQUESTED_AT not in annotations(kube, ns, "again") and time.monotonic() < deadline:
            time.sleep(0.1)
        set_status(kube, ns, "again", phase="Ready")

    hooks = threading.Thread(target=metacontroller, daemon=True)
    hooks.start()
    try:
        assert runtime.wait_ready(ref, WAIT).phase == "Ready"
        assert ANN_REQUESTED_AT in annotations(kube, ns, "again")
    finally:
        hooks.join(WAIT + 10)  # never left running into the next test (which restarts the API server)


def test_wait_ready_fails_at_once_on_a_permanent_problem(kube: KubeAPI, ns: str, make_runtime: RuntimeFactory) -> None:
    kube.apply(mcpserver("orphan", pool="missing"), namespace=ns)
    set_status(kube, ns, "orphan", phase="Degraded", conditions=[
        {"type": "Ready", "status": "False", "reason": "PoolNotFound", "message": "pool 'missing' not found"}])
    runtime = make_runtime((ns,))
    ref = runtime.resolve("orphan")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Degraded", WAIT)
    runtime.request(ref)
    with pytest.raises(StartFailed) as err:
        runtime.wait_ready(ref, WAIT)
    assert err.value.reason == "PoolNotFound"
    assert "pool 'missing' not found" in err.value.message


def test_wait_ready_fails_once_the_hook_has_judged_the_request(kube: KubeAPI, ns: str,
                                                              make_runtime: RuntimeFactory) -> None:
    failing = [{"type": "Ready", "status": "False", "reason": "ImagePullFailing", "message": "cannot pull mcp/x"}]
    kube.apply(mcpserver("broken"), namespace=ns)
    set_status(kube, ns, "broken", phase="Degraded", requestedAt="2026-01-01T00:00:00Z", conditions=failing)
    runtime = make_runtime((ns,))
    ref = runtime.resolve("broken")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Degraded", WAIT)
    runtime.request(ref)  # demand after a fix (the hook may start it again): wait, do not fail on the old verdict

    def hook() -> None:
        time.sleep(0.5)  # the hook judges the new request: still failing
        stored = annotations(kube, ns, "broken")[ANN_REQUESTED_AT]
        set_status(kube, ns, "broken", phase="Degraded", requestedAt=format_time(parse_time(stored)),
                   conditions=failing)

    threading.Thread(target=hook, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(StartFailed) as err:
        runtime.wait_ready(ref, WAIT)
    assert err.value.reason == "ImagePullFailing"
    assert time.monotonic() - started < WAIT  # failed on the verdict, not at the timeout


def test_wait_ready_times_out_naming_a_full_pool(kube: KubeAPI, ns: str, make_runtime: RuntimeFactory) -> None:
    kube.apply(mcpserver("waiting"), namespace=ns)
    set_status(kube, ns, "waiting", phase="Requested", conditions=[
        {"type": "Ready", "status": "False", "reason": "WaitingForCapacity", "message": "pool default has 5/5"}])
    runtime = make_runtime((ns,))
    ref = runtime.resolve("waiting")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Requested", WAIT)
    runtime.request(ref)
    with pytest.raises(StartFailed) as err:
        runtime.wait_ready(ref, 1.0)
    assert err.value.reason == "WaitingForCapacity"  # the same word as under nmcp up
    assert "5/5" in err.value.message


def test_watch_resumes_from_the_last_version_without_listing(kube: KubeAPI, ns: str,
                                                            make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime((ns,), watch_timeout=1)  # the API server ends each watch after ~1s
    informer = runtime.informers[0]
    wait_for(lambda: informer.stats.watches >= 3, "a third watch", 30)
    kube.apply(mcpserver("after-resume"), namespace=ns)
    assert runtime.store.wait_for(lambda: any(s.server.name == "after-resume" for s in runtime.list_servers()), WAIT)
    assert informer.stats.lists == 1
    assert informer.stats.gone == 0


def test_survives_an_api_server_restart_and_an_expired_version(kube: KubeAPI, ns: str,
                                                              make_runtime: RuntimeFactory) -> None:
    kube.apply(mcpserver("survivor"), namespace=ns)
    runtime = make_runtime((ns,))
    informer = runtime.informers[0]
    ref = runtime.resolve("survivor")
    kube.stop_apiserver()  # every watch drops
    try:
        assert runtime.store.wait_for(lambda: not runtime.ready()[0], WAIT)
        assert "survivor" in [s.server.name for s in runtime.list_servers()]  # the cache still answers
        kube.bump_etcd_revision(5)  # history moves on while the gateway is away: its version expires
    finally:
        kube.start_apiserver()
    assert runtime.store.wait_for(lambda: runtime.ready()[0], WAIT)  # ready again, with nothing changed
    set_status(kube, ns, "survivor", phase="Ready")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Ready", WAIT)
    assert informer.stats.drops >= 1
    assert informer.stats.gone >= 1 and informer.stats.lists >= 2  # 410 Gone, then a fresh list


@pytest.mark.parametrize(("transport", "url"), [
    pytest.param({"type": "sse", "port": 3001}, "http://mcp-events.{ns}.svc:3001/sse", id="sse"),
    pytest.param({"type": "streamable-http", "port": 3000, "path": "/v1/mcp"},
                 "http://mcp-events.{ns}.svc:3000/v1/mcp", id="streamable-http"),
])
def test_http_servers_are_reached_through_their_service(kube: KubeAPI, ns: str, make_runtime: RuntimeFactory,
                                                        transport: dict, url: str) -> None:
    kube.apply(mcpserver("events", image="mcp/everything:1", transport=transport), namespace=ns)
    set_status(kube, ns, "events", phase="Ready")
    runtime = make_runtime((ns,))
    ref = runtime.resolve("events")
    assert runtime.store.wait_for(lambda: runtime.get(ref).phase == "Ready", WAIT)
    endpoint = runtime.connect(ref)
    assert endpoint == HttpEndpoint(url=url.format(ns=ns), transport=transport["type"])


def test_connect_refuses_a_server_that_is_not_ready(kube: KubeAPI, ns: str, make_runtime: RuntimeFactory) -> None:
    kube.apply(mcpserver("cold"), namespace=ns)
    runtime = make_runtime((ns,))
    with pytest.raises(StartFailed) as err:
        runtime.connect(runtime.resolve("cold"))
    assert err.value.reason == "NotRunning"
