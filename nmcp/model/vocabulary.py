"""The words nmcp's status speaks, and the readers of a status written in them.

One vocabulary for every runtime: the hooks write these phases, condition types and reasons;
the gateway's runtimes (Kubernetes, and the embedded one of `nmcp up`) read them back and hand
the same reasons to a waiting client. Kubernetes' own words that nmcp reads on Pods (and that
`nmcp up` writes on the Pods it simulates) are here too, under `Kube`. A test fails when one of
these strings is typed anywhere else: import the constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Phase:
    """An MCPServer's `status.phase` (the CRD's enum, in the order a server goes through them)."""

    IDLE = "Idle"
    REQUESTED = "Requested"
    STARTING = "Starting"
    READY = "Ready"
    STOPPING = "Stopping"
    DEGRADED = "Degraded"
    ALL = (IDLE, REQUESTED, STARTING, READY, STOPPING, DEGRADED)
    # A server in these phases has (or is getting) a running instance.
    RUNNING = (READY, STARTING)


class Condition:
    """Condition types: `Ready` and `Admitted` on a server, `Ready` and `AtCapacity` on a pool."""

    READY = "Ready"
    ADMITTED = "Admitted"
    AT_CAPACITY = "AtCapacity"


class Reason:
    """Condition reasons, and the reason a client's error carries when its server does not start."""

    # A server's Ready condition.
    NEVER_REQUESTED = "NeverRequested"
    STOPPED = "Stopped"
    STOPPED_BY_REQUEST = "StoppedByRequest"
    REQUEST_EXPIRED = "RequestExpired"
    IDLE_TIMEOUT = "IdleTimeout"
    DELETING = "Deleting"
    SCHEDULING = "Scheduling"
    WAITING_FOR_CAPACITY = "WaitingForCapacity"
    POD_PENDING = "PodPending"
    CONTAINERS_NOT_READY = "ContainersNotReady"
    UPDATING = "Updating"
    RUNNING = "Running"
    SPEC_CHANGED = "SpecChanged"
    EVICTED = "Evicted"
    POD_TERMINATING = "PodTerminating"
    INVALID_SPEC = "InvalidSpec"
    POOL_NOT_FOUND = "PoolNotFound"
    POD_FAILED = "PodFailed"
    IMAGE_PULL_FAILING = "ImagePullFailing"
    CRASH_LOOP = "CrashLoopBackOff"
    UNSCHEDULABLE = "Unschedulable"
    START_TIMEOUT = "StartTimeout"
    RECONCILE_FAILED = "ReconcileFailed"  # `nmcp up`: the hooks failed on this object
    # A server's Admitted condition.
    POD_CREATED = "PodCreated"
    NOT_REQUESTED = "NotRequested"
    # A pool's Ready condition (besides INVALID_SPEC).
    RECONCILED = "Reconciled"
    # A pool's AtCapacity condition.
    POOL_FULL = "PoolFull"
    HAS_CAPACITY = "HasCapacity"
    # Why a client's request found no running server (the gateway's errors, besides the above).
    NOT_RUNNING = "NotRunning"
    NOT_RUNNABLE = "NotRunnable"
    SESSION_ENDED = "SessionEnded"
    UPSTREAM_ERROR = "UpstreamError"
    UPSTREAM_UNREACHABLE = "UpstreamUnreachable"
    INITIALIZE_FAILED = "InitializeFailed"
    POD_MISSING = "PodMissing"
    ATTACH_FAILED = "AttachFailed"
    IDENTITY_REQUIRED = "IdentityRequired"  # isolation: identity, reached without authentication
    # A server whose Degraded reason is one of these stays Degraded until its spec or pool changes:
    # a new request cannot help.
    PERMANENT = frozenset({INVALID_SPEC, POOL_NOT_FOUND})


class Kube:
    """Kubernetes' words on a Pod, read by the hooks and written by `nmcp up`'s simulated kubelet."""

    POD_PENDING = "Pending"
    POD_RUNNING = "Running"
    POD_FAILED = "Failed"
    POD_SUCCEEDED = "Succeeded"
    POD_SCHEDULED = "PodScheduled"
    INITIALIZED = "Initialized"
    CONTAINERS_READY = "ContainersReady"
    READY = "Ready"
    UNSCHEDULABLE = "Unschedulable"
    CONTAINER_CREATING = "ContainerCreating"
    POD_INITIALIZING = "PodInitializing"
    CRASH_LOOP = "CrashLoopBackOff"
    RUN_CONTAINER_ERROR = "RunContainerError"
    # Waiting reasons that mean "the image cannot be had" rather than "still creating".
    IMAGE_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
    # Waiting reasons of a container on its normal way up; every other waiting reason is a failure.
    NORMAL_WAITING = frozenset({CONTAINER_CREATING, POD_INITIALIZING})


def words() -> frozenset[str]:
    """Every string of this vocabulary (for the test that keeps them out of other modules)."""
    found: set[str] = set()
    for namespace in (Phase, Condition, Reason, Kube):
        for name, value in vars(namespace).items():
            if name.isupper():
                found.update([value] if isinstance(value, str) else value)
    return frozenset(found)


# --- readers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """A server's phase and its Ready condition's reason and message, as its status shows them."""

    phase: str
    reason: str
    message: str


def condition_of(obj: Mapping[str, Any], type_: str = Condition.READY) -> Mapping[str, Any]:
    """The condition of type `type_` in an object's status ({} when it has none)."""
    status = obj.get("status")
    for cond in (status.get("conditions") if isinstance(status, Mapping) else None) or ():
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cond
    return {}


def status_of(obj: Mapping[str, Any]) -> Status:
    """What a server object's status says (a server with no status yet is Idle)."""
    status = obj.get("status")
    phase = status.get("phase") if isinstance(status, Mapping) else None
    ready = condition_of(obj)
    return Status(phase=str(phase or Phase.IDLE), reason=str(ready.get("reason") or ""),
                  message=str(ready.get("message") or ""))
