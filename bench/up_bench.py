"""Figures of `nmcp up` (not a test): start-up time, memory, and the cold-start overhead of the loop.

1. Start-up: from spawning `nmcp up examples/local` to `/readyz` answering 200 with every
   server listed, median of `--starts` runs.
2. Memory: RSS of the `nmcp up` process tree (gunicorn master, the gevent worker, server
   processes) with the examples idle, and with both example servers running.
3. Cold start, side by side in one run, interleaved: for each of the example servers,
   (a) the server's own spawn + initialize + first tool call, by the official SDK client over
   stdio (`Client(StdioServerParameters(...))`), and
   (b) the same first tool call by the same client through `nmcp up` on an Idle server
   (Streamable HTTP; demand -> reconcile pass -> process -> initialize -> call), and
   (c) a new client session through `nmcp up` on the already Ready server (the gateway's own
   per-session cost), so that (b) - (a) is what scale-from-zero adds and (c) what any session costs.
   Between rounds the server is shut down through the API and waited for until Idle.

    .venv/bin/python bench/up_bench.py [--starts 5] [--rounds 8]

Run from the repository root (the `everything` example resolves through ./node_modules).
Prints a markdown table and writes bench/results/up.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import requests
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmcp.embedded.manifests import load  # noqa: E402
from tests.support import VENV_BIN, free_port  # noqa: E402

EXAMPLES = ROOT / "examples" / "local"
CALLS = {  # the first tool call made on each example server
    "time": ("get_current_time", {"timezone": "UTC"}),
    "everything": ("echo", {"message": "cold start"}),
}


def _wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise TimeoutError(what)


def _tree(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [pid], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` and every process below it, in MiB."""
    total = 0
    for proc in _tree(pid):
        try:
            status = Path(f"/proc/{proc}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


@contextmanager
def nmcp_up() -> Iterator[tuple[subprocess.Popen[bytes], str, float]]:
    """`nmcp up examples/local`; yields the process, its base URL and the seconds it took to be ready."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    names = {m.name for m in load([EXAMPLES]).of_kind("MCPServer")}
    started = time.perf_counter()
    proc = subprocess.Popen([str(VENV_BIN / "nmcp"), "up", str(EXAMPLES), "--bind", f"127.0.0.1:{port}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        try:
            if requests.get(f"{base}/readyz", timeout=1).status_code != 200:
                return False
            listed = requests.get(f"{base}/api/v1/servers", timeout=1).json()["servers"]
            return {s["name"] for s in listed} == names
        except requests.RequestException:
            return False

    try:
        _wait(ready, "nmcp up to be ready")
        yield proc, base, time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


async def _first_call(server: StdioServerParameters | str, name: str) -> float:
    tool, arguments = CALLS[name]
    started = time.perf_counter()
    with anyio.fail_after(60):
        async with Client(server) as client:
            result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    return time.perf_counter() - started


def direct(name: str, spec: dict[str, Any]) -> float:
    """The server's own cost: spawn, initialize, first call, over stdio."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    params = StdioServerParameters(command=spec["command"][0], args=[*spec["command"][1:], *spec.get("args", [])],
                                   env=env, cwd=str(ROOT))
    return anyio.run(_first_call, params, name)


def through_up(base: str, name: str) -> float:
    return anyio.run(_first_call, f"{base}/api/v1/servers/{name}/mcp", name)


def phase(base: str, name: str) -> str:
    return requests.get(f"{base}/api/v1/servers/{name}", timeout=5).json()["phase"]


def stop(base: str, name: str) -> None:
    requests.post(f"{base}/api/v1/servers/{name}/shutdown", timeout=5).raise_for_status()
    _wait(lambda: phase(base, name) == "Idle", f"{name} to stop")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_ms": round(statistics.median(ordered) * 1000, 1),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000, 1),
            "min_ms": round(ordered[0] * 1000, 1), "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5, help="nmcp up start-ups to time")
    parser.add_argument("--rounds", type=int, default=8, help="cold starts per server and way")
    options = parser.parse_args()
    specs = {m.name: m.obj["spec"] for m in load([EXAMPLES]).of_kind("MCPServer")}

    startup: list[float] = []
    for _ in range(options.starts):
        with nmcp_up() as (_, _, seconds):
            startup.append(seconds)

    cold: dict[str, dict[str, list[float]]] = {n: {"direct": [], "up_cold": [], "up_warm": []} for n in specs}
    with nmcp_up() as (proc, base, _):
        time.sleep(1)  # let the worker settle before reading its memory
        memory = {"idle_mib": round(rss_mib(proc.pid), 1)}
        for name, spec in specs.items():  # warm-up: imports, caches, npx's first resolve
            direct(name, spec)
            through_up(base, name)
            stop(base, name)
        for _ in range(options.rounds):
            for name, spec in specs.items():
                cold[name]["direct"].append(direct(name, spec))
                cold[name]["up_cold"].append(through_up(base, name))
                cold[name]["up_warm"].append(through_up(base, name))
            if len(cold[next(iter(specs))]["direct"]) == options.rounds:
                memory["running_mib"] = round(rss_mib(proc.pid), 1)  # both servers still up
            for name in specs:
                stop(base, name)

    results = {
        "startup": summary(startup),
        "memory": memory,
        "cold_start": {name: {way: summary(v) for way, v in ways.items()} for name, ways in cold.items()},
    }
    out = ROOT / "bench" / "results" / "up.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")

    print(f"nmcp up examples/local -> ready: median {results['startup']['median_ms']} ms "
          f"(min {results['startup']['min_ms']}, n={options.starts})")
    print(f"RSS of the nmcp up process tree: {memory['idle_mib']} MiB idle, "
          f"{memory['running_mib']} MiB with both example servers running\n")
    print("| server | (a) own spawn+initialize+call, stdio | (b) first call via nmcp up, Idle server "
          "| (b)-(a) scale-from-zero overhead | (c) new session via nmcp up, Ready server |")
    print("|---|---|---|---|---|")
    for name, ways in results["cold_start"].items():
        a, b, c = ways["direct"]["median_ms"], ways["up_cold"]["median_ms"], ways["up_warm"]["median_ms"]
        print(f"| {name} | {a} ms | {b} ms | {round(b - a, 1)} ms | {c} ms |")
    print(f"\nmedians of {options.rounds} interleaved rounds; p90 and min in {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
