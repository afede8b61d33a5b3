"""Benchmark of the Metacontroller hooks as `nmcp operator` serves them (not a test).

Starts `nmcp operator` (gunicorn, gthread workers) on a loopback port, then posts pool sync
requests with 10, 100 and 500 MCPServers, and a server sync, from a few client threads with
keep-alive sessions (as Metacontroller's workers do). Prints requests per second and p50/p99
latency per body as the client sees it; the server's CPU time per request (from the hooks'
Server-Timing header), which does not depend on what else loads the machine; and the time the
pure function alone takes in this process.

Bodies are shaped like Metacontroller's (hook v2 keys, full objects with managedFields); a
fifth of the servers run, a tenth wait for a slot, the rest are idle.

    .venv/bin/python bench/hooks_bench.py [--duration 10] [--concurrency 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hooks.sync import sync_pool, sync_server  # noqa: E402
from tests.hooks.builders import pod, pool, pool_request, server, server_request  # noqa: E402
from tests.support import VENV_BIN, free_port, wait_http  # noqa: E402

MANAGED_FIELDS = [  # what kubectl apply and Metacontroller leave on a real object
    {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "nmcp.nwrx.io/v1",
     "time": "2026-11-24T09:00:00Z", "fieldsType": "FieldsV1",
     "fieldsV1": {"f:metadata": {"f:annotations": {
                     ".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                  "f:spec": {".": {}, "f:image": {}, "f:idleTimeout": {}, "f:pool": {},
                             "f:transport": {"f:type": {}}}}},
    {"manager": "metacontroller", "operation": "Update", "apiVersion": "nmcp.nwrx.io/v1", "subresource": "status",
     "time": "2026-11-24T09:00:05Z", "fieldsType": "FieldsV1",
     "fieldsV1": {"f:status": {".": {}, "f:conditions": {}, "f:observedGeneration": {}, "f:phase": {}}}},
]


def _server(i: int, n: int, now: datetime) -> dict[str, Any]:
    name = f"server-{i:04d}"
    if i < n // 5:  # running, recently active
        obj = server(name, requested=-300, active=-(i % 50), sessions=i % 3, now=now)
    elif i < n // 5 + n // 10:  # waiting for a slot
        obj = server(name, requested=-(i % 60), now=now)
    else:  # idle
        obj = server(name, requested=-3600, active=-3500, now=now)
    obj["metadata"]["managedFields"] = MANAGED_FIELDS
    obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(
        {"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPServer", "metadata": {"name": name, "namespace": "team"},
         "spec": obj["spec"]})
    obj["status"] = {"phase": "Ready" if i < n // 5 else "Idle", "observedGeneration": 1, "conditions": []}
    return obj


def pool_body(n: int, now: datetime) -> dict[str, Any]:
    servers = [_server(i, n, now) for i in range(n)]
    pods = [pod(f"server-{i:04d}", created=-290, ready=-280, now=now) for i in range(n // 5)]
    return pool_request(pool(max_active=max(5, n // 5), max_idle=n // 10, idle="10m", now=now), servers, pods)


def server_body(n: int, now: datetime) -> dict[str, Any]:
    pods = [pod(f"server-{i:04d}", created=-290, ready=-280, now=now) for i in range(n // 5)]
    return server_request(_server(0, n, now), pool(max_active=max(5, n // 5), now=now), pods)


def _cpu_ms(header: str) -> float:
    """The `cpu` entry of the hooks' Server-Timing header."""
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name == "cpu":
            return float(dur)
    raise ValueError(f"no cpu timing in {header!r}")


def load(url: str, body: bytes, duration: float, concurrency: int) -> tuple[list[float], list[float]]:
    """Post `body` from `concurrency` keep-alive sessions for `duration` seconds.

    Returns the client-side latencies and the server's CPU time per request, in ms.
    """
    latencies: list[float] = []
    cpu: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def worker() -> None:
        mine, mine_cpu = [], []
        with requests.Session() as session:
            session.trust_env = False
            while time.monotonic() < stop:
                start = time.perf_counter()
                response = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
                mine.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
                mine_cpu.append(_cpu_ms(response.headers["Server-Timing"]))
        with lock:
            latencies.extend(mine)
            cpu.extend(mine_cpu)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, cpu


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def pure_ms(func: Any, request: dict[str, Any], now: datetime, rounds: int = 50) -> float:
    """Median time of the pure hook function alone, in this process."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func(request, now)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per body")
    parser.add_argument("--concurrency", type=int, default=2, help="client threads (keep-alive sessions)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of nmcp operator")
    parser.add_argument("--sizes", default="10,100,500", help="pool sizes (servers)")
    args = parser.parse_args()

    port = free_port()
    env = {**os.environ, "NMCP_OPERATOR_ACCESS_LOG": "0", "NMCP_OPERATOR_LOG_LEVEL": "warning"}
    cmd = [str(VENV_BIN / "nmcp"), "operator", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", 30, proc)
        print(f"# {' '.join(cmd[1:])}; {args.concurrency} client threads, {args.duration:g}s per body, "
              f"{os.cpu_count()} CPUs shared by client and server; load average {_load()}")
        print(f"{'hook':<12} {'servers':>7} {'body KB':>8} {'requests':>8} {'req/s':>6} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'cpu p50':>7} {'cpu p99':>7} {'pure ms':>7}")
        now = datetime.now(UTC)
        cases = [("pool/sync", n, pool_body(n, now), sync_pool) for n in map(int, args.sizes.split(","))]
        biggest = max(map(int, args.sizes.split(",")))
        cases.append(("server/sync", biggest, server_body(biggest, now), sync_server))
        for path, n, request, func in cases:
            body = json.dumps(request).encode()
            load(f"{base}/{path}", body, min(1.0, args.duration), args.concurrency)  # warm up
            latencies, cpu = load(f"{base}/{path}", body, args.duration, args.concurrency)
            print(f"{path:<12} {n:>7} {len(body) / 1024:>8.0f} {len(latencies):>8} "
                  f"{len(latencies) / args.duration:>6.0f} {_pct(latencies, 0.5):>7.1f} {_pct(latencies, 0.99):>7.1f} "
                  f"{_pct(cpu, 0.5):>7.1f} {_pct(cpu, 0.99):>7.1f} {pure_ms(func, request, now):>7.2f}")
        print(f"# load average after: {_load()}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
