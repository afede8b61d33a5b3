"""Echo round trips through an HTTP upstream against the official SDK client, same server, same calls.

`.venv/bin/python -m tests.gateway_http.bench_upstream [CALLS]` (from the repository root) starts
server-everything in its `sse` and `streamableHttp` modes and prints, per transport, p50/p99 latency
and calls per second of sequential `echo` calls, for this module's upstream and for the MCP Python
SDK 2.x client.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import anyio
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from gateway.runtime import HttpEndpoint
from tests.gateway_http.driver import Driver
from tests.gateway_http.servers import everything


def upstream_calls(endpoint: HttpEndpoint, calls: int) -> list[float]:
    driver = Driver(endpoint)
    conn = driver.conn
    try:
        driver.handshake()
        times = []
        for i in range(calls):
            started = time.perf_counter()
            driver.call("tools/call", {"name": "echo", "arguments": {"message": f"m{i}"}})
            times.append(time.perf_counter() - started)
        return times
    finally:
        conn.close()


def sdk_calls(endpoint: HttpEndpoint, calls: int) -> list[float]:
    async def main() -> list[float]:
        transport = sse_client(endpoint.url) if endpoint.transport == "sse" else streamable_http_client(endpoint.url)
        times = []
        async with Client(transport, mode="legacy") as client:
            for i in range(calls):
                started = time.perf_counter()
                await client.call_tool("echo", {"message": f"m{i}"})
                times.append(time.perf_counter() - started)
        return times

    return anyio.run(main)


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
            "calls_per_s": round(len(times) / sum(times), 1)}


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    for transport in ("sse", "streamable-http"):
        with everything(transport) as (endpoint, _):
            upstream_calls(endpoint, 20)  # warm-up: node's JIT, connection pools
            ours, sdk = summary(upstream_calls(endpoint, calls)), summary(sdk_calls(endpoint, calls))
            print(json.dumps({"transport": transport, "calls": calls, "upstream": ours, "sdk_client": sdk,
                              "p50_ratio": round(ours["p50_ms"] / sdk["p50_ms"], 2)}))


if __name__ == "__main__":
    main()
