"""Figures of warm spares (not a test): 2026-07-28 requests to an isolated server under `nmcp up`.

Every 2026-07-28 request to a server with `isolation: session` is a session of one request on an
instance of its own. Two copies of one stdio server run side by side in one `nmcp up`, each in a
pool of its own: `cold` (maxIdle 0: no spares, each request starts an instance) and `warm`
(maxIdle 2: each request takes a spare started for no one, and asks for the next). Requests
alternate between them, one at a time with `--gap` seconds between rounds (time for the next
spare to start), so both see the same machine at the same moment. Each request is a `tools/call`
of `pid`; a `warm` answer from a pid that served before would be a leak, and is counted.

    .venv/bin/python bench/spares_bench.py [--rounds 20] [--gap 1.5]

Prints a markdown table and writes bench/results/spares.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import VENV_BIN  # noqa: E402
from tests.support.modern import modern, modern_headers  # noqa: E402
from tests.up.running import nmcp_up  # noqa: E402

SERVER = ROOT / "tests" / "gateway" / "stdio_server.py"
POOLS = {"cold": 0, "warm": 2}  # server (and pool) name -> maxIdle


def manifests() -> str:
    docs = []
    for name, max_idle in POOLS.items():
        docs.append(f"""apiVersion: nmcp.nwrx.io/v1
kind: MCPPool
metadata: {{name: {name}}}
spec: {{maxActive: 10, maxIdle: {max_idle}, defaultIdleTimeout: 10m}}
---
apiVersion: nmcp.nwrx.io/v1
kind: MCPServer
metadata: {{name: {name}}}
spec:
  pool: {name}
  command: [{VENV_BIN / "python"}, {SERVER}]
  isolation: session
""")
    return "---\n".join(docs)


def call_pid(url: str) -> tuple[float, int]:
    """One stateless `tools/call pid`: seconds to the answer, and the pid that answered."""
    body = modern("tools/call", {"name": "pid", "arguments": {}})
    started = time.perf_counter()
    response = requests.post(url, json=body, timeout=120, headers={
        "Accept": "application/json, text/event-stream", **modern_headers("tools/call", "pid")})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, int(response.json()["result"]["content"][0]["text"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between rounds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        manifests_dir = Path(tmp) / "manifests"
        manifests_dir.mkdir()
        (manifests_dir / "servers.yaml").write_text(manifests())
        with nmcp_up(manifests_dir, log_path=Path(tmp) / "up.log") as up:
            latencies: dict[str, list[float]] = {name: [] for name in POOLS}
            pids: dict[str, list[int]] = {name: [] for name in POOLS}
            for name in POOLS:
                call_pid(up.mcp_url(name))  # the first request of each is cold for both (no spare asked for yet)
            time.sleep(args.gap)
            for _ in range(args.rounds):
                for name in POOLS:
                    elapsed, pid = call_pid(up.mcp_url(name))
                    latencies[name].append(elapsed)
                    pids[name].append(pid)
                time.sleep(args.gap)

    rows = {}
    for name, values in latencies.items():
        ordered = sorted(values)
        rows[name] = {"maxIdle": POOLS[name], "median_ms": statistics.median(values) * 1000,
                      "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
                      "reused_pids": len(pids[name]) - len(set(pids[name]))}
    ratio = rows["cold"]["median_ms"] / rows["warm"]["median_ms"]
    print(f"2026-07-28 tools/call on an isolated stdio server, {args.rounds} rounds, {args.gap}s apart\n")
    print("| pool | maxIdle | median ms | p90 ms | instances reused |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['maxIdle']} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['reused_pids']} |")
    print(f"\nmedian cold / warm: {ratio:.1f}x")
    out = ROOT / "bench" / "results" / "spares.json"
    out.write_text(json.dumps({"rounds": args.rounds, "gap": args.gap, "rows": rows, "ratio": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()
