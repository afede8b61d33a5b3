"""Benchmark: fifty servers requested within one second, under the real Metacontroller (not a test).

The scenario of tests/metacontroller/test_burst.py (tests/metacontroller/burst.py), run twice side
by side, each on a fresh API server: once with Metacontroller's default client settings (QPS 5,
burst 10, 5 workers) and once with the flags the chart recommends (`RECOMMENDED_FLAGS`). For each
it reports what a user of the pool sees: Pods created (one per server is right), the most alive
at once (never above maxActive), servers whose status was seen Ready, and how long each server
waited from its request to its first Ready status (median and worst over the servers seen Ready,
from a watch of the MCPServers) and to its first Pod turning Ready (from the stand-in kubelet: the
gap between the two is status lag). The queue drains five at a time, each server running for its
idle timeout.

    .venv/bin/python bench/metacontroller_burst.py [--servers 50] [--max-active 5] [--idle-timeout 3s]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.metacontroller.burst import IDLE_TIMEOUT, MAX_ACTIVE, SERVERS, run_burst  # noqa: E402
from tests.metacontroller.harness import DEFAULT_FLAGS, RECOMMENDED_FLAGS, ClientFlags, MetaCluster  # noqa: E402

RUNS: list[tuple[str, ClientFlags]] = [("defaults", DEFAULT_FLAGS), ("recommended", RECOMMENDED_FLAGS)]
ROWS = [
    ("Metacontroller flags", "flags"),
    ("Pods created", "pods_created"),
    ("most Pods alive at once", "max_alive"),
    ("servers seen Ready", "seen_ready"),
    ("servers started more than once", "servers_with_more_than_one_pod"),
    ("request to Ready status, median (s; servers seen Ready)", "median_ready_s"),
    ("request to Ready status, worst (s; servers seen Ready)", "worst_ready_s"),
    ("request to its first Pod Ready, median (s)", "median_pod_ready_s"),
    ("request to its first Pod Ready, worst (s)", "worst_pod_ready_s"),
    ("first to last request (s)", "request_spread_s"),
    ("queue drained", "settled"),
    ("first request to drained (s)", "duration_s"),
]


def run(name: str, flags: ClientFlags, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"nmcp-mc-bench-{name}-"))
    try:
        with MetaCluster(workdir, flags) as cluster:
            result = run_burst(cluster, servers=args.servers, max_active=args.max_active,
                               idle_timeout=args.idle_timeout, settle_within=args.settle_within)
        summary = {"flags": flags.describe(), **result.summary()}
        print(f"{name}: {json.dumps(summary)}", flush=True)
        return summary
    finally:
        target = logs / name
        target.mkdir(parents=True, exist_ok=True)
        for log in ("metacontroller.log", "operator.log"):
            if (workdir / log).exists():
                shutil.copy(workdir / log, target / log)
        shutil.rmtree(workdir, ignore_errors=True)


def render(results: dict[str, dict[str, Any]], args: argparse.Namespace, load: tuple[str, str]) -> str:
    names = list(results)
    lines = [f"Metacontroller burst: {args.servers} servers requested at once, pool maxActive {args.max_active}, "
             f"idle timeout {args.idle_timeout} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
             f"load average {load[0]} before, {load[1]} after)", "",
             "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key in ROWS:
        cells = []
        for name in names:
            value = results[name].get(key)
            cells.append(", ".join(value) or "none" if isinstance(value, list) else str(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=SERVERS)
    parser.add_argument("--max-active", type=int, default=MAX_ACTIVE)
    parser.add_argument("--idle-timeout", default=IDLE_TIMEOUT)
    parser.add_argument("--settle-within", type=float, default=600, help="seconds each run may take to drain")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = args.out / "logs" / f"metacontroller-{stamp}"
    before = _load()
    started = time.monotonic()
    results = {name: run(name, flags, args, logs) for name, flags in RUNS}
    table = render(results, args, (before, _load()))
    print()
    print(table)
    print(f"({time.monotonic() - started:.0f} s in all; logs in {logs})")
    args.out.mkdir(parents=True, exist_ok=True)
    body = {"when": stamp, "servers": args.servers, "max_active": args.max_active,
            "idle_timeout": args.idle_timeout, "results": results}
    for stem in (f"metacontroller-{stamp}", "metacontroller-latest"):
        (args.out / f"{stem}.json").write_text(json.dumps(body, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
