"""Benchmark: a stdio echo tool call, directly and through the nmcp gateway and its peers.

Measures p50/p99 latency and calls per second at several concurrencies for
  (a) the MCP Python SDK talking to server-everything directly over stdio,
  (b) the nmcp gateway over Streamable HTTP, (c) the nmcp gateway over legacy SSE,
  (d) supergateway (npm) and mcp-proxy (PyPI) bridging the same server,
  and for reference the server's own SSE and Streamable HTTP modes (HTTP without a bridge),
all in one run on this machine, so the ratios to (a) compare like with like on shared cores.
It also measures cold start: a session's first response through the gateway while the server
is idle, against the server's own spawn-and-initialize time.

Run from the repository root:  make bench-gateway   (or .venv/bin/python bench/gateway_bench.py)
Results: a markdown table on stdout, and JSON + markdown under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
import gateway_targets as targets
from gateway_load import Connect, Live, LoadPlan, Samples, first_response, run_cell, summarise
from gateway_report import cold_start_summary, markdown, with_ratios

RESULTS = targets.ROOT / "bench" / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="1,16,64", help="concurrencies, comma-separated (default 1,16,64)")
    parser.add_argument("--calls", type=int, default=300,
                        help="calls per cell and round, split evenly over the sessions (default 300)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="warm-up calls per session (default 2; the SDK lists tools on the first)")
    parser.add_argument("--rounds", type=int, default=2, help="repeat every cell, target order rotated (default 2)")
    parser.add_argument("--cold-starts", type=int, default=5, help="cold-start samples per way (default 5)")
    parser.add_argument("--targets", default=",".join(t.key for t in targets.ALL_TARGETS),
                        help="targets to run, comma-separated (default all; the direct baseline always runs)")
    parser.add_argument("--bench-venv", type=Path, default=targets.ROOT / ".venv-bench",
                        help="venv holding mcp-proxy (created if missing)")
    parser.add_argument("--compare", metavar="REV",
                        help="also run the nmcp gateway of commit REV (a git worktree), side by side")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="print the markdown of a saved result and exit, running nothing")
    return parser.parse_args(argv)


def selected_targets(keys: str) -> list[targets.Target]:
    wanted = {k.strip() for k in keys.split(",") if k.strip()} | {targets.DIRECT.key}
    unknown = wanted - {t.key for t in targets.ALL_TARGETS}
    if unknown:
        raise SystemExit(f"unknown target(s): {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(t.key for t in targets.ALL_TARGETS)}")
    return [t for t in targets.ALL_TARGETS if t.key in wanted]


@dataclass(frozen=True)
class Cell:
    """One measured run: a target at a concurrency, in a round."""

    round_no: int
    sessions: int
    target: targets.Target


def schedule(chosen: Sequence[targets.Target], levels: Sequence[int], rounds: int) -> tuple[list[Cell], dict[str, str]]:
    """The cells in the order they run, and those left out with the reason.

    Every round runs every concurrency; within one, the targets run in turn, the order rotated by
    one each round, so that over as many rounds as targets each target runs in each place once:
    drift on the shared machine, and the load the direct baseline's many processes leave behind
    them, fall on all of them alike.
    """
    cells: list[Cell] = []
    skipped: dict[str, str] = {}
    for round_no in range(rounds):
        shift = round_no % len(chosen)
        order = [*chosen[shift:], *chosen[:shift]]
        for sessions in levels:
            for target in order:
                if target.max_sessions is not None and sessions > target.max_sessions:
                    skipped[f"{target.key} at {sessions} sessions"] = target.beyond_max
                else:
                    cells.append(Cell(round_no, sessions, target))
    return cells, skipped


def measure_cold_start(runs: int, direct: Connect,
                       gateway_base: str | None) -> tuple[dict[str, list[dict[str, float]]], str | None]:
    """Direct spawn+initialize+first call, and the first call through the gateway to an idle server.

    The two alternate, so both see the same machine. The gateway keeps running throughout; its
    server is made idle before each cold sample with the REST API's shutdown (a no-op the first
    time, when nothing has asked for it yet).
    """
    own = "direct stdio: spawn, initialize, call"
    cold = "nmcp gateway, Streamable HTTP: idle server (cold)"
    warm = "nmcp gateway, Streamable HTTP: running server (warm)"
    samples: dict[str, list[dict[str, float]]] = {own: []}
    if gateway_base:
        samples[cold], samples[warm] = [], []
    problem = None
    for _ in range(runs):
        samples[own].append(asdict(anyio.run(first_response, direct)))
        if gateway_base and problem is None:
            try:
                targets.gateway_server_idle(gateway_base)
                connect = targets.streamable_http_connect(gateway_base + "/mcp")
                samples[cold].append(asdict(anyio.run(first_response, connect)))
                samples[warm].append(asdict(anyio.run(first_response, connect)))
            except Exception as exc:  # report why, keep the direct figures
                problem = f"{type(exc).__name__}: {exc}"
    return samples, problem


def start_targets(stack: contextlib.ExitStack, chosen: list[targets.Target], *, workdir: Path, logs: Path,
                  bench_venv: Path, direct: Connect,
                  compare: str | None = None) -> tuple[dict[str, Live], dict[str, str], str | None]:
    """Start every bridge the chosen targets need; return each target ready for load, what failed,
    and the nmcp gateway's URL for the server."""
    bridges: set[int] = set()

    def bridge_cpu(pid: int) -> Callable[[], float]:
        bridges.add(pid)
        return lambda: targets.tree_cpu(pid)

    def direct_cpu() -> float:
        # The direct baseline's servers are this process's children; the bridges are too.
        return targets.tree_cpu(os.getpid(), include_root=False, exclude=frozenset(bridges))

    connects: dict[str, Live] = {targets.DIRECT.key: Live(direct, direct_cpu)}
    unavailable: dict[str, str] = {}
    gateway_base: str | None = None
    keys = {t.key for t in chosen}

    def bring_up(needed: set[str], start: Callable[[], dict[str, Live]]) -> None:
        if not needed & keys:
            return
        try:
            connects.update({k: c for k, c in start().items() if k in keys})
        except Exception as exc:  # one bridge failing to start must not cost the others
            unavailable.update({k: f"{type(exc).__name__}: {exc}" for k in needed & keys})

    def gateway_rows(base: str, pid: int, http: targets.Target, sse: targets.Target) -> dict[str, Live]:
        worker = targets.gunicorn_worker(pid)
        return {http.key: Live(targets.streamable_http_connect(base + "/mcp"), bridge_cpu(pid),
                               lambda: targets.own_cpu(worker)),
                sse.key: Live(targets.sse_connect(base + "/sse"), bridge_cpu(pid), lambda: targets.own_cpu(worker))}

    def nmcp() -> dict[str, Live]:
        nonlocal gateway_base
        base, pid = stack.enter_context(targets.nmcp_gateway(workdir, logs))
        gateway_base = base
        return gateway_rows(base, pid, targets.NMCP_HTTP, targets.NMCP_SSE)

    def nmcp_compared() -> dict[str, Live]:
        assert compare is not None
        tree = stack.enter_context(targets.worktree(compare))
        base, pid = stack.enter_context(targets.nmcp_gateway(workdir, logs, tree))
        return gateway_rows(base, pid, *targets.compare_targets(compare))

    def supergateway_http() -> dict[str, Live]:
        base, pid = stack.enter_context(targets.supergateway("streamableHttp", logs))
        return {targets.SUPERGATEWAY_HTTP.key: Live(targets.streamable_http_connect(base + "/mcp"), bridge_cpu(pid))}

    def supergateway_sse() -> dict[str, Live]:
        base, pid = stack.enter_context(targets.supergateway("sse", logs))
        return {targets.SUPERGATEWAY_SSE.key: Live(targets.sse_connect(base + "/sse"), bridge_cpu(pid))}

    def mcp_proxy() -> dict[str, Live]:
        targets.ensure_mcp_proxy(bench_venv)
        base, pid = stack.enter_context(targets.mcp_proxy(bench_venv, logs))
        return {targets.MCP_PROXY_HTTP.key: Live(targets.streamable_http_connect(base + "/mcp/"), bridge_cpu(pid)),
                targets.MCP_PROXY_SSE.key: Live(targets.sse_connect(base + "/sse"), bridge_cpu(pid))}

    def native_http() -> dict[str, Live]:
        base, pid = stack.enter_context(targets.native_http("streamableHttp", logs))
        return {targets.NATIVE_HTTP.key: Live(targets.streamable_http_connect(base + "/mcp"), bridge_cpu(pid))}

    def native_sse() -> dict[str, Live]:
        base, pid = stack.enter_context(targets.native_http("sse", logs))
        return {targets.NATIVE_SSE.key: Live(targets.sse_connect(base + "/sse"), bridge_cpu(pid))}

    bring_up({targets.NMCP_HTTP.key, targets.NMCP_SSE.key}, nmcp)
    if compare:
        bring_up({t.key for t in targets.compare_targets(compare)}, nmcp_compared)
    bring_up({targets.SUPERGATEWAY_HTTP.key}, supergateway_http)
    bring_up({targets.SUPERGATEWAY_SSE.key}, supergateway_sse)
    bring_up({targets.MCP_PROXY_HTTP.key, targets.MCP_PROXY_SSE.key}, mcp_proxy)
    bring_up({targets.NATIVE_HTTP.key}, native_http)
    bring_up({targets.NATIVE_SSE.key}, native_sse)
    return connects, unavailable, gateway_base


def cell_records(chosen: Sequence[targets.Target], levels: Sequence[int],
                 runs: dict[tuple[str, int], list[Samples]]) -> list[dict[str, Any]]:
    """Each measured target and concurrency as the JSON record the report reads."""
    records = []
    for order, target in enumerate(chosen):
        for sessions in levels:
            rounds = runs.get((target.key, sessions))
            if rounds:
                records.append({
                    "target": target.key, "group": target.group, "label": target.label,
                    "sessions_share": target.sessions_share, "sessions": sessions, "order": order,
                    "figures": asdict(summarise(rounds)),
                    "rounds": [{"calls": len(s.latencies), "errors": dict(s.errors), "window_s": s.window,
                                "cell_s": s.seconds,
                                "calls_per_s": len(s.latencies) / s.window if s.window else None}
                               for s in rounds],
                })
    return records


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=targets.ROOT, capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(markdown(json.loads(args.render.read_text())), end="")
        return 0
    levels = [int(n) for n in args.sessions.split(",")]
    chosen = selected_targets(args.targets)
    if args.compare:  # the other commit's gateway right after ours, in each transport chosen
        old_http, old_sse = targets.compare_targets(args.compare)
        chosen = [c for t in chosen for c in ((t, old_http) if t == targets.NMCP_HTTP else
                                               (t, old_sse) if t == targets.NMCP_SSE else (t,))]
    started = datetime.datetime.now(datetime.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    logs = args.out / "logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    # The SDK logs a failing session's tracebacks; they are counted as errors, the detail goes to a file.
    logging.basicConfig(filename=logs / "client.log", level=logging.WARNING)
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "mcp": version("mcp"),
        **targets.tool_versions(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        **({"compare": args.compare} if args.compare else {}),
    }
    plan = {"sessions": levels, "calls": args.calls, "warmup_calls": args.warmup, "rounds": args.rounds}
    runs: dict[tuple[str, int], list[Samples]] = {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nmcp-bench-") as tmp, \
            (logs / "direct-stdio.log").open("a") as direct_log, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        direct = targets.direct_connect(direct_log)
        connects, unavailable, gateway_base = start_targets(stack, chosen, workdir=workdir, logs=logs,
                                                            bench_venv=args.bench_venv, direct=direct,
                                                            compare=args.compare)
        print("cold start ...", file=sys.stderr, flush=True)
        cold, gateway_problem = measure_cold_start(args.cold_starts, direct, gateway_base)
        if gateway_problem:
            unavailable.setdefault("nmcp gateway cold start", gateway_problem)
        cells, skipped = schedule([t for t in chosen if t.key in connects], levels, args.rounds)
        unavailable.update(skipped)
        for cell in cells:
            print(f"round {cell.round_no + 1}/{args.rounds}: {cell.target.key} x{cell.sessions} ...",
                  file=sys.stderr, flush=True)
            load = LoadPlan(sessions=cell.sessions, calls_per_session=math.ceil(args.calls / cell.sessions),
                            warmup_calls=args.warmup)
            cell_began = time.monotonic()
            samples = anyio.run(run_cell, connects[cell.target.key], load, f"{cell.target.key}/{cell.sessions}/"
                                f"{cell.round_no}")
            samples.seconds = time.monotonic() - cell_began
            runs.setdefault((cell.target.key, cell.sessions), []).append(samples)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    meta["seconds"] = round(time.monotonic() - began, 1)
    result = {"meta": meta, "plan": plan, "cells": with_ratios(cell_records(chosen, levels, runs)), "cold_start": cold,
              "cold_start_summary": cold_start_summary(cold), "unavailable": unavailable}
    text = markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in (f"gateway-{stamp}", "gateway-latest"):
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / f"{name}.md").write_text(text)
    print(text)
    print(f"results: {args.out / f'gateway-{stamp}.json'} (logs under {logs})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
