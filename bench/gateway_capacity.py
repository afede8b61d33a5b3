"""Capacity of the gateway (not a test): idle client streams held at once, and what they cost.

Runs `nmcp up` with its default settings on a directory of servers (`mcp-server-time`, one pool
that admits them all) and opens idle MCP streams in steps (1,000, 5,000 and 10,000 by default),
half of them legacy HTTP+SSE streams (`GET .../sse`), half Streamable HTTP sessions holding their
GET stream (`POST initialize`, then `GET .../mcp`). A server takes NMCP_MAX_SESSIONS (1,000 by
default) sessions, so the streams are spread over as many servers as that needs; one more server
holds the session the MCP calls below are made on.

At each step, with every stream still open and idle:

* the RSS of the gateway's worker (the process that holds the connections) and of the whole
  gateway (gunicorn master, worker, watchdog; not the server processes), and the worker's open
  file descriptors;
* `/healthz` latency over a new connection per request, as a kubelet probes (p50, p99, max);
* the latency of an MCP `tools/call` on an open Streamable HTTP session (p50, p99);
* the worker's CPU while the streams only get their keep-alive comments (over one keep-alive
  interval);
* how long opening one stream took, on average over the step (sequentially, from one client).

    .venv/bin/python bench/gateway_capacity.py [--levels 1000,5000,10000] [--healthz 200] [--calls 50]

Prints a markdown table and writes bench/results/gateway-capacity.json. The process raises its
own open-file limit to fit the streams (it fails with a message when the hard limit is too low).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config import Config  # noqa: E402
from tests.support import VENV_BIN, free_port  # noqa: E402

KEEPALIVE = Config().keepalive  # the default interval of SSE keep-alive comments
MAX_SESSIONS = Config().max_sessions
VERSION = "2025-06-18"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "capacity-bench", "version": "0"}}}


def _wait(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def manifests(directory: Path, servers: int) -> list[str]:
    """`servers` stream servers and one for the MCP calls, in one pool that runs them all."""
    names = [f"stream-{index}" for index in range(servers)] + ["calls"]
    docs: list[dict[str, Any]] = [{"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPPool", "metadata": {"name": "default"},
                                   "spec": {"maxActive": len(names), "maxIdle": len(names)}}]
    docs += [{"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPServer", "metadata": {"name": name},
              "spec": {"command": [str(VENV_BIN / "mcp-server-time")], "args": ["--local-timezone", "UTC"]}}
             for name in names]
    (directory / "servers.yaml").write_text(yaml.safe_dump_all(docs))
    return names


@contextmanager
def nmcp_up(directory: Path, log: Path) -> Iterator[tuple[str, int]]:
    """`nmcp up DIR` with default settings; yields its base URL and the gunicorn master's pid."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NMCP_")}  # the defaults, whatever the shell has
    with log.open("wb") as out:
        proc = subprocess.Popen([str(VENV_BIN / "nmcp"), "up", str(directory), "--bind", f"127.0.0.1:{port}"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _wait(lambda: _ok(f"{base}/readyz"), "nmcp up to be ready")
            yield base, proc.pid
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Streams:
    """Idle client streams held open on raw sockets (never read after their first event)."""

    def __init__(self, base: str) -> None:
        self.host, port = base.removeprefix("http://").split(":")
        self.port = int(port)
        self.http = requests.Session()
        self.sockets: list[socket.socket] = []

    def _get(self, path: str, headers: dict[str, str], until: bytes) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=60)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{lines}\r\n".encode())
        received = b""
        while until not in received:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"GET {path} closed: {received[:300]!r}")
            received += chunk
        if not received.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"GET {path}: {received[:300]!r}")
        self.sockets.append(sock)

    def open_sse(self, server: str) -> None:
        self._get(f"/api/v1/servers/{server}/sse", {"Accept": "text/event-stream"}, b"event: endpoint")

    def open_streamable(self, server: str) -> None:
        answer = self.http.post(f"http://{self.host}:{self.port}/api/v1/servers/{server}/mcp", json=INIT, timeout=120,
                                headers={"Accept": "application/json, text/event-stream"})
        answer.raise_for_status()
        session = answer.headers["Mcp-Session-Id"]
        self._get(f"/api/v1/servers/{server}/mcp", {"Accept": "text/event-stream", "Mcp-Session-Id": session,
                                                    "MCP-Protocol-Version": VERSION}, b": keepalive")

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.http.close()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}


def healthz_latency(base: str, count: int) -> dict[str, float]:
    """A new connection per probe, as a kubelet makes."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        assert requests.get(f"{base}/healthz", timeout=30, headers={"Connection": "close"}).status_code == 200
        times.append(time.perf_counter() - started)
    return percentiles(times)


class Caller:
    """One Streamable HTTP session, opened before the streams, for timed `tools/call`s."""

    def __init__(self, base: str) -> None:
        self.url = f"{base}/api/v1/servers/calls/mcp"
        self.http = requests.Session()
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        answer = self.http.post(self.url, json=INIT, headers=self.headers, timeout=120)
        answer.raise_for_status()
        self.headers |= {"Mcp-Session-Id": answer.headers["Mcp-Session-Id"], "MCP-Protocol-Version": VERSION}
        self.http.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=self.headers,
                       timeout=30)
        self.seq = 1

    def latency(self, count: int) -> dict[str, float]:
        times = []
        for _ in range(count):
            self.seq += 1
            call = {"jsonrpc": "2.0", "id": self.seq, "method": "tools/call",
                    "params": {"name": "get_current_time", "arguments": {"timezone": "UTC"}}}
            started = time.perf_counter()
            answer = self.http.post(self.url, json=call, headers=self.headers, timeout=60)
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200 and "result" in answer.json(), answer.text[:300]
        return percentiles(times)


def raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"the open-file hard limit is {hard}; this benchmark needs {needed} (ulimit -Hn)")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def measure(base: str, master: int, caller: Caller, streams: int, options: argparse.Namespace) -> dict[str, Any]:
    worker = next(pid for pid in children(master) if "gunicorn" in cmdline(pid))
    gateway = [master, worker, *[p for p in children(worker) if "reaper" in cmdline(p)]]  # not the servers
    before = cpu_seconds(worker)
    time.sleep(KEEPALIVE)  # one round of keep-alive comments on every stream
    idle_cpu = (cpu_seconds(worker) - before) / KEEPALIVE
    return {
        "streams": streams,
        "worker_rss_mib": round(status_kib(worker, "VmRSS") / 1024, 1),
        "gateway_rss_mib": round(sum(status_kib(p, "VmRSS") for p in gateway) / 1024, 1),
        "worker_fds": len(os.listdir(f"/proc/{worker}/fd")),
        "idle_cpu_percent": round(idle_cpu * 100, 1),
        "healthz": healthz_latency(base, options.healthz),
        "tools_call": caller.latency(options.calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="1000,5000,10000", help="stream counts to measure at, ascending")
    parser.add_argument("--healthz", type=int, default=200, help="/healthz requests per level")
    parser.add_argument("--calls", type=int, default=50, help="tools/call requests per level")
    options = parser.parse_args()
    levels = [int(n) for n in options.levels.split(",")]
    raise_open_files(levels[-1] + 1024)
    servers = math.ceil(levels[-1] / MAX_SESSIONS)
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        names = manifests(Path(tmp), servers)
        with nmcp_up(Path(tmp), results_dir / "gateway-capacity.log") as (base, master):
            caller = Caller(base)
            streams = Streams(base)
            baseline = measure(base, master, caller, 0, options)
            rows.append(baseline)
            print(f"0 streams: worker {baseline['worker_rss_mib']} MiB", flush=True)
            opened = 0
            try:
                for level in levels:
                    started = time.perf_counter()
                    while opened < level:
                        server = names[opened // MAX_SESSIONS]  # fill one server after the other
                        (streams.open_sse if opened % 2 == 0 else streams.open_streamable)(server)
                        opened += 1
                    step = opened - rows[-1]["streams"]
                    took = time.perf_counter() - started
                    row = measure(base, master, caller, opened, options)
                    row["open_ms_per_stream"] = round(took / step * 1000, 2)  # this step's new streams
                    rows.append(row)
                    print(f"{opened} streams: worker {row['worker_rss_mib']} MiB, healthz p99 "
                          f"{row['healthz']['p99_ms']} ms", flush=True)
            finally:
                streams.close()
    results = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "servers": servers,
               "settings": {"worker_connections": Config().worker_connections, "max_sessions": MAX_SESSIONS,
                            "keepalive": KEEPALIVE},
               "load_before": [round(x, 2) for x in load_before],
               "load_after": [round(x, 2) for x in os.getloadavg()], "levels": rows}
    (results_dir / "gateway-capacity.json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(f"nmcp up, default settings; {servers} servers x {MAX_SESSIONS} sessions; half SSE, half Streamable HTTP")
    print("| idle streams | worker RSS MiB | gateway RSS MiB | worker fds | idle CPU % | /healthz p50 / p99 / max ms "
          "| tools/call p50 / p99 ms | ms to open one |")
    print("|---:|---:|---:|---:|---:|---|---|---:|")
    for row in rows:
        h, c = row["healthz"], row["tools_call"]
        print(f"| {row['streams']} | {row['worker_rss_mib']} | {row['gateway_rss_mib']} | {row['worker_fds']} "
              f"| {row['idle_cpu_percent']} | {h['p50_ms']} / {h['p99_ms']} / {h['max_ms']} "
              f"| {c['p50_ms']} / {c['p99_ms']} | {row.get('open_ms_per_stream', '')} |")
    print(f"\nload average before {results['load_before']}, after {results['load_after']}")


if __name__ == "__main__":
    main()
