"""The real Metacontroller, the real hooks and the real gateway code on a kube-apiserver of their own.

Until these tests, the hooks were only ever fed hand-made request bodies; what Metacontroller
really sends, when it calls, how it applies and compares children, and how fast its rate-limited
client moves status were assumptions. `MetaCluster` puts every real part together on loopback:

* a kube-apiserver + etcd of its own (`tests.support.kubeapi.KubeAPI`), never the suite's shared
  one: a running Metacontroller reconciles every MCPServer it can see, and other test areas write
  MCPServer status by hand;
* nmcp's CRDs and Metacontroller's own (`metacontroller-crds-v1.yaml`);
* `nmcp operator` (gunicorn, the hooks as shipped), and the project's own
  `metacontroller/controllers.yaml` with only the webhook URLs pointed at it (`controllers`);
* the Metacontroller v4.17.2 binary from `shared/test-components/metacontroller/`
  (`metacontroller_binary`), run with the flags a deployment would pass (`Metacontroller`);
* a stand-in kubelet (`tests.metacontroller.kubelet.Kubelet`): binds, "runs" and deletes Pods;
* demand exactly as the gateway writes it: the gateway's own `KubernetesRuntime` (`Gateway`);
* `StatusSampler`: every status an MCPServer showed, from a watch, so a test can say what was
  never shown.

Events of different kinds are ordered by resourceVersion, not by the clock: on one etcd every
object's resourceVersion is that etcd's revision at the write, so it orders a Pod's deletion
against an MCPServer's status write exactly, where the arrival times on two watches would not.

The benchmark (bench/metacontroller_burst.py) builds on the same module.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import lzma
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from gateway.kube.client import MCPSERVERS, Access, KubeClient, Resource
from gateway.kube.config import from_kubeconfig
from gateway.runtime import ServerNotFound, ServerRef
from gateway.runtimes.kubernetes import KubernetesRuntime, KubeSettings
from nmcp.model.resources import API_VERSION
from nmcp.model.vocabulary import condition_of
from tests.metacontroller.kubelet import Kubelet
from tests.metacontroller.watching import resource_version, watch
from tests.support import ROOT, VENV_BIN, free_port, stop, wait_for, wait_http
from tests.support.kubeapi import KUBE_CACHE, KubeAPI, _die_with_parent, _tail

METACONTROLLER_VERSION = "v4.17.2"
# In CI the clone has `shared/` beside it, read-only.
METACONTROLLER_DIR = ROOT.parent / "shared" / "test-components" / "metacontroller"
METACONTROLLER_XZ = METACONTROLLER_DIR / f"metacontroller-{METACONTROLLER_VERSION}.xz"
METACONTROLLER_CRDS = METACONTROLLER_DIR / "metacontroller-crds-v1.yaml"
METACONTROLLER_BIN = KUBE_CACHE / f"metacontroller-{METACONTROLLER_VERSION}"
CONTROLLERS = ROOT / "metacontroller" / "controllers.yaml"
# Where controllers.yaml sends the hooks: the `nmcp-hooks` Service in `nmcp-system`.
HOOKS_HOST = "nmcp-hooks.nmcp-system"
MCPPOOLS = Resource("nmcp.nwrx.io", "v1", "mcppools")
# How long a test waits for one step of a server's life (a phase, a Pod gone). A step takes a few
# seconds even on a loaded 2-core machine; the guard is generous, and short enough that a hook
# regression failing every test does not eat the suite's whole time budget.
STEP_TIMEOUT = 45.0


@dataclass(frozen=True)
class ClientFlags:
    """Metacontroller's client-side throughput settings; None leaves its default.

    Its defaults (QPS 5, burst 10, 5 workers per controller) bound how fast status moves under a
    burst of demand, not the hooks: every Pod create or delete and every status write is one of
    those queries.
    """

    qps: float | None = None
    burst: int | None = None
    workers: int | None = None

    def argv(self) -> list[str]:
        flags = [("--client-go-qps", self.qps), ("--client-go-burst", self.burst), ("--workers", self.workers)]
        return [f"{flag}={value:g}" if isinstance(value, float) else f"{flag}={value}"
                for flag, value in flags if value is not None]

    def describe(self) -> str:
        return " ".join(self.argv()) or "Metacontroller's defaults (QPS 5, burst 10, 5 workers)"



def recommended_flags(values: Path = ROOT / "helm" / "nmcp" / "values.yaml") -> ClientFlags:
    """The flags the chart recommends (values.yaml `metacontroller.recommendedArgs`, which its
    NOTES print): the tests and the benchmark run Metacontroller with exactly those."""
    args = yaml.safe_load(values.read_text())["metacontroller"]["recommendedArgs"]
    given = dict(str(arg).removeprefix("--").split("=", 1) for arg in args)
    return ClientFlags(qps=float(given.pop("client-go-qps")), burst=int(given.pop("client-go-burst")),
                       workers=int(given.pop("workers")))


RECOMMENDED_FLAGS = recommended_flags()
DEFAULT_FLAGS = ClientFlags()


class HarnessError(RuntimeError):
    """A part of the test cluster is missing or would not start; the message says which and why."""


# ---- the Metacontroller binary -------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_sha256() -> str:
    """The binary's sha256 as the component's README states it (the README is the provenance record)."""
    readme = METACONTROLLER_DIR / "README.md"
    try:
        text = readme.read_text()
    except OSError as err:
        raise HarnessError(f"{readme} is missing ({err}): the tests need shared/test-components/metacontroller "
                           "beside the clone") from None
    found = re.search(r"of the binary `([0-9a-f]{64})`", text)
    if not found:
        raise HarnessError(f"{readme} states no sha256 of the binary (expected 'of the binary `<sha256>`')")
    return found.group(1)


def metacontroller_binary() -> Path:
    """The Metacontroller binary, decompressed once into the cache (NMCP_KUBE_CACHE) and checked.

    Written to a temporary name and renamed, so two runs at once never execute a half-written file.
    """
    expected = expected_sha256()
    if METACONTROLLER_BIN.exists() and _sha256(METACONTROLLER_BIN) == expected:
        return METACONTROLLER_BIN
    if not METACONTROLLER_XZ.exists():
        raise HarnessError(f"{METACONTROLLER_XZ} is missing: the tests run the real Metacontroller from "
                           "shared/test-components/metacontroller beside the clone")
    KUBE_CACHE.mkdir(parents=True, exist_ok=True)
    partial = METACONTROLLER_BIN.with_name(f".{METACONTROLLER_BIN.name}.{os.getpid()}.partial")
    try:
        with lzma.open(METACONTROLLER_XZ) as source, partial.open("wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        actual = _sha256(partial)
        if actual != expected:
            raise HarnessError(f"{METACONTROLLER_XZ} decompresses to sha256 {actual}, but its README says {expected}")
        partial.chmod(0o755)
        os.replace(partial, METACONTROLLER_BIN)
    except (OSError, lzma.LZMAError) as err:
        raise HarnessError(f"cannot unpack {METACONTROLLER_XZ} into {METACONTROLLER_BIN}: {err}") from None
    finally:
        partial.unlink(missing_ok=True)
    return METACONTROLLER_BIN


# ---- the controllers, pointed at the operator ----------------------------------------------------


def hook_urls(doc: Mapping[str, Any]) -> dict[str, str]:
    """hook name -> webhook URL of one CompositeController."""
    hooks = (doc.get("spec") or {}).get("hooks") or {}
    return {name: str((hook.get("webhook") or {}).get("url")) for name, hook in hooks.items()}


def point_hooks_at(doc: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """`doc` with every webhook URL moved from the `nmcp-hooks` Service to `base_url` (path kept)."""
    out = copy.deepcopy(dict(doc))
    for name, hook in ((out.get("spec") or {}).get("hooks") or {}).items():
        webhook = hook.get("webhook") or {}
        url = webhook.get("url")
        parts = urlsplit(str(url or ""))
        if parts.hostname != HOOKS_HOST:
            raise HarnessError(f"{CONTROLLERS}: hook {name} of {out['metadata']['name']} calls {url!r}, not "
                               f"http://{HOOKS_HOST}/...: the tests only know how to redirect that URL")
        webhook["url"] = base_url.rstrip("/") + parts.path
    return out


def controllers(base_url: str) -> list[dict[str, Any]]:
    """metacontroller/controllers.yaml as shipped, with the hooks at `base_url`."""
    return [point_hooks_at(doc, base_url) for doc in yaml.safe_load_all(CONTROLLERS.read_text()) if doc]


# ---- processes -----------------------------------------------------------------------------------


class Operator:
    """`nmcp operator` (gunicorn, the hooks as shipped) on a free loopback port, logging to a file."""

    def __init__(self, logdir: Path, workers: int = 2) -> None:
        self.log = logdir / "operator.log"
        self.workers = workers
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [str(VENV_BIN / "nmcp"), "operator", "--bind", f"127.0.0.1:{port}", "--workers", str(self.workers)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(_die_with_parent(argv), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "NMCP_OPERATOR_ACCESS_LOG": "1"})
        try:
            wait_http(self.url + "/healthz", 60, self.proc)
        except (RuntimeError, TimeoutError) as err:
            raise HarnessError(f"nmcp operator did not start: {err}\n{_tail(self.log)}") from None

    def calls(self, path: str) -> int:
        """How many POSTs to `path` (e.g. /server/sync) its access log shows."""
        needle = f'"POST {path} '
        return sum(1 for line in self.log.read_text(errors="replace").splitlines() if needle in line)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, 10)
            self.proc = None


class Metacontroller:
    """The Metacontroller binary against one API server, with loopback metrics and probes.

    It runs under a parent-death signal (it dies with the test process, however that ends) and
    logs JSON at level 4 (every sync decision) to a file whose tail a failing test prints.
    """

    def __init__(self, kubeconfig: Path, logdir: Path, flags: ClientFlags = RECOMMENDED_FLAGS) -> None:
        self.kubeconfig = kubeconfig
        self.flags = flags
        self.log = logdir / "metacontroller.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = self.probe_port = 0

    def argv(self, binary: Path) -> list[str]:
        return [str(binary), f"--kubeconfig={self.kubeconfig}",
                f"--metrics-address=127.0.0.1:{self.metrics_port}",
                f"--health-probe-bind-address=127.0.0.1:{self.probe_port}",
                "--zap-log-level=4", *self.flags.argv()]

    def start(self) -> None:
        binary = metacontroller_binary()
        self.metrics_port, self.probe_port = free_port(), free_port()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(_die_with_parent(self.argv(binary)), stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.log.parent)
        try:
            wait_http(f"http://127.0.0.1:{self.probe_port}/healthz", 60, self.proc)
        except (RuntimeError, TimeoutError) as err:
            raise HarnessError(f"Metacontroller did not start: {err}\n{self.tail()}") from None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines)

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, 10)
            self.proc = None


# ---- MCPServer status over time ------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One state of an MCPServer as a watch delivered it."""

    at: float  # time.monotonic() when it arrived
    rv: int  # resourceVersion: orders it against Pod events exactly (module docstring)
    name: str
    generation: int
    phase: str | None
    reason: str
    observed_generation: int | None
    pod_name: str | None
    deleted: bool = False


def sample_of(obj: Mapping[str, Any], deleted: bool = False) -> Sample:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    return Sample(at=time.monotonic(), rv=resource_version(obj), name=str(meta.get("name")),
                  generation=int(meta.get("generation") or 0), phase=status.get("phase"),
                  reason=str(condition_of(obj).get("reason") or ""),
                  observed_generation=int(observed) if observed is not None else None,
                  pod_name=status.get("podName"), deleted=deleted)


class StatusSampler:
    """Every state the MCPServers of one namespace went through (phase, reason, generations, Pod)."""

    def __init__(self, client: KubeClient, namespace: str) -> None:
        self.namespace = namespace
        self._samples: list[Sample] = []
        self._changed = threading.Condition()
        self._informer = watch(client, MCPSERVERS, namespace, self._event, self._list)

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        self._add([sample_of(obj, deleted=kind == "DELETED")])

    def _list(self, items: list[dict[str, Any]]) -> None:
        self._add([sample_of(obj) for obj in items])

    def _add(self, samples: list[Sample]) -> None:
        with self._changed:
            self._samples.extend(samples)
            self._changed.notify_all()

    def samples(self, name: str | None = None) -> list[Sample]:
        with self._changed:
            return [s for s in self._samples if name is None or s.name == name]

    def latest(self, name: str) -> Sample | None:
        found = self.samples(name)
        return found[-1] if found else None

    def wait(self, name: str, predicate: Callable[[Sample], bool], what: str,
             timeout: float = STEP_TIMEOUT) -> Sample:
        """The first sample of `name` from now on (the latest one included) that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            start = max((i for i, s in enumerate(self._samples) if s.name == name), default=len(self._samples))
            while True:
                for sample in self._samples[start:]:
                    if sample.name == name and predicate(sample):
                        return sample
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(s.phase, s.reason, s.observed_generation) for s in self._samples if s.name == name]
                    raise AssertionError(f"timed out after {timeout:g}s waiting for {self.namespace}/{name} to "
                                         f"{what}; its states: {seen[-12:]}")
                self._changed.wait(remaining)

    def wait_phase(self, name: str, phase: str, timeout: float = STEP_TIMEOUT, *,
                   generation: int | None = None) -> Sample:
        def matches(s: Sample) -> bool:
            return s.phase == phase and (generation is None or s.observed_generation == generation)

        return self.wait(name, matches, f"show phase {phase}", timeout)

    def seen(self, name: str, phase: str) -> bool:
        return any(s.phase == phase for s in self.samples(name))

    def stop(self) -> None:
        self._informer.stop()


# ---- the gateway's demand signals ----------------------------------------------------------------


class Gateway:
    """Demand written exactly as the gateway writes it: its own KubernetesRuntime and DemandWriter.

    `request` is a client arriving (or `POST .../request`), `touch` the activity and session count
    the gateway reports while clients use a server (coalesced: at most one write per
    `write_interval`), `stop` is `POST .../shutdown`.
    """

    def __init__(self, kubeconfig: Path, namespaces: Sequence[str], write_interval: float = 1.0) -> None:
        cluster = from_kubeconfig([kubeconfig])
        self.runtime = KubernetesRuntime(KubeClient(cluster), KubeSettings(namespaces=tuple(namespaces),
                                                                            write_interval=write_interval))
        self.runtime.start()

    def ref(self, namespace: str, name: str) -> ServerRef:
        """The server, once the runtime's cache holds it (it acts only on servers it has seen)."""
        ref = ServerRef(namespace, name)

        def cached() -> bool:
            try:
                self.runtime.get(ref)
            except ServerNotFound:
                return False
            return True

        wait_for(cached, f"the gateway's cache to hold {ref}", 30)
        return ref

    def request(self, namespace: str, name: str) -> None:
        self.runtime.request(self.ref(namespace, name))

    def touch(self, namespace: str, name: str, sessions: int) -> None:
        self.runtime.touch(self.ref(namespace, name), sessions)

    def stop(self, namespace: str, name: str) -> None:
        self.runtime.shutdown(self.ref(namespace, name))

    def close(self) -> None:
        self.runtime.close()


# ---- objects -------------------------------------------------------------------------------------


def mcppool(name: str, max_active: int = 5, max_idle: int = 2, idle_timeout: str = "5s") -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "MCPPool", "metadata": {"name": name},
            "spec": {"maxActive": max_active, "maxIdle": max_idle, "defaultIdleTimeout": idle_timeout}}


def mcpserver(name: str, pool: str, idle_timeout: str | None = None, image: str = "mcp/time:1",
              **spec: Any) -> dict[str, Any]:
    full = {"pool": pool, "image": image, **spec}
    if idle_timeout is not None:
        full["idleTimeout"] = idle_timeout
    return {"apiVersion": API_VERSION, "kind": "MCPServer", "metadata": {"name": name}, "spec": full}


# ---- everything together -------------------------------------------------------------------------


class MetaCluster:
    """API server, CRDs, operator, controllers, stand-in kubelet and Metacontroller; see the module docstring.

    `start()` returns once Metacontroller demonstrably syncs both controllers (a probe pool and
    server got a status): for its first seconds it only logs discovery errors, and nothing may be
    timed or waited on before that.
    """

    def __init__(self, workdir: Path, flags: ClientFlags = RECOMMENDED_FLAGS, operator_workers: int = 2) -> None:
        self.dir = workdir
        self.kube = KubeAPI(workdir / "kube")
        self.operator = Operator(workdir, operator_workers)
        self.metacontroller = Metacontroller(self.kube.kubeconfig, workdir, flags)
        self.client: KubeClient | None = None
        self.kubelet: Kubelet | None = None
        self._names = itertools.count(1)
        self.ready_after: float | None = None  # seconds from Metacontroller's start to its first syncs

    def start(self) -> None:
        metacontroller_binary()  # fail first and clearly if it is missing
        self.kube.start()
        self.kube.install_crds()
        self.kube.kubectl("apply", "-f", str(METACONTROLLER_CRDS))
        self.kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          "crd/compositecontrollers.metacontroller.k8s.io")
        self.client = KubeClient(from_kubeconfig([self.kube.kubeconfig]))
        self.operator.start()
        self.kube.apply(controllers(self.operator.url))
        self.kubelet = Kubelet.start(self.kube, self.client)
        started = time.monotonic()
        self.metacontroller.start()
        self._probe()
        self.ready_after = time.monotonic() - started

    def _probe(self, timeout: float = 120) -> None:
        """Wait until both controllers sync: a probe pool and a probe server get their status."""
        ns = self.namespace("probe")
        self.kube.apply([mcppool("probe", max_active=1), mcpserver("probe", "probe")], namespace=ns)
        assert self.client is not None
        client = self.client

        def synced() -> bool:
            if not self.metacontroller.running():
                raise HarnessError(f"Metacontroller exited:\n{self.metacontroller.tail()}")
            pool = client.call("GET", Access("get", MCPPOOLS, ns), MCPPOOLS.path(ns, "probe")).json()
            server = client.call("GET", Access("get", MCPSERVERS, ns), MCPSERVERS.path(ns, "probe")).json()
            return "observedGeneration" in (pool.get("status") or {}) and bool((server.get("status") or {}).get(
                "phase"))

        try:
            wait_for(synced, "Metacontroller's first syncs of a probe MCPPool and MCPServer", timeout)
        except AssertionError as err:
            raise HarnessError(f"{err}\nMetacontroller's log:\n{self.metacontroller.tail()}\n"
                               f"operator's log:\n{_tail(self.operator.log)}") from None

    def namespace(self, prefix: str = "mc") -> str:
        name = f"{prefix}-{next(self._names)}"
        self.kube.kubectl("create", "namespace", name)
        return name

    def sampler(self, namespace: str) -> StatusSampler:
        assert self.client is not None
        return StatusSampler(self.client, namespace)

    def gateway(self, namespaces: Sequence[str], write_interval: float = 1.0) -> Gateway:
        return Gateway(self.kube.kubeconfig, namespaces, write_interval)

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None once it is gone."""
        assert self.client is not None
        resp = self.kube.session().get(self.kube.base_url + resource.path(namespace, name), timeout=10)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()

    def merge_patch(self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        assert self.client is not None
        return self.client.merge_patch(resource, namespace, name, patch)

    def delete(self, resource: Resource, namespace: str, name: str) -> None:
        resp = self.kube.session().delete(self.kube.base_url + resource.path(namespace, name), timeout=10)
        resp.raise_for_status()

    def diagnostics(self) -> str:
        """The tails of every log worth reading when a test fails."""
        return (f"--- Metacontroller ({self.metacontroller.log}) ---\n{self.metacontroller.tail(60)}\n"
                f"--- nmcp operator ({self.operator.log}) ---\n{_tail(self.operator.log, 30)}")

    def stop(self) -> None:
        self.metacontroller.stop()
        if self.kubelet is not None:
            self.kubelet.close()
            self.kubelet = None
        self.operator.stop()
        if self.client is not None:
            self.client.close()
            self.client = None
        self.kube.stop()

    def __enter__(self) -> MetaCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

