"""The load of one benchmark cell: N concurrent MCP client sessions calling `echo` in bounded loops.

A cell is one target (a way of reaching the server) at one concurrency. Every session connects
and warms up first; only when all of them are ready does the measured window open, so connection
set-up (and, for the direct baseline, process spawn) never lands in the figures. Each session
then makes a fixed number of calls, one after the other, each with a message unique to the
session and the call: a response that does not echo exactly that message is counted as wrong,
which is how a bridge that mixes up sessions shows up in the results instead of looking fast.

The summary functions at the bottom are pure: samples in, frozen figures out.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import anyio
from mcp import Client

ECHO_TOOL = "echo"
# server-everything's echo tool answers with exactly this prefix and the message.
ECHO_PREFIX = "Echo: "

Connect = Callable[[], AbstractAsyncContextManager[Client]]
"""Opens one client session to the target (spawning a server, for the direct baseline)."""


@dataclass(frozen=True)
class Live:
    """A target ready to take load: how to open a session, and the CPU seconds its processes used so far."""

    connect: Connect
    cpu: Callable[[], float]
    # The CPU seconds of the bridge's own serving process alone (the gateway's gunicorn worker),
    # servers and other processes left out; None where the benchmark does not single it out.
    own_cpu: Callable[[], float] | None = None


@dataclass(frozen=True)
class LoadPlan:
    """How much work one cell does."""

    sessions: int
    calls_per_session: int
    warmup_calls: int = 2
    call_timeout: float = 15.0
    connect_timeout: float = 120.0


@dataclass
class Samples:
    """What one cell observed (mutable while the cell runs, summarised afterwards)."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    connect_times: list[float] = field(default_factory=list)
    window: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0  # the bridge and the server processes behind it (the servers alone, direct)
    gateway_cpu: float | None = None  # the bridge's serving process alone, where known
    seconds: float = 0.0  # the whole cell: connecting, warming up, measuring, closing


def _error_kind(exc: BaseException) -> str:
    """A short, stable name for what went wrong with a call or a connection."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, BaseExceptionGroup):
        leaves = exc.exceptions
        return _error_kind(leaves[0]) if leaves else type(exc).__name__
    return type(exc).__name__


async def _echo(client: Client, message: str, timeout: float) -> str | None:
    """Call echo once; return None when the answer is exactly ours, else what went wrong."""
    with anyio.fail_after(timeout):
        result = await client.call_tool(ECHO_TOOL, {"message": message})
    text = result.content[0].text if result.content and hasattr(result.content[0], "text") else None
    if result.is_error or text != ECHO_PREFIX + message:
        return "wrong-response"
    return None


async def run_cell(target: Live, plan: LoadPlan, tag: str) -> Samples:
    """Run `plan.sessions` sessions against one target; return every latency and error seen."""
    connect = target.connect
    samples = Samples()
    settled = 0  # sessions that are connected and warm, or have failed trying
    all_settled = anyio.Event()
    start = anyio.Event()
    all_measured = anyio.Event()
    measured = 0
    window_end = 0.0

    def settle() -> None:
        nonlocal settled
        settled += 1
        if settled == plan.sessions:
            all_settled.set()

    def finish() -> None:
        nonlocal measured, window_end
        measured += 1
        window_end = max(window_end, time.perf_counter())
        if measured == plan.sessions:
            all_measured.set()

    async def session(index: int) -> None:
        settled_here = measured_here = False
        phase = "connect"  # then warmup, then close: names a session's failure in the errors
        try:
            began = time.perf_counter()
            # One scope bounds connecting and warming up, then (re-armed) closing; the calls in
            # between have their own per-call timeout.
            with anyio.CancelScope(deadline=anyio.current_time() + plan.connect_timeout) as scope:
                async with connect() as client:
                    samples.connect_times.append(time.perf_counter() - began)
                    phase = "warmup"
                    for i in range(plan.warmup_calls):
                        problem = await _echo(client, f"{tag}/warm/{index}/{i}", plan.call_timeout)
                        if problem is not None:
                            samples.errors[f"warmup-{problem}"] += 1
                    scope.deadline = math.inf
                    settle()
                    settled_here = True
                    await start.wait()
                    await measure(client, index)
                    finish()
                    measured_here = True
                    phase = "close"
                    # Stay connected until every session is done, so closing ones do not load the rest.
                    await all_measured.wait()
                    scope.deadline = anyio.current_time() + 10
            if scope.cancelled_caught:
                samples.errors[f"{phase}-timeout"] += 1
        except Exception as exc:  # a session that fails outside its calls: counted by phase
            samples.errors[f"{phase}-{_error_kind(exc)}"] += 1
        finally:
            if not settled_here:
                settle()
            if not measured_here:
                finish()

    async def measure(client: Client, index: int) -> None:
        consecutive_timeouts = 0
        for i in range(plan.calls_per_session):
            sent = time.perf_counter()
            try:
                problem = await _echo(client, f"{tag}/{index}/{i}", plan.call_timeout)
            except Exception as exc:  # a failed call is a data point, not the end of the run
                problem = _error_kind(exc)
            if problem is None:
                samples.latencies.append(time.perf_counter() - sent)
                consecutive_timeouts = 0
                continue
            samples.errors[problem] += 1
            # A bridge that has stopped answering would otherwise cost a timeout per remaining call.
            consecutive_timeouts = consecutive_timeouts + 1 if problem == "timeout" else 0
            if consecutive_timeouts == 3:
                samples.errors["abandoned"] += plan.calls_per_session - i - 1
                return

    async with anyio.create_task_group() as tg:
        for index in range(plan.sessions):
            tg.start_soon(session, index)
        await all_settled.wait()
        cpu_before, server_cpu_before = time.process_time(), target.cpu()
        own_before = target.own_cpu() if target.own_cpu else 0.0
        began = time.perf_counter()
        start.set()
        await all_measured.wait()
        samples.window = max(window_end - began, 0.0)
        samples.client_cpu = time.process_time() - cpu_before
        samples.server_cpu = target.cpu() - server_cpu_before
        if target.own_cpu:
            samples.gateway_cpu = target.own_cpu() - own_before
    return samples


@dataclass(frozen=True)
class Figures:
    """The summary of one or more runs of a cell."""

    calls: int
    errors: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None
    calls_per_s: float | None
    connect_p50_ms: float | None
    client_cpu_per_call_ms: float | None
    server_cpu_per_call_ms: float | None
    gateway_cpu_per_call_ms: float | None = None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(runs: Sequence[Samples]) -> Figures:
    """Pool the samples of repeated runs of one cell into its figures."""
    latencies = sorted(x for run in runs for x in run.latencies)
    connects = sorted(x for run in runs for x in run.connect_times)
    errors: Counter[str] = Counter()
    for run in runs:
        errors.update(run.errors)
    window = sum(run.window for run in runs)
    cpu = sum(run.client_cpu for run in runs)
    server_cpu = sum(run.server_cpu for run in runs)
    ok = len(latencies)
    own = [run.gateway_cpu for run in runs if run.gateway_cpu is not None]
    return Figures(
        calls=ok,
        errors=dict(sorted(errors.items())),
        p50_ms=percentile(latencies, 50) * 1e3 if ok else None,
        p99_ms=percentile(latencies, 99) * 1e3 if ok else None,
        calls_per_s=ok / window if ok and window > 0 else None,
        connect_p50_ms=percentile(connects, 50) * 1e3 if connects else None,
        client_cpu_per_call_ms=cpu / ok * 1e3 if ok else None,
        server_cpu_per_call_ms=server_cpu / ok * 1e3 if ok else None,
        gateway_cpu_per_call_ms=sum(own) / ok * 1e3 if ok and own else None,
    )


@dataclass(frozen=True)
class FirstResponse:
    """Seconds from opening a session to its initialize result, and to its first echo result."""

    initialized: float
    first_call: float


async def first_response(connect: Connect, timeout: float = 120.0) -> FirstResponse:
    """Open one session and make one call, timing both (a cold start when nothing runs yet)."""
    with anyio.fail_after(timeout):
        began = time.perf_counter()
        async with connect() as client:
            initialized = time.perf_counter() - began
            problem = await _echo(client, "cold-start", timeout)
            first_call = time.perf_counter() - began
    if problem is not None:
        raise RuntimeError(f"first call answered wrongly: {problem}")
    return FirstResponse(initialized, first_call)
