"""Figures for the Kubernetes runtime (not a test): run with

    .venv/bin/python -m tests.kube.measure_demand [--seconds 60] [--samples 20]

1. API writes per minute for one Ready server under 50 requests per second: the runtime's
   `touch` and `request` called 50 times a second each (what the bridge does per client message),
   with the default write interval; PATCHes counted by the runtime and, independently, as
   MODIFIED events of a separate watch on the object.
2. Latency from a client's first request on an Idle server to the requested-at annotation being
   on the API server: `POST /api/v1/servers/{name}/request` on a real gateway (gunicorn, gevent,
   NMCP_RUNTIME=kubernetes) until a separate watch sees the annotation, and the runtime's own
   `request()` call (the synchronous PATCH) alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from gateway.kube.client import KubeClient
from gateway.kube.config import from_kubeconfig
from gateway.runtimes.kubernetes import KubernetesRuntime, KubeSettings
from nmcp.model.resources import ANN_REQUESTED_AT
from tests.kube.kube_objects import mcpserver, set_status
from tests.support import ROOT, gunicorn
from tests.support.kubeapi import KubeAPI


class Watcher:
    """An independent watch on the MCPServers of a namespace: when each annotation first appeared."""

    def __init__(self, kube: KubeAPI, ns: str) -> None:
        self.modified: dict[str, int] = {}
        self.requested_seen: dict[str, float] = {}
        session = kube.session()
        url = f"{kube.base_url}/apis/nmcp.nwrx.io/v1/namespaces/{ns}/mcpservers"
        rv = session.get(url, timeout=10).json()["metadata"]["resourceVersion"]
        self._resp = session.get(url, params={"watch": "1", "resourceVersion": rv}, stream=True, timeout=(10, 3600))
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for line in self._resp.iter_lines(chunk_size=None):
                event = json.loads(line)
                obj = event["object"]
                name = obj["metadata"]["name"]
                if event["type"] == "MODIFIED":
                    self.modified[name] = self.modified.get(name, 0) + 1
                if ANN_REQUESTED_AT in (obj["metadata"].get("annotations") or {}):
                    self.requested_seen.setdefault(name, time.perf_counter())
        except (requests.RequestException, ValueError):
            return


def writes_under_load(kube: KubeAPI, seconds: float) -> None:
    ns = kube.create_namespace("load")
    kube.apply(mcpserver("hot"), namespace=ns)
    set_status(kube, ns, "hot", phase="Ready")
    watcher = Watcher(kube, ns)
    runtime = KubernetesRuntime(KubeClient(from_kubeconfig([kube.kubeconfig])), KubeSettings(namespaces=(ns,)))
    runtime.start()
    ref = runtime.resolve("hot")
    start = time.monotonic()
    calls = 0
    while time.monotonic() - start < seconds:
        runtime.request(ref)
        runtime.touch(ref, sessions=4)
        calls += 1
        time.sleep(max(0.0, start + calls / 50 - time.monotonic()))
    elapsed = time.monotonic() - start
    time.sleep(1)
    patches = runtime.writer.stats.per_server.get(ref, 0)
    print(f"writes under load: {calls} requests in {elapsed:.1f}s ({calls / elapsed:.1f}/s); "
          f"{patches} PATCHes by the runtime = {patches * 60 / elapsed:.1f}/min; "
          f"{watcher.modified.get('hot', 0)} MODIFIED events seen by a separate watch "
          f"(write interval {runtime.settings.write_interval:g}s)")
    runtime.close()


def request_latency(kube: KubeAPI, samples: int, tmp: Path) -> None:
    ns = kube.create_namespace("latency")
    names = [f"idle-{i}" for i in range(samples)]
    kube.apply([mcpserver(name) for name in names], namespace=ns)
    watcher = Watcher(kube, ns)
    env = {"NMCP_RUNTIME": "kubernetes", "NMCP_KUBECONFIG": str(kube.kubeconfig), "NMCP_NAMESPACES": ns}
    gateway_ms: list[float] = []
    with gunicorn("nmcp.serve:create_app()", config=str(ROOT / "gateway" / "gunicorn.conf.py"), env=env) as url:
        http = requests.Session()
        http.trust_env = False
        for name in names:
            start = time.perf_counter()
            resp = http.post(f"{url}/api/v1/servers/{name}/request", timeout=30)
            resp.raise_for_status()
            deadline = time.monotonic() + 30
            while name not in watcher.requested_seen and time.monotonic() < deadline:
                time.sleep(0.001)
            gateway_ms.append((watcher.requested_seen[name] - start) * 1000)
    runtime = KubernetesRuntime(KubeClient(from_kubeconfig([kube.kubeconfig])), KubeSettings(namespaces=(ns,)))
    runtime.start()
    more = [f"direct-{i}" for i in range(samples)]
    kube.apply([mcpserver(name) for name in more], namespace=ns)
    runtime.store.wait_for(lambda: len(runtime.list_servers()) == 2 * samples, 30)
    direct_ms: list[float] = []
    for name in more:
        start = time.perf_counter()
        runtime.request(runtime.resolve(name, ns))
        direct_ms.append((time.perf_counter() - start) * 1000)
    runtime.close()

    def summary(values: list[float]) -> str:
        ordered = sorted(values)
        p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
        median = statistics.median(values)
        return f"median {median:.1f} ms, p90 {p90:.1f} ms, max {max(values):.1f} ms (n={len(values)})"

    print("first request on an Idle server -> requested-at seen by a watch, through the gateway: "
          + summary(gateway_ms))
    print(f"runtime.request() alone (the synchronous merge PATCH): {summary(direct_ms)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kube = KubeAPI(Path(tmp) / "kube")
        kube.start()
        try:
            kube.install_crds()
            writes_under_load(kube, args.seconds)
            request_latency(kube, args.samples, Path(tmp))
        finally:
            kube.stop()


if __name__ == "__main__":
    main()
