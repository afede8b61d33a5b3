"""The Kubernetes runtime: servers are MCPServers, run in Pods the hooks create.

The gateway never creates Pods. It reads MCPServers (and their Pods) from a watch-backed cache,
signals demand by annotating the MCPServer (`gateway.kube.demand`), waits for the phase the
hooks write to turn Ready (woken by watch events), then connects: stdio servers through the
`pods/attach` API (`gateway.kube.attach`), HTTP servers through their Service's cluster DNS
name. Logs stream from `pods/log`.

An isolated server's instances: the gateway keeps the instances it needs (key -> request and
activity times) and writes them whole in the `instances` annotation; it waits for the instance's
entry of `status.instances` to turn Ready and attaches to that instance's Pod.

Settings: the `(kubernetes)` rows of the gateway's settings table (gateway/config.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.config import Config, ConfigError
from gateway.kube import attach
from gateway.kube.cache import Informer, Store
from gateway.kube.client import MCPSERVERS, PODS, KubeClient, KubeError, NotFound
from gateway.kube.config import ClusterConfigError, load_cluster
from gateway.kube.demand import DemandWriter, Observed, Policy, request_honoured
from gateway.redaction import redact, secret_values
from gateway.runtime import (
    AmbiguousServer,
    HttpEndpoint,
    ServerNotFound,
    ServerRef,
    ServerState,
    StartFailed,
    StdioConnection,
)
from nmcp.model.naming import child_name, pod_name
from nmcp.model.resources import LABEL_SERVER, Demand, InstanceDemand, Server, parse_time, read_server
from nmcp.model.vocabulary import Phase, Reason, status_of

log = logging.getLogger(__name__)

CONTAINER = "server"  # the container the hooks put in every server Pod
ALL_NAMESPACES = "*"


@dataclass(frozen=True)
class KubeSettings:
    namespaces: tuple[str, ...] | None  # None: all namespaces
    write_interval: float = 20.0
    watch_timeout: int = 300
    ping_interval: float = 20.0
    sync_timeout: float = 30.0

    @classmethod
    def from_config(cls, config: Config, default_namespace: str) -> KubeSettings:
        namespaces: tuple[str, ...] | None = config.namespaces or (default_namespace,)
        if ALL_NAMESPACES in namespaces:
            namespaces = None
        return cls(namespaces=namespaces, write_interval=config.kube_write_interval,
                   watch_timeout=max(1, int(config.kube_watch_timeout)), ping_interval=config.kube_ping_interval,
                   sync_timeout=config.kube_sync_timeout)


def state_of(obj: Mapping[str, Any]) -> ServerState:
    """The REST API's view of one MCPServer object."""
    server = read_server(obj)
    status = obj.get("status") or {}
    shown = status_of(obj)
    extra = {k: status[k] for k in ("podName", "requestedAt", "startedAt", "stoppedAt") if status.get(k)}
    return ServerState(server=server, phase=shown.phase, reason=shown.reason, message=shown.message,
                       sessions=server.demand.sessions, last_active_at=server.demand.last_active_at, extra=extra)


def degraded_is_final(state: ServerState, latest_request: datetime | None) -> bool:
    """A Degraded phase that already takes the latest request into account (or that waiting cannot fix).

    The hook copies the requested-at annotation into `status.requestedAt` (to the second): once
    that covers the latest request, the hook has judged it and still says Degraded.
    """
    if state.reason in Reason.PERMANENT:
        return True
    seen = parse_time(state.extra.get("requestedAt"))
    return seen is not None and latest_request is not None and seen >= latest_request.replace(microsecond=0)


def start_failure(state: ServerState | None, ref: ServerRef, timeout: float) -> StartFailed:
    """Why a waiting client gives up, in the words of the server's Ready condition."""
    if state is None:
        return StartFailed(f"{ref} was deleted while starting", reason=Reason.DELETING)
    if state.phase == Phase.DEGRADED:
        return StartFailed(f"{ref} is Degraded: {state.message or state.reason}", reason=state.reason)
    if state.reason == Reason.WAITING_FOR_CAPACITY:
        return StartFailed(f"{ref} did not start within {timeout:g}s: {state.message}", reason=state.reason)
    detail = f" ({state.phase}: {state.message})" if state.message else f" (phase {state.phase})"
    return StartFailed(f"{ref} was not Ready within {timeout:g}s{detail}", reason=Reason.START_TIMEOUT)


def _is_protocol_line(line: str) -> bool:
    """A JSON-RPC message on a stdio server's stdout: it belongs to clients, not to the log."""
    text = line.lstrip()
    return text.startswith("{") and '"jsonrpc"' in text


class KubernetesRuntime:
    """`gateway.runtime.Runtime` on a cluster; see the module docstring."""

    isolates_sessions = True  # an isolated server's instances are Pods of their own (gateway.runtime)

    def __init__(self, client: KubeClient, settings: KubeSettings) -> None:
        self.client = client
        self.settings = settings
        self.store = Store()
        self.informers: list[Informer] = []
        for namespace in settings.namespaces or (None,):
            self.informers.append(Informer(client, self.store, MCPSERVERS, namespace,
                                           watch_timeout=settings.watch_timeout, on_event=self._server_event))
            self.informers.append(Informer(client, self.store, PODS, namespace, label_selector=LABEL_SERVER,
                                           watch_timeout=settings.watch_timeout))
        self.writer = DemandWriter(self._patch, self._observe, Policy(interval=settings.write_interval))
        self._attaches: dict[int, tuple[ServerRef, attach.AttachConnection]] = {}
        self._attach_failures: dict[ServerRef, str] = {}
        self._instances: dict[ServerRef, dict[str, InstanceDemand]] = {}  # what this gateway needs
        self._lock = threading.Lock()

    def start(self) -> None:
        for informer in self.informers:
            informer.start()
        deadline = time.monotonic() + self.settings.sync_timeout
        for informer in self.informers:
            if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
                log.warning("%s not listed within %gs: %s", informer.name, self.settings.sync_timeout,
                            informer.stats.last_error or "no answer")

    # ---- the cache --------------------------------------------------------------------------

    def _served(self, namespace: str) -> bool:
        return self.settings.namespaces is None or namespace in self.settings.namespaces

    def _object(self, ref: ServerRef) -> dict[str, Any] | None:
        return self.store.get(MCPSERVERS.plural, ref.namespace, ref.name)

    def _server_event(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata", {})
        ref = ServerRef(str(meta.get("namespace", "")), str(meta.get("name", "")))
        self.writer.changed(ref)
        phase = (obj.get("status") or {}).get("phase")
        if kind == "DELETED" or phase not in Phase.RUNNING:
            with self._lock:  # a stopped server's lost attach is expected, not a failure
                self._attach_failures.pop(ref, None)

    def _observe(self, ref: ServerRef) -> Observed | None:
        obj = self._object(ref)
        if obj is None:
            return None
        server = read_server(obj)
        return Observed(phase=status_of(obj).phase, demand=server.demand,
                        idle_timeout=server.effective_idle_timeout, start_timeout=server.start_timeout)

    def _patch(self, ref: ServerRef, patch: dict[str, Any]) -> dict[str, Any]:
        return self.client.merge_patch(MCPSERVERS, ref.namespace, ref.name, patch)

    # ---- Runtime ----------------------------------------------------------------------------

    def list_servers(self) -> list[ServerState]:
        return [state_of(obj) for obj in self.store.items(MCPSERVERS.plural)]

    def resolve(self, name: str, namespace: str | None = None) -> ServerRef:
        if namespace is not None:
            if not self._served(namespace):
                raise ServerNotFound(f"namespace {namespace!r} is not served by this gateway")
            if self._object(ServerRef(namespace, name)) is None:
                raise ServerNotFound(f"no MCPServer {name!r} in namespace {namespace!r}")
            return ServerRef(namespace, name)
        found = [ServerRef(o["metadata"]["namespace"], name) for o in self.store.items(MCPSERVERS.plural)
                 if o["metadata"]["name"] == name]
        if not found:
            raise ServerNotFound(f"no MCPServer {name!r} in the served namespaces")
        if len(found) > 1:
            spaces = ", ".join(sorted(r.namespace for r in found))
            raise AmbiguousServer(f"MCPServer {name!r} exists in several namespaces ({spaces}); name one")
        return found[0]

    def get(self, ref: ServerRef) -> ServerState:
        obj = self._object(ref)
        if obj is None:
            raise ServerNotFound(f"no MCPServer {ref}")
        return state_of(obj)

    def request(self, ref: ServerRef, instance: str | None = None, *, spare: bool = False) -> None:
        self.get(ref)
        try:
            if instance is None:
                self.writer.request(ref)
            else:
                self._set_instance(ref, instance, requested=True, spare=spare)
        except NotFound as err:
            raise ServerNotFound(f"no MCPServer {ref}") from err

    def _set_instance(self, ref: ServerRef, instance: str, *, requested: bool = False, spare: bool = False) -> None:
        """Record a request (written at once) or activity (coalesced) of one instance."""
        now = datetime.now(UTC)
        with self._lock:
            held = self._instances.setdefault(ref, {})
            entry = held.get(instance, InstanceDemand())
            held[instance] = replace(entry, requested_at=now, spare=spare) if requested \
                else replace(entry, last_active_at=now)
            wanted = dict(held)
        self.writer.instances(ref, wanted, urgent=requested)

    def release(self, ref: ServerRef, instance: str) -> None:
        with self._lock:
            held = self._instances.get(ref, {})
            if held.pop(instance, None) is None:
                return
            wanted = dict(held)
        with contextlib.suppress(NotFound):  # the server is gone, and its instances with it
            self.writer.instances(ref, wanted, urgent=True)

    def shutdown(self, ref: ServerRef) -> None:
        self.get(ref)
        try:
            self.writer.stop(ref)
        except NotFound as err:
            raise ServerNotFound(f"no MCPServer {ref}") from err

    def touch(self, ref: ServerRef, sessions: int, instance: str | None = None) -> None:
        if instance is not None:
            obj = self._object(ref)
            # As for a server: activity counts only once the instance runs.
            if obj is not None and _instance_status(obj, instance).get("phase") == Phase.READY:
                with self._lock:
                    known = instance in self._instances.get(ref, {})
                if known:
                    self._set_instance(ref, instance)
        self.writer.touch(ref, sessions)

    def _demand(self, ref: ServerRef, obj: Mapping[str, Any]) -> Demand:
        return self.writer.stored(ref, read_server(obj).demand)

    def wait_ready(self, ref: ServerRef, timeout: float, instance: str | None = None) -> ServerState:
        """Block until Ready, woken by watch events; re-request if the server stops meanwhile."""
        if instance is not None:
            return self._wait_instance(ref, instance, timeout)
        last_request_generation = -1

        def check() -> tuple[str, ServerState | None] | None:
            nonlocal last_request_generation
            obj = self._object(ref)
            if obj is None:
                return ("gone", None)
            state = state_of(obj)
            if state.phase == Phase.READY:
                return ("ready", state)
            demand = self._demand(ref, obj)
            if state.phase == Phase.DEGRADED and degraded_is_final(state, demand.requested_at):
                return ("failed", state)
            stopped = state.phase in (Phase.IDLE, Phase.STOPPING, Phase.DEGRADED)
            if stopped and self.store.generation != last_request_generation:
                fresh = state.server.start_timeout
                if not request_honoured(demand, datetime.now(UTC), fresh * 0.75):
                    last_request_generation = self.store.generation
                    return ("request", state)
            return None

        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while True:
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            outcome = self.store.wait_for(check, max(0.0, remaining)) if remaining > 0 else check()
            if outcome is None:
                obj = self._object(ref)
                raise start_failure(state_of(obj) if obj else None, ref, timeout)
            what, state = outcome
            if what == "ready" and state is not None:
                return state
            if what == "gone":
                raise ServerNotFound(f"MCPServer {ref} was deleted while a client waited for it")
            if what == "failed":
                raise start_failure(state, ref, timeout)
            if what == "request":
                self.writer.request(ref)  # the server stopped (or never saw us): ask again
            if remaining <= 0:
                obj = self._object(ref)
                raise start_failure(state_of(obj) if obj else None, ref, timeout)

    def _wait_instance(self, ref: ServerRef, instance: str, timeout: float) -> ServerState:
        """Block until the instance's status is Ready and its Pod is in the cache, woken by watch
        events; fail at once when the hooks judged it Degraded, or when it stopped (its client is gone)."""

        def check() -> tuple[str, ServerState | None] | None:
            obj = self._object(ref)
            if obj is None:
                return ("gone", None)
            state = _instance_state(obj, instance)
            if state is None:
                return None  # the hooks have not seen the request yet
            if state.phase == Phase.READY and self.store.get(PODS.plural, ref.namespace, _instance_pod(obj, instance)):
                return ("ready", state)
            if state.phase == Phase.DEGRADED or (state.phase == Phase.IDLE and state.reason in Reason.PERMANENT):
                return ("failed", state)
            return None

        outcome = self.store.wait_for(check, timeout)
        if outcome is None:
            obj = self._object(ref)
            raise start_failure(_instance_state(obj, instance) if obj else None, ref, timeout)
        what, state = outcome
        if what == "gone":
            raise ServerNotFound(f"MCPServer {ref} was deleted while a client waited for it")
        assert state is not None
        if what == "failed":
            raise start_failure(state, ref, timeout)
        return state

    def _pod(self, ref: ServerRef, state: ServerState) -> dict[str, Any]:
        name = str(state.extra.get("podName") or child_name(ref.name))
        pod = self.store.get(PODS.plural, ref.namespace, name)
        if pod is None:  # not in the cache yet (just created): ask once
            try:
                pod = self.client.get(PODS, ref.namespace, name)
            except NotFound as err:
                raise StartFailed(f"{ref} is {state.phase} but its Pod {name} does not exist",
                                  reason=Reason.POD_MISSING) from err
        return pod

    def connect(self, ref: ServerRef, instance: str | None = None) -> StdioConnection | HttpEndpoint:
        state = self.get(ref)
        if instance is not None:
            obj = self._object(ref)
            own = _instance_state(obj, instance) if obj else None
            if own is None or own.phase != Phase.READY:
                raise StartFailed(f"{ref} (instance {instance}) is {own.phase if own else 'unknown'}, not Ready",
                                  reason=Reason.NOT_RUNNING)
            return self._attach(ref, state.server, self._pod(ref, own), instance)
        server = state.server
        if state.phase != Phase.READY:
            raise StartFailed(f"{ref} is {state.phase}, not Ready", reason=Reason.NOT_RUNNING)
        if server.transport.is_http:
            host = f"{child_name(server.name)}.{server.namespace}.svc"
            return HttpEndpoint(url=f"http://{host}:{server.transport.port}{server.transport.path or ''}",
                                transport=server.transport.type)
        return self._attach(ref, server, self._pod(ref, state))

    def _attach(self, ref: ServerRef, server: Server, pod: Mapping[str, Any],
                instance: str | None = None) -> attach.AttachConnection:
        name = pod["metadata"]["name"]
        uid = pod["metadata"].get("uid")
        restarts = _restarts(pod)
        params = [("container", CONTAINER), ("stdin", "true"), ("stdout", "true"), ("stderr", "true")]

        def open_socket() -> Any:
            return self.client.open_websocket(PODS, ref.namespace, name, subresource="attach", params=params,
                                              subprotocols=attach.SUBPROTOCOLS)

        def same_container() -> bool:
            current = self.client.get(PODS, ref.namespace, name)
            return current["metadata"].get("uid") == uid and _restarts(current) == restarts and _running(current)

        def on_end(conn: attach.AttachConnection, reason: str) -> None:
            with self._lock:
                self._attaches.pop(id(conn), None)
                obj = self._object(ref)
                released = instance is not None and instance not in self._instances.get(ref, {})
                if obj is not None and status_of(obj).phase in Phase.RUNNING and not released:
                    self._attach_failures[ref] = f"attach to Pod {ref.namespace}/{name} ended: {reason}"
            self.store.notify()

        try:
            conn = attach.AttachConnection(
                f"{ref} (Pod {name})", open_socket, can_reattach=same_container, on_end=on_end,
                on_stderr=lambda line: log.info("%s stderr: %s", ref, line), ping_interval=self.settings.ping_interval)
        except KubeError:
            raise
        except Exception as err:
            raise StartFailed(f"cannot attach to Pod {ref.namespace}/{name}: {err}",
                              reason=Reason.ATTACH_FAILED) from err
        with self._lock:
            self._attaches[id(conn)] = (ref, conn)
            self._attach_failures.pop(ref, None)
        return conn

    def logs(self, ref: ServerRef, follow: bool) -> Iterator[str]:
        state = self.get(ref)
        pod = str(state.extra.get("podName") or child_name(ref.name))
        params: dict[str, Any] = {"container": CONTAINER, "follow": "true" if follow else "false"}
        if not follow:
            params["tailLines"] = "1000"
        stdio = not state.server.transport.is_http
        # Only literal values can be known here: the kubelet resolves valueFrom (gateway.redaction).
        secrets = secret_values(state.server.env)
        try:
            for line in self.client.stream_lines(PODS, ref.namespace, pod, "log", params):
                if not (stdio and _is_protocol_line(line)):
                    yield redact(line, secrets)
        except NotFound as err:
            raise ServerNotFound(f"{ref} has no Pod ({pod}): it is {state.phase}") from err

    def ready(self) -> tuple[bool, str]:
        for informer in self.informers:
            if not informer.synced.is_set():
                return False, f"{informer.name} not listed yet: {informer.stats.last_error or 'waiting'}"
            if not informer.healthy:
                return False, f"{informer.name}: {informer.stats.last_error or 'watch down'}"
        with self._lock:
            failures = dict(self._attach_failures)
        if failures:
            return False, "; ".join(failures.values())
        return True, ""

    def close(self) -> None:
        for informer in self.informers:
            informer.stop()
        self.writer.close()
        with self._lock:
            conns = [conn for _, conn in self._attaches.values()]
        for conn in conns:
            conn.close()
        self.client.close()


def _instance_status(obj: Mapping[str, Any], instance: str) -> Mapping[str, Any]:
    instances = (obj.get("status") or {}).get("instances")
    entry = instances.get(instance) if isinstance(instances, Mapping) else None
    return entry if isinstance(entry, Mapping) else {}


def _instance_pod(obj: Mapping[str, Any], instance: str) -> str:
    return str(_instance_status(obj, instance).get("podName") or pod_name(obj["metadata"]["name"], instance))


def _instance_state(obj: Mapping[str, Any], instance: str) -> ServerState | None:
    """One instance's phase as the server hook wrote it (None until it has), in a server's terms."""
    own = _instance_status(obj, instance)
    if not own.get("phase"):
        return None
    return ServerState(server=read_server(obj), phase=str(own["phase"]), reason=str(own.get("reason") or ""),
                       message=str(own.get("message") or ""), extra={"podName": _instance_pod(obj, instance)})


def _container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == CONTAINER:
            return status
    return {}


def _restarts(pod: Mapping[str, Any]) -> int:
    return int(_container_status(pod).get("restartCount") or 0)


def _running(pod: Mapping[str, Any]) -> bool:
    return "running" in (_container_status(pod).get("state") or {})


def create_runtime(config: Config) -> KubernetesRuntime:
    """The runtime `nmcp gateway --runtime kubernetes` serves from (reads the environment once)."""
    try:
        cluster = load_cluster(os.environ, config.kubeconfig or None, config.kube_context or None)
    except ClusterConfigError as err:
        raise ConfigError(f"kubernetes runtime: {err}") from err
    settings = KubeSettings.from_config(config, cluster.namespace)
    runtime = KubernetesRuntime(KubeClient(cluster), settings)
    served = ", ".join(settings.namespaces) if settings.namespaces else "all namespaces"
    log.info("kubernetes runtime: %s at %s, serving %s", cluster.source, cluster.server, served)
    runtime.start()
    return runtime
