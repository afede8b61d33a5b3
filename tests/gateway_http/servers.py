"""Real MCP servers speaking HTTP, on free loopback ports, for the HTTP upstream tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from gateway.runtime import HttpEndpoint
from tests.support import NODE_BIN, free_port, wait_http

SDK_SERVER = Path(__file__).with_name("sdk_server.py")
# server-everything's two HTTP modes: (mode argument, endpoint path) per transport.
EVERYTHING_MODES = {"sse": ("sse", "/sse"), "streamable-http": ("streamableHttp", "/mcp")}


@contextlib.contextmanager
def running(cmd: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A server process, once it answers HTTP on 127.0.0.1:`port`; killed afterwards."""
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # The root path answers 404 at once (the event-stream paths would stay open).
        wait_http(f"http://127.0.0.1:{port}/", timeout=60, proc=proc)
        yield proc
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def everything(transport: str) -> Iterator[tuple[HttpEndpoint, subprocess.Popen]]:
    """@modelcontextprotocol/server-everything in its own HTTP mode (it listens on every
    interface; we only ever connect to 127.0.0.1)."""
    mode, path = EVERYTHING_MODES[transport]
    port = free_port()
    with running([str(NODE_BIN / "mcp-server-everything"), mode], port, {"PORT": str(port)}) as proc:
        yield HttpEndpoint(f"http://127.0.0.1:{port}{path}", transport), proc


@contextlib.contextmanager
def sdk_server(mode: str) -> Iterator[HttpEndpoint]:
    """The Python SDK test server (sdk_server.py) in `mode`: sse, streamable-http or json."""
    port = free_port()
    with running([sys.executable, str(SDK_SERVER), str(port), mode], port):
        path, transport = ("/sse", "sse") if mode == "sse" else ("/mcp", "streamable-http")
        yield HttpEndpoint(f"http://127.0.0.1:{port}{path}", transport)


