"""Local processes presented as the Pods a kubelet would report.

The hooks decide from observed Pods: whether one exists, is terminating, is ready, or waits in
`CrashLoopBackOff`. Under `nmcp up` a Pod is a local process, and this module writes the status a
kubelet would write for it, so the hooks need no notion of "local" beyond the spec they accept:

* created, process not spawned yet: phase Pending, container waiting in `ContainerCreating`;
* process running: phase Running; Ready at once for stdio servers (no readiness probe, as in a
  cluster), and for HTTP servers once their port accepts connections (the Pod's tcpSocket probe);
* process exited: restarted (restartPolicy Always); while it waits for its back-off the container
  is waiting in `CrashLoopBackOff` (or `RunContainerError` when the command cannot be executed),
  with the exit code in `lastState.terminated`, exactly the shapes the hooks read;
* being stopped: `metadata.deletionTimestamp` set until the process is gone.

Pure: a frozen snapshot in, a Pod dict out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nmcp.model.resources import GROUP, format_time_precise
from nmcp.model.vocabulary import Kube

ANN_PID = f"{GROUP}/pid"  # shown on observed Pods (and in the API) so an operator can find the process


@dataclass(frozen=True)
class Exit:
    """How the previous run of the process ended."""

    code: int
    started_at: datetime
    finished_at: datetime
    message: str = ""  # the last lines of its stderr


@dataclass(frozen=True)
class PodSnapshot:
    """Everything observable about one local Pod at one moment."""

    desired: dict[str, Any]  # the Pod the pool's sync hook asked for (what is being run)
    uid: str
    created_at: datetime
    pid: int | None = None  # the running process
    running_since: datetime | None = None
    ready_since: datetime | None = None
    waiting_reason: str | None = None  # ContainerCreating, CrashLoopBackOff, RunContainerError
    waiting_message: str = ""
    restarts: int = 0
    last_exit: Exit | None = None
    deleting_since: datetime | None = None


def _time(value: datetime | None) -> str | None:
    return format_time_precise(value) if value is not None else None


def _condition(type_: str, status: bool, since: datetime | None) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": type_, "status": "True" if status else "False"}
    if since is not None:
        cond["lastTransitionTime"] = format_time_precise(since)
    return cond


def observed_pod(snap: PodSnapshot) -> dict[str, Any]:
    """The Pod as the hooks would see it in `children` / `related`."""
    pod = copy.deepcopy(snap.desired)
    meta = pod.setdefault("metadata", {})
    meta["uid"] = snap.uid
    meta["creationTimestamp"] = _time(snap.created_at)
    if snap.pid is not None:
        meta.setdefault("annotations", {})[ANN_PID] = str(snap.pid)
    if snap.deleting_since is not None:
        meta["deletionTimestamp"] = _time(snap.deleting_since)

    containers = (pod.get("spec") or {}).get("containers") or [{}]
    container_status: dict[str, Any] = {
        "name": containers[0].get("name", "server"),
        "image": containers[0].get("image", ""),
        "ready": snap.ready_since is not None,
        "restartCount": snap.restarts,
        "started": snap.running_since is not None,
    }
    if snap.running_since is not None:
        container_status["state"] = {"running": {"startedAt": _time(snap.running_since)}}
    else:
        container_status["state"] = {"waiting": {"reason": snap.waiting_reason or Kube.CONTAINER_CREATING,
                                                 "message": snap.waiting_message}}
    if snap.last_exit is not None:
        container_status["lastState"] = {"terminated": {
            "exitCode": snap.last_exit.code,
            "reason": "Completed" if snap.last_exit.code == 0 else "Error",
            "message": snap.last_exit.message,
            "startedAt": _time(snap.last_exit.started_at),
            "finishedAt": _time(snap.last_exit.finished_at),
        }}

    ever_ran = snap.running_since is not None or snap.last_exit is not None
    pod["status"] = {
        "phase": Kube.POD_RUNNING if ever_ran else Kube.POD_PENDING,
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "startTime": _time(snap.created_at),
        "conditions": [
            _condition(Kube.POD_SCHEDULED, True, snap.created_at),
            _condition(Kube.INITIALIZED, True, snap.created_at),
            _condition(Kube.CONTAINERS_READY, snap.ready_since is not None, snap.ready_since),
            _condition(Kube.READY, snap.ready_since is not None, snap.ready_since),
        ],
        "containerStatuses": [container_status],
    }
    return pod
