"""Turning benchmark figures into the results document: ratios to the direct baseline, markdown.

Pure functions over plain dicts (the same dicts the JSON file holds), so a saved JSON result can
be re-rendered without running anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any

BASELINE_GROUP = "a"


def with_ratios(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each cell plus its p50, p99 and calls/s relative to the direct baseline at the same concurrency."""
    baseline = {c["sessions"]: c["figures"] for c in cells if c["group"] == BASELINE_GROUP}
    out = []
    for cell in cells:
        base = baseline.get(cell["sessions"])
        fig = cell["figures"]
        ratios = {
            name: (fig[name] / base[name]) if base and fig[name] and base[name] else None
            for name in ("p50_ms", "p99_ms", "calls_per_s")
        }
        out.append({**cell, "vs_direct": ratios})
    return out


def cold_start_summary(samples: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """Median seconds to initialize and to first response, per way of starting."""
    return {
        key: {
            "runs": len(runs),
            "initialized_s": median(r["initialized"] for r in runs),
            "first_call_s": median(r["first_call"] for r in runs),
        }
        for key, runs in samples.items() if runs
    }


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _errors(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in errors.items()) or "0"


def comparison(result: Mapping[str, Any]) -> list[str]:
    """With `--compare REV`: the gateway's own CPU per call and its calls/s, this tree against REV."""
    rev = result["meta"].get("compare")
    if not rev:
        return []
    cells = {(c["target"], c["sessions"]): c["figures"] for c in result["cells"]}
    lines = ["", f"This tree ({result['meta']['commit']}, with its uncommitted changes) against {rev}: the gateway "
             "worker's own CPU per call (user + system, from /proc; the server process not counted) and calls/s.",
             "", "| sessions | transport | gateway CPU ms/call | at " + rev + " | change | calls/s | at " + rev
             + " | change |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for (key, sessions), new in sorted(cells.items(), key=lambda item: (item[0][1], item[0][0])):
        old = cells.get((f"{key}@{rev}", sessions))
        if old is None:
            continue
        lines.append(f"| {sessions} | {key} | {_num(new.get('gateway_cpu_per_call_ms'), 3)} "
                     f"| {_num(old.get('gateway_cpu_per_call_ms'), 3)} "
                     f"| {_change(new.get('gateway_cpu_per_call_ms'), old.get('gateway_cpu_per_call_ms'))} "
                     f"| {_num(new['calls_per_s'], 0)} | {_num(old['calls_per_s'], 0)} "
                     f"| {_change(new['calls_per_s'], old['calls_per_s'])} |")
    return lines


def _change(new: float | None, old: float | None) -> str:
    return "—" if new is None or not old else f"{(new / old - 1) * 100:+.0f} %"


def markdown(result: Mapping[str, Any]) -> str:
    """The results document: how it was run, the load table, cold start, and what was missing."""
    meta, plan = result["meta"], result["plan"]
    lines = [
        f"# Gateway benchmark, {meta['started']}",
        "",
        f"Machine: {meta['cpus']} CPUs, load average {meta['loadavg_before']} before and "
        f"{meta['loadavg_after']} after; commit {meta['commit']}. Client: MCP Python SDK {meta['mcp']} "
        f"(initialize handshake), all sessions in one process. Server: server-everything "
        f"{meta.get('server-everything', '')} `echo` over stdio, node {meta.get('node', '')}.",
        f"Per cell and round: {plan['calls']} calls split over the sessions, after {plan['warmup_calls']} "
        f"warm-up calls per session; {plan['rounds']} rounds, target order rotated each round; "
        "latencies pooled over rounds, calls/s = successful calls / summed measured windows.",
        "",
        "| sessions | target | what N sessions share | ok calls | errors | p50 ms | p99 ms | calls/s | by round "
        "| p50 vs (a) | p99 vs (a) | calls/s vs (a) | server-side CPU ms/call | gateway CPU ms/call "
        "| client CPU ms/call | connect p50 ms |",
        "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in sorted(result["cells"], key=lambda c: (c["sessions"], c["order"])):
        fig, vs = cell["figures"], cell["vs_direct"]
        lines.append(
            f"| {cell['sessions']} | ({cell['group']}) {cell['label']} | {cell['sessions_share']} "
            f"| {fig['calls']} | {_errors(fig['errors'])} | {_num(fig['p50_ms'])} | {_num(fig['p99_ms'])} "
            f"| {_num(fig['calls_per_s'], 0)} | {' / '.join(_num(r['calls_per_s'], 0) for r in cell['rounds'])} "
            f"| {_ratio(vs['p50_ms'])} | {_ratio(vs['p99_ms'])} "
            f"| {_ratio(vs['calls_per_s'])} | {_num(fig['server_cpu_per_call_ms'])} "
            f"| {_num(fig.get('gateway_cpu_per_call_ms'))} | {_num(fig['client_cpu_per_call_ms'])} "
            f"| {_num(fig['connect_p50_ms'], 0)} |"
        )
    lines += comparison(result)
    cold = result.get("cold_start_summary") or {}
    if cold:
        lines += [
            "",
            "Cold start (median of runs): seconds from opening a session on an idle system to the "
            "initialize result and to the first echo result.",
            "",
            "| how | runs | initialize s | first response s |",
            "|---|---:|---:|---:|",
        ]
        for key, row in cold.items():
            lines.append(f"| {key} | {row['runs']} | {_num(row['initialized_s'], 3)} "
                         f"| {_num(row['first_call_s'], 3)} |")
    for key, reason in (result.get("unavailable") or {}).items():
        lines += ["", f"Not measured: {key}: {reason}"]
    return "\n".join(lines) + "\n"
