"""A stand-in for the scheduler and the kubelet, which cannot run on these machines.

Real Pods need a scheduler, a kubelet and a container runtime. This thread does for the Pods of
the area's API server what those would do, through the API only, which is all Metacontroller and
the hooks ever see of them:

* a new unbound Pod is bound to the Node (POST .../pods/NAME/binding, the scheduler's write);
* after a delay its status turns Running and Ready, written as a kubelet writes it: conditions
  with lastTransitionTime, `containerStatuses` of the `server` container, `startTime`. The
  default delay is one second: a container takes that long or longer to start, and Pod times
  have whole seconds, so a faster "start" would land in the second of the request it answers;
* a Pod whose container has `stdin: true` gets a real process (mcp-server-time by default) in
  the fake kubelet of tests/kube/fakekubelet.py, where the API server proxies `pods/attach`;
* a Pod with a deletionTimestamp has its process stopped and, a moment later, is deleted with
  gracePeriodSeconds=0, as a kubelet confirms a graceful deletion.

`control()` changes this per Pod or server name: a longer delay before Ready, holding the Pod
not ready until the test releases it (so a test sees "Starting" without racing a timer), an
image that cannot be pulled (ErrImagePull / ImagePullBackOff), a crash loop (CrashLoopBackOff).

`records()` is the history: every Pod created, Ready, terminating and deleted, with its uid, its
server label, when the event arrived and its resourceVersion. Created and deleted are recorded in
the watch's order, which is the API server's, so the most Pods alive at once is exact.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from gateway.kube.client import PODS, Access, KubeClient, KubeError, NotFound
from nmcp.model.resources import LABEL_SERVER, format_time
from tests.kube.fakekubelet import Container
from tests.kube.kube_cluster import SERVER_ARGV, Cluster, make_kubelet
from tests.metacontroller.watching import resource_version, watch
from tests.support.kubeapi import KubeAPI

log = logging.getLogger(__name__)

CONTAINER = "server"  # the container the hooks put in every server Pod
CREATED, READY, TERMINATING, DELETED = "created", "ready", "terminating", "deleted"
# What a kubelet takes between seeing a deletion and confirming it once the container has stopped.
CONFIRM_DELETION_AFTER = 0.2
IMAGE_FAILURES = ("ErrImagePull", "ImagePullBackOff")
CRASH = "CrashLoopBackOff"


@dataclass(frozen=True)
class PodRecord:
    """One thing that happened to one Pod."""

    event: str  # created, ready, terminating, deleted
    namespace: str
    name: str
    uid: str
    server: str  # the Pod's nmcp.nwrx.io/server label
    at: float  # time.monotonic() when it was seen
    rv: int  # resourceVersion of the Pod at that event


@dataclass(frozen=True)
class Control:
    """How the stand-in treats one Pod (or every Pod of one server)."""

    ready_delay: float = 1.0
    hold: bool = False  # not ready before `control(..., hold=False)`, however long that takes
    failure: str | None = None  # ErrImagePull, ImagePullBackOff or CrashLoopBackOff
    argv: tuple[str, ...] = tuple(SERVER_ARGV)


def _meta(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod.get("metadata") or {}


def _container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return next((c for c in containers if c.get("name") == CONTAINER), containers[0])


def _condition(type_: str, status: bool, at: str) -> dict[str, Any]:
    return {"type": type_, "status": "True" if status else "False", "lastProbeTime": None, "lastTransitionTime": at}


def running_status(pod: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Running and Ready, as a kubelet reports a started container that passes its probes."""
    at = format_time(now)
    image = str(_container(pod).get("image") or "unknown")
    return {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": at,
        "conditions": [_condition(t, True, at) for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
        "containerStatuses": [{
            "name": CONTAINER, "ready": True, "started": True, "restartCount": 0, "image": image,
            "imageID": f"{image}@sha256:{'0' * 64}", "containerID": f"fake://{_meta(pod).get('uid')}",
            "state": {"running": {"startedAt": at}}}],
    }


def failing_status(pod: Mapping[str, Any], now: datetime, failure: str) -> dict[str, Any]:
    """A container that cannot start: its image cannot be pulled, or it keeps exiting."""
    at = format_time(now)
    image = str(_container(pod).get("image") or "unknown")
    crash = failure == CRASH
    waiting = {"reason": failure,
               "message": (f"back-off 40s restarting failed container={CONTAINER}" if crash else
                           f'Back-off pulling image "{image}"' if failure == "ImagePullBackOff" else
                           f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}"')}
    status: dict[str, Any] = {
        "name": CONTAINER, "ready": False, "started": False, "restartCount": 3 if crash else 0, "image": image,
        "imageID": "", "state": {"waiting": waiting}}
    if crash:
        status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": at, "finishedAt": at}}
    return {
        "phase": "Running" if crash else "Pending", "hostIP": "127.0.0.1", "startTime": at,
        "conditions": [_condition("Initialized", True, at), _condition("Ready", False, at),
                       _condition("ContainersReady", False, at), _condition("PodScheduled", True, at)],
        "containerStatuses": [status],
    }


class Kubelet:
    """See the module docstring. `start()` registers the Node and begins watching."""

    def __init__(self, client: KubeClient, cluster: Cluster, namespaces: Collection[str] | None = None) -> None:
        self.client = client
        self.node = cluster.node
        self.fake = cluster.kubelet
        self.namespaces = set(namespaces) if namespaces is not None else None
        self.errors: list[str] = []
        self._records: list[PodRecord] = []
        self._changed = threading.Condition()
        self._known: dict[str, dict[str, Any]] = {}  # uid -> the Pod as last seen
        self._handled: set[str] = set()  # uids being started
        self._terminating: set[str] = set()
        self._processes: dict[str, Container] = {}  # uid -> its process
        self._controls: dict[tuple[str, str], Control] = {}
        self._closing = threading.Event()
        self._tasks = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kubelet")
        self._exit: contextlib.ExitStack | None = None
        self._informer = watch(client, PODS, None, self._event, self._list)

    @classmethod
    def start(cls, kube: KubeAPI, client: KubeClient, namespaces: Collection[str] | None = None) -> Kubelet:
        """Register a Node served by a fake kubelet (attach and logs) and play its kubelet."""
        stack = contextlib.ExitStack()
        cluster = stack.enter_context(contextlib.contextmanager(make_kubelet)(
            kube, ("v5.channel.k8s.io", "v4.channel.k8s.io")))
        try:
            kubelet = cls(client, cluster, namespaces)
        except BaseException:
            stack.close()
            raise
        kubelet._exit = stack
        return kubelet

    def close(self) -> None:
        self._closing.set()
        self._informer.stop()
        self._tasks.shutdown(wait=True, cancel_futures=True)
        if self._exit is not None:
            self._exit.close()  # stops every process and deletes the Node
            self._exit = None

    # ---- controls and history -------------------------------------------------------------

    def control(self, namespace: str, name: str, **changes: Any) -> None:
        """Treat Pod `name`, or every Pod of server `name`, differently from now on (see `Control`)."""
        with self._changed:
            current = self._controls.get((namespace, name), Control())
            self._controls[(namespace, name)] = replace(current, **changes)

    def _control_for(self, pod: Mapping[str, Any]) -> Control:
        meta = _meta(pod)
        ns = str(meta.get("namespace"))
        server = str((meta.get("labels") or {}).get(LABEL_SERVER, ""))
        with self._changed:
            return self._controls.get((ns, str(meta.get("name")))) or self._controls.get((ns, server)) or Control()

    def records(self, namespace: str | None = None, *, server: str | None = None,
                event: str | None = None) -> list[PodRecord]:
        with self._changed:
            return [r for r in self._records if (namespace is None or r.namespace == namespace)
                    and (server is None or r.server == server) and (event is None or r.event == event)]

    def created(self, namespace: str, server: str | None = None) -> list[PodRecord]:
        return self.records(namespace, server=server, event=CREATED)

    def alive(self, namespace: str, server: str | None = None) -> list[PodRecord]:
        """Pods created and not deleted yet (terminating ones included: they still run)."""
        gone = {r.uid for r in self.records(namespace, server=server, event=DELETED)}
        return [r for r in self.created(namespace, server) if r.uid not in gone]

    def max_alive(self, namespace: str) -> int:
        """The most Pods of `namespace` that existed at the same time."""
        alive = most = 0
        for record in self.records(namespace):
            if record.event == CREATED:
                alive += 1
                most = max(most, alive)
            elif record.event == DELETED:
                alive -= 1
        return most

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 45) -> Any:
        """The first truthy `check()`, re-evaluated whenever the history grows."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = check()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
                self._changed.wait(min(remaining, 1.0))

    def _record(self, event: str, pod: Mapping[str, Any], rv: int | None = None) -> None:
        meta = _meta(pod)
        record = PodRecord(event=event, namespace=str(meta.get("namespace")), name=str(meta.get("name")),
                           uid=str(meta.get("uid")), server=str((meta.get("labels") or {}).get(LABEL_SERVER, "")),
                           at=time.monotonic(), rv=rv if rv is not None else resource_version(pod))
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()

    # ---- the watch (one thread: events arrive in the API server's order) ---------------------

    def _served(self, pod: Mapping[str, Any]) -> bool:
        return self.namespaces is None or _meta(pod).get("namespace") in self.namespaces

    def _event(self, kind: str, pod: dict[str, Any]) -> None:
        if not self._served(pod):
            return
        if kind == "DELETED":
            self._deleted(pod)
            return
        meta = _meta(pod)
        uid = str(meta.get("uid"))
        with self._changed:
            new = uid not in self._known
            self._known[uid] = pod
        if new:
            self._record(CREATED, pod)
        if meta.get("deletionTimestamp"):
            with self._changed:
                first = uid not in self._terminating
                self._terminating.add(uid)
            if first:
                self._record(TERMINATING, pod)
                self._submit(self._terminate, pod)
            return
        node = (pod.get("spec") or {}).get("nodeName")
        with self._changed:
            start = uid not in self._handled and node in (None, "", self.node)
            self._handled.add(uid)
        if start:
            self._submit(self._run, pod)

    def _list(self, pods: list[dict[str, Any]]) -> None:
        """A (re)list: everything listed is an event; what was known and is not listed was deleted."""
        listed = {str(_meta(p).get("uid")) for p in pods}
        with self._changed:
            vanished = [p for uid, p in self._known.items() if uid not in listed]
        for pod in vanished:
            self._deleted(pod)
        for pod in pods:
            self._event("ADDED", pod)

    def _deleted(self, pod: Mapping[str, Any]) -> None:
        uid = str(_meta(pod).get("uid"))
        with self._changed:
            known = self._known.pop(uid, None)
        if known is None:  # created and deleted between two lists: it existed all the same
            self._record(CREATED, pod)
        self._record(DELETED, pod)
        self._stop_process(uid, pod)

    # ---- what the kubelet does (worker threads) ---------------------------------------------

    def _submit(self, task: Callable[[dict[str, Any]], None], pod: dict[str, Any]) -> None:
        def run() -> None:
            try:
                task(pod)
            except Exception as err:  # a kubelet bug must show up in the test that hit it
                log.exception("stand-in kubelet: %s of Pod %s failed", task.__name__, _meta(pod).get("name"))
                self.errors.append(f"{task.__name__} {_meta(pod).get('namespace')}/{_meta(pod).get('name')}: {err}")

        if not self._closing.is_set():
            self._tasks.submit(run)

    def _gone_meanwhile(self, uid: str) -> bool:
        with self._changed:
            return self._closing.is_set() or uid in self._terminating or uid not in self._known

    def _call(self, method: str, verb: str, pod: Mapping[str, Any], subresource: str | None, *,
              body: Mapping[str, Any], content_type: str = "application/json") -> dict[str, Any] | None:
        """One API call about `pod`; None when the Pod is gone or replaced (nothing left to do)."""
        meta = _meta(pod)
        ns, name = str(meta["namespace"]), str(meta["name"])
        try:
            return self.client.call(method, Access(verb, PODS, ns, subresource), PODS.path(ns, name, subresource),
                                    body=body, content_type=content_type).json()
        except NotFound:
            return None
        except KubeError as err:
            if err.status in (409, 422) or self._gone_meanwhile(str(meta.get("uid"))):
                return None  # another Pod of that name now, or it is being deleted
            raise

    def _run(self, pod: dict[str, Any]) -> None:
        meta = _meta(pod)
        ns, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
        control = self._control_for(pod)
        if not (pod.get("spec") or {}).get("nodeName"):
            binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "uid": uid},
                       "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}}
            if self._call("POST", "create", pod, "binding", body=binding) is None:
                return
        deadline = time.monotonic() + control.ready_delay
        while time.monotonic() < deadline or self._control_for(pod).hold:
            if self._gone_meanwhile(uid):
                return
            self._closing.wait(0.05)
        now = datetime.now(UTC)
        if control.failure:
            self._write_status(pod, failing_status(pod, now, control.failure))
            return
        if _container(pod).get("stdin"):
            with self._changed:
                if uid in self._terminating or self._closing.is_set():
                    return
                self._processes[uid] = self.fake.add(ns, name, control.argv)
        written = self._write_status(pod, running_status(pod, now))
        if written is not None:
            self._record(READY, written, resource_version(written))

    def _write_status(self, pod: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any] | None:
        # The uid makes the patch conditional: never write onto a newer Pod of the same name.
        patch = {"metadata": {"uid": _meta(pod)["uid"]}, "status": status}
        return self._call("PATCH", "patch", pod, "status", body=patch, content_type="application/merge-patch+json")

    def _stop_process(self, uid: str, pod: Mapping[str, Any]) -> None:
        with self._changed:
            process = self._processes.pop(uid, None)
        if process is not None:
            process.stop()
            key = (str(_meta(pod).get("namespace")), str(_meta(pod).get("name")))
            if self.fake.containers.get(key) is process:
                del self.fake.containers[key]

    def _terminate(self, pod: dict[str, Any]) -> None:
        uid = str(_meta(pod)["uid"])
        self._stop_process(uid, pod)
        self._closing.wait(CONFIRM_DELETION_AFTER)
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                   "preconditions": {"uid": uid}}
        self._call("DELETE", "delete", pod, None, body=options)


def server_pods(records: Sequence[PodRecord]) -> dict[str, list[str]]:
    """server -> uids of its Pods, in creation order."""
    out: dict[str, list[str]] = {}
    for record in records:
        if record.event == CREATED:
            out.setdefault(record.server, []).append(record.uid)
    return out
