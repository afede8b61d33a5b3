"""Fixtures of the gateway tests: manifests for real servers, and the gateway under real gunicorn.

The gateway runs as a `gunicorn -k gevent` subprocess (gevent never enters pytest); the tests
drive it with the official MCP SDK client (2.x in-process via anyio, 1.x from its own venv).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support import NODE_BIN, ROOT, VENV_BIN, free_port, stop, wait_http

HERE = Path(__file__).resolve().parent
PYTHON = str(VENV_BIN / "python")


def server(name: str, command: list[str], args: list[str] | None = None, **spec: object) -> dict[str, object]:
    return {"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPServer", "metadata": {"name": name},
            "spec": {"command": command, "args": args or [], **spec}}


def pool(name: str = "default", **spec: object) -> dict[str, object]:
    return {"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPPool", "metadata": {"name": name}, "spec": spec}


def standard_servers() -> list[dict[str, object]]:
    test_server = [PYTHON, str(HERE / "stdio_server.py")]
    return [
        # Room for every server at once, none stopped for being idle: the tests here are about the
        # gateway, and each that is about the pool declares its own.
        pool(maxActive=50, maxIdle=50),
        server("time", [str(VENV_BIN / "mcp-server-time")], ["--local-timezone", "UTC"]),
        server("everything", [str(NODE_BIN / "mcp-server-everything")], ["stdio"]),
        server("test", test_server),
        server("crashy", test_server),  # for tests that kill its process
        server("isolated", test_server, isolation="session"),
        # Stopped soon after its last session. Idle time counts from the process start (a stdio Pod is
        # ready once it runs, as under `nmcp up`): the timeout leaves room for a slow initialize.
        server("brief", test_server, idleTimeout="5s"),
        server("missing", ["/nonexistent/mcp-server"]),
        {"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPServer", "metadata": {"name": "imageonly"},
         "spec": {"image": "mcp/context7:latest"}},
    ]


def http_servers() -> list[dict[str, object]]:
    """server-everything in its own HTTP modes, run by the local runtime."""
    everything = str(NODE_BIN / "mcp-server-everything")
    docs = []
    for name, mode, transport in (("everything-sse", "sse", "sse"),
                                  ("everything-http", "streamableHttp", "streamable-http")):
        port = free_port()
        docs.append(server(name, [everything], [mode], env=[{"name": "PORT", "value": str(port)}],
                           transport={"type": transport, "port": port}))
    return docs


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen
    log_path: Path | None = None

    def log(self) -> str:
        """What the gateway printed so far."""
        assert self.log_path is not None, "this gateway's output is not kept"
        return self.log_path.read_text(errors="replace")

    def api(self, name: str) -> str:
        return f"{self.url}/api/v1/servers/{name}"

    def mcp(self, name: str) -> str:
        return f"{self.url}/api/v1/servers/{name}/mcp"

    def sse(self, name: str) -> str:
        return f"{self.url}/api/v1/servers/{name}/sse"

    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        assert len(children) == 1, f"expected one gunicorn worker, found {children}"
        return int(children[0])


@contextlib.contextmanager
def run_gateway(manifests: Path, **env: str) -> Iterator[Gateway]:
    """The gateway (gateway/gunicorn.conf.py, one gevent worker; the local runtime unless `env` names
    another) on a free loopback port."""
    port = free_port()
    environ = {**os.environ, "NMCP_MANIFESTS": str(manifests), "NMCP_BIND": f"127.0.0.1:{port}",
               "NMCP_KEEPALIVE": "1", **env}
    log_path = manifests.parent / f"gateway-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([str(VENV_BIN / "gunicorn"), "--config", str(ROOT / "gateway" / "gunicorn.conf.py")],
                            cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", 30, proc)
        yield Gateway(url, proc, log_path)
    finally:
        stop(proc, grace=30)
        log.close()
        sys.stdout.write(log_path.read_text(errors="replace")[-3000:])


def write_manifests(directory: Path, docs: list[dict[str, object]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "servers.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway serving the standard servers, shared by the tests (each opens its own sessions)."""
    manifests = write_manifests(tmp_path_factory.mktemp("gateway"), standard_servers() + http_servers())
    with run_gateway(manifests) as gw:
        yield gw
