"""Figures of `nmcp up` (not a test): start-up time, memory, and the cold-start overhead of the loop.

1. Start-up: from spawning `nmcp up examples/local` to `/readyz` answering 200 with every
   server listed, median of `--starts` runs.
2. Memory: RSS of the `nmcp up` process tree (gunicorn master, the gevent worker, server
   processes) with the examples idle, and with both example servers running.
3. Cold start, side by side in one run, interleaved, for each example server, measured twice:
   with a minimal raw JSON-RPC client (initialize, initialized, one tools/call: what the protocol
   itself costs) and with the official SDK client (`mcp.Client`: what a user sees; it also
   negotiates the protocol revision, which costs it more against a bare 2025 stdio server than
   against the gateway, which answers that itself):
   (a) the server's own spawn + initialize + first tool call over stdio;
   (b) the same first call through `nmcp up` on an Idle server (Streamable HTTP; demand ->
       reconcile pass -> process -> gateway initializes it -> call);
   (c) the same through `nmcp up` on the already Ready server (a new session's own cost).
   (b) - (a) is what scale-from-zero through nmcp adds. Between rounds the server is shut down
   through the API and waited for until Idle.

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
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import requests
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmcp.model.manifests import load  # noqa: E402
from tests.support import VENV_BIN, free_port  # noqa: E402

EXAMPLES = ROOT / "examples" / "local"
CALLS = {  # the first tool call made on each example server
    "time": ("get_current_time", {"timezone": "UTC"}),
    "everything": ("echo", {"message": "cold start"}),
}


def _wait(check: Callable[[], bool], what: str | Callable[[], str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise TimeoutError(what() if callable(what) else what)


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
def nmcp_up(log_path: Path | None = None) -> Iterator[tuple[subprocess.Popen[bytes], str, float]]:
    """`nmcp up examples/local`; yields the process, its base URL and the seconds it took to be ready."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    names = {m.name for m in load([EXAMPLES]).of_kind("MCPServer")}
    log = log_path.open("wb") if log_path else subprocess.DEVNULL
    started = time.perf_counter()
    proc = subprocess.Popen([str(VENV_BIN / "nmcp"), "up", str(EXAMPLES), "--bind", f"127.0.0.1:{port}",
                             "--log-format", "json"], cwd=ROOT, stdout=log, stderr=log)

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
        if log_path:
            log.close()  # type: ignore[union-attr]


def demand_to_ready(log_path: Path) -> list[float]:
    """From nmcp up's JSON log: seconds from each `request` to the server's next Ready phase,
    i.e. the reconcile loop's passes plus spawning the process (a stdio Pod is ready once it runs)."""
    requested: dict[str, float] = {}
    out: list[float] = []
    for line in log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        when = datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
        if record.get("event") == "request":
            requested.setdefault(record["server"], when)
        elif record.get("event") == "phase" and record.get("to") == "Ready" and record["server"] in requested:
            out.append(when - requested.pop(record["server"]))
    return out


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "up-bench", "version": "1"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def _tool_call(name: str) -> dict[str, Any]:
    tool, arguments = CALLS[name]
    return {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def raw_direct(name: str, spec: dict[str, Any]) -> float:
    """Spawn the server, initialize it and make one tool call over its stdio, by hand."""
    started = time.perf_counter()
    proc = subprocess.Popen([*spec["command"], *spec.get("args", [])], cwd=ROOT, env=_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for message in (INITIALIZE, INITIALIZED, _tool_call(name)):
            proc.stdin.write(json.dumps(message).encode() + b"\n")
            proc.stdin.flush()
            while "id" in message:
                answer = json.loads(proc.stdout.readline())
                if answer.get("id") == message["id"]:
                    assert "result" in answer, answer
                    break
        return time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait()


def _rpc(session: requests.Session, url: str, message: dict[str, Any]) -> requests.Response:
    response = session.post(url, json=message, timeout=60)
    response.raise_for_status()
    if "id" in message:
        text = response.text
        if response.headers.get("Content-Type", "").startswith("text/event-stream"):
            text = next(line[5:] for line in text.splitlines()
                        if line.startswith("data:") and f'"id":{message["id"]}' in line.replace(" ", ""))
        assert "result" in json.loads(text), text
    return response


def raw_through_up(base: str, name: str) -> float:
    """The same three messages through nmcp up's Streamable HTTP endpoint, by hand."""
    url = f"{base}/api/v1/servers/{name}/mcp"
    started = time.perf_counter()
    with requests.Session() as session:
        session.headers["Accept"] = "application/json, text/event-stream"
        first = _rpc(session, url, INITIALIZE)
        session.headers["Mcp-Session-Id"] = first.headers["Mcp-Session-Id"]
        session.headers["MCP-Protocol-Version"] = INITIALIZE["params"]["protocolVersion"]
        _rpc(session, url, INITIALIZED)
        _rpc(session, url, _tool_call(name))
        elapsed = time.perf_counter() - started
        session.delete(url, timeout=10)
    return elapsed


async def _first_call(server: StdioServerParameters | str, name: str) -> float:
    tool, arguments = CALLS[name]
    started = time.perf_counter()
    with anyio.fail_after(60):
        async with Client(server) as client:
            result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    return time.perf_counter() - started


def sdk_direct(name: str, spec: dict[str, Any]) -> float:
    """The server's cost as the SDK client sees it: spawn, negotiate, initialize, first call, over stdio."""
    params = StdioServerParameters(command=spec["command"][0], args=[*spec["command"][1:], *spec.get("args", [])],
                                   env=_env(), cwd=str(ROOT))
    return anyio.run(_first_call, params, name)


def sdk_through_up(base: str, name: str) -> float:
    return anyio.run(_first_call, f"{base}/api/v1/servers/{name}/mcp", name)


WAYS = {  # client -> (direct over stdio, through nmcp up)
    "raw": (raw_direct, raw_through_up),
    "sdk": (sdk_direct, sdk_through_up),
}


def phase(base: str, name: str) -> str:
    return requests.get(f"{base}/api/v1/servers/{name}", timeout=5).json()["phase"]


def stop(base: str, name: str) -> None:
    requests.post(f"{base}/api/v1/servers/{name}/shutdown", timeout=5).raise_for_status()
    _wait(lambda: phase(base, name) == "Idle",
          lambda: f"{name} to stop; it is {requests.get(f'{base}/api/v1/servers/{name}', timeout=5).text}")


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

    load_before = os.getloadavg()
    startup: list[float] = []
    for _ in range(options.starts):
        with nmcp_up() as (_, _, seconds):
            startup.append(seconds)

    cold: dict[str, dict[str, list[float]]] = {
        f"{name} ({client})": {"direct": [], "up_cold": [], "up_warm": []} for client in WAYS for name in specs}
    log_path = ROOT / "bench" / "results" / "up-log.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with nmcp_up(log_path) as (proc, base, _):
        time.sleep(1)  # let the worker settle before reading its memory
        memory = {"idle_mib": round(rss_mib(proc.pid), 1)}
        for name, spec in specs.items():  # warm-up: imports, caches, npx's first resolve
            for direct, through_up in WAYS.values():
                direct(name, spec)
                through_up(base, name)
                stop(base, name)
        for round_ in range(options.rounds):
            for client, (direct, through_up) in WAYS.items():
                for name, spec in specs.items():
                    row = cold[f"{name} ({client})"]
                    if round_ % 2:  # alternate which goes first, so neither always finds caches warm
                        row["up_cold"].append(through_up(base, name))
                        row["up_warm"].append(through_up(base, name))
                        row["direct"].append(direct(name, spec))
                    else:
                        row["direct"].append(direct(name, spec))
                        row["up_cold"].append(through_up(base, name))
                        row["up_warm"].append(through_up(base, name))
                if round_ == options.rounds - 1 and client == "sdk":
                    memory["running_mib"] = round(rss_mib(proc.pid), 1)  # both servers still up
                for name in specs:
                    stop(base, name)

    results = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "startup": summary(startup),
        "memory": memory,
        "demand_to_ready": summary(demand_to_ready(log_path)),
        "cold_start": {row: {way: summary(v) for way, v in ways.items()} for row, ways in cold.items()},
    }
    out = ROOT / "bench" / "results" / "up.json"
    out.write_text(json.dumps(results, indent=2) + "\n")

    print(f"nmcp up examples/local -> ready: median {results['startup']['median_ms']} ms "
          f"(min {results['startup']['min_ms']}, n={options.starts})")
    print(f"RSS of the nmcp up process tree: {memory['idle_mib']} MiB idle, "
          f"{memory['running_mib']} MiB with both example servers running")
    ready = results["demand_to_ready"]
    print(f"demand -> Ready inside nmcp up (reconcile passes + process spawn): median {ready['median_ms']} ms, "
          f"p90 {ready['p90_ms']} ms (n={ready['n']})\n")
    print("| server (client) | (a) own spawn+initialize+call, stdio | (b) first call via nmcp up, Idle server "
          "| (b)-(a) scale-from-zero overhead | (c) new session via nmcp up, Ready server |")
    print("|---|---|---|---|---|")
    for name, ways in results["cold_start"].items():
        a, b, c = ways["direct"]["median_ms"], ways["up_cold"]["median_ms"], ways["up_warm"]["median_ms"]
        print(f"| {name} | {a} ms | {b} ms | {round(b - a, 1)} ms | {c} ms |")
    machine = results["machine"]
    print(f"\nmedians of {options.rounds} interleaved rounds; p90 and min in {out.relative_to(ROOT)}; "
          f"{machine['cpus']} CPUs, 1-minute load average {machine['loadavg_before'][0]} before, "
          f"{machine['loadavg_after'][0]} after")


if __name__ == "__main__":
    main()
