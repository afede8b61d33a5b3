"""`nmcp up` as a real subprocess, and what the tests ask of it.

Everything goes through what a user has: the command line, the REST API, the log it prints, an
MCP client (the official SDK, in the pytest process) and the process table.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import requests
from mcp import Client

from tests.support import ROOT, VENV_BIN, free_port, stop, wait_for, wait_http

GUARD = 60.0  # seconds; a failure guard, never a timing assertion


def write(directory: Path, name: str, *documents: str) -> Path:
    """A manifest file in `directory` holding `documents` (each dedented), separated by `---`."""
    path = directory / name
    path.write_text("---\n".join(textwrap.dedent(d).lstrip() for d in documents))
    return path


def pool(name: str = "default", *, max_active: int = 10, max_idle: int = 10, idle: str = "1h") -> str:
    return textwrap.dedent(f"""
        apiVersion: nmcp.nwrx.io/v1
        kind: MCPPool
        metadata: {{name: {name}}}
        spec: {{maxActive: {max_active}, maxIdle: {max_idle}, defaultIdleTimeout: {idle}}}
        """).lstrip()


def time_server(name: str, *, pool: str = "default", spec: str = "") -> str:
    """An MCPServer running mcp-server-time (found on PATH through the venv's bin); `spec` adds lines."""
    text = textwrap.dedent(f"""
        apiVersion: nmcp.nwrx.io/v1
        kind: MCPServer
        metadata: {{name: {name}}}
        spec:
          pool: {pool}
          command: [mcp-server-time]
          args: [--local-timezone=UTC]
        """).lstrip()
    if spec.strip():
        text += textwrap.indent(textwrap.dedent(spec).strip() + "\n", "  ")
    return text


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (by parent pid, read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def call_tool(url: str, tool: str, arguments: dict[str, Any]) -> Any:
    """Connect with the official MCP SDK client, call one tool, disconnect."""
    async def main() -> Any:
        with anyio.fail_after(GUARD):
            async with Client(url) as client:
                return await client.call_tool(tool, arguments)
    return anyio.run(main)


class Up:
    """A running `nmcp up` and its REST API."""

    def __init__(self, proc: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
        self.proc = proc
        self.base = base
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def mcp_url(self, name: str) -> str:
        return f"{self.base}/api/v1/servers/{name}/mcp"

    def servers(self) -> dict[str, dict[str, Any]]:
        response = requests.get(f"{self.base}/api/v1/servers", timeout=10)
        response.raise_for_status()
        return {s["name"]: s for s in response.json()["servers"]}

    def server(self, name: str) -> dict[str, Any]:
        response = requests.get(f"{self.base}/api/v1/servers/{name}", timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, name: str, action: str) -> dict[str, Any]:
        response = requests.post(f"{self.base}/api/v1/servers/{name}/{action}", timeout=10)
        assert response.status_code == 202, response.text
        return response.json()

    def wait_phase(self, name: str, phase: str, timeout: float = GUARD) -> dict[str, Any]:
        return wait_for(lambda: (s := self.server(name))["phase"] == phase and s, f"{name} to be {phase}", timeout)

    def processes(self) -> set[int]:
        return descendants(self.proc.pid)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to nmcp up, as a terminal sends it; its exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=GUARD)


@contextlib.contextmanager
def nmcp_up(*paths: str | Path, log_path: Path, log_format: str = "text", cwd: Path = ROOT,
            reload_interval: float = 0.2) -> Iterator[Up]:
    """Run `nmcp up PATHS` on a free port until the block ends (then Ctrl-C, and kill if need be)."""
    port = free_port()
    cmd = [str(VENV_BIN / "nmcp"), "up", *map(str, paths), "--bind", f"127.0.0.1:{port}",
           "--log-format", log_format, "--reload-interval", str(reload_interval)]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", GUARD, proc)
        yield Up(proc, base, log_path)
    finally:
        stop(proc, grace=GUARD, sig=signal.SIGINT)
