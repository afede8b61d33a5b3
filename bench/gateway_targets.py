"""The ways the benchmark reaches server-everything's stdio server, and the bridges it starts.

Each `Target` says how a client session is opened and, for bridges, which process serves it.
The direct baseline (a) spawns a server per session: a stdio server has exactly one client, so
"N concurrent sessions" done directly is N processes. Every bridge puts N client sessions in
front of whatever its own design gives: the nmcp gateway and mcp-proxy share one server process;
supergateway shares one process over SSE (and forwards every line to every session) but spawns
one process per session in its stateful Streamable HTTP mode.

Bridges run as process groups of their own, so stopping one also stops the server it spawned.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests
from gateway_load import Connect
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import NODE_BIN, free_port, stop  # noqa: E402

EVERYTHING = NODE_BIN / "mcp-server-everything"
SUPERGATEWAY = NODE_BIN / "supergateway"
NMCP = Path(sys.executable).parent / "nmcp"
SERVER_NAME = "everything"
MCP_PROXY_VERSION = "0.13.0"
MCP_PROXY_SDK = "1.30.0"  # the SDK mcp-proxy 0.13.0 resolved to when these figures were first taken


@dataclass(frozen=True)
class Target:
    """One way of reaching the server, as a row of the results table."""

    key: str
    group: str  # the letter the brief and the issue use: a, b, c, d
    label: str
    sessions_share: str  # what N concurrent sessions mean for this target
    max_sessions: int | None = None  # beyond this, not run (the reason says why)
    beyond_max: str = ""


DIRECT = Target("direct-stdio", "a", "SDK -> server, stdio (direct)", "one server process per session")
NMCP_HTTP = Target("nmcp-streamable-http", "b", "nmcp gateway, Streamable HTTP", "one shared server process")
NMCP_SSE = Target("nmcp-sse", "c", "nmcp gateway, SSE", "one shared server process")
SUPERGATEWAY_HTTP = Target("supergateway-streamable-http", "d", "supergateway 4.0.0 --stateful, Streamable HTTP",
                           "one server process per session (its stateful design)")
SUPERGATEWAY_SSE = Target(
    "supergateway-sse", "d", "supergateway 4.0.0, SSE",
    "one shared server process; every output line goes to every session",
    max_sessions=16,
    beyond_max="supergateway's SSE mode sends every line the server writes to every session, ids unchanged, so "
               "sessions get each other's answers (see its 16-session row); at 64 that is 64x64 deliveries per "
               "round of calls and most of a minute spent on results that are wrong by construction")
MCP_PROXY_HTTP = Target("mcp-proxy-streamable-http", "d", f"mcp-proxy {MCP_PROXY_VERSION}, Streamable HTTP",
                        "one shared server process")
MCP_PROXY_SSE = Target("mcp-proxy-sse", "d", f"mcp-proxy {MCP_PROXY_VERSION}, SSE", "one shared server process")

# Not a bridge: the server speaking HTTP itself, to tell what HTTP and the SDK's HTTP client cost
# from what bridging costs.
NATIVE_HTTP = Target("native-streamable-http", "ref", "server-everything's own Streamable HTTP (no bridge)",
                     "one server process, a server instance per session inside it")
NATIVE_SSE = Target("native-sse", "ref", "server-everything's own SSE (no bridge)",
                    "one server process, a server instance per session inside it")

ALL_TARGETS = (DIRECT, NMCP_HTTP, NMCP_SSE, SUPERGATEWAY_HTTP, SUPERGATEWAY_SSE, MCP_PROXY_HTTP, MCP_PROXY_SSE,
               NATIVE_HTTP, NATIVE_SSE)

# The 2025 initialize handshake on every path: server-everything speaks 2025-11-25, and "legacy"
# keeps the 2.x client from probing `server/discover` first, so all targets do the same exchange.
CLIENT_OPTIONS = {"mode": "legacy", "cache": None}
HTTP_TIMEOUT = 30.0


def direct_connect(errlog: IO[str]) -> Connect:
    """Sessions that each spawn their own server over stdio, with the SDK's own stdio client."""
    params = StdioServerParameters(command=str(EVERYTHING), args=["stdio"])
    return lambda: Client(stdio_client(params, errlog=errlog), **CLIENT_OPTIONS)


def streamable_http_connect(url: str) -> Connect:
    return lambda: Client(url, **CLIENT_OPTIONS)


def sse_connect(url: str) -> Connect:
    # The SDK's SSE client gives HTTP operations 5 s by default, its Streamable HTTP client 30 s:
    # 30 s for both, so 64 sessions connecting at once on a busy machine measure the same thing.
    return lambda: Client(sse_client(url, timeout=HTTP_TIMEOUT), **CLIENT_OPTIONS)


def gateway_manifest(path: Path) -> Path:
    """Write the MCPServer manifest the gateway serves: server-everything over stdio, kept warm."""
    path.write_text(
        "apiVersion: nmcp.nwrx.io/v1\n"
        "kind: MCPServer\n"
        f"metadata: {{name: {SERVER_NAME}, namespace: default}}\n"
        "spec:\n"
        f"  command: [{str(EVERYTHING)!r}]\n"
        "  args: [stdio]\n"
        "  transport: {type: stdio}\n"
        "  idleTimeout: 30m\n"
    )
    return path


@contextlib.contextmanager
def process_group(argv: list[str], log: Path, ready: Callable[[], bool], what: str, *,
                  timeout: float = 60.0, cwd: Path = ROOT) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` in a new process group until the block ends; wait until `ready()` first."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=cwd, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready within {timeout}s; see {log}")
            time.sleep(0.1)
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Ask the leader to stop, then make sure nothing of its group is left."""
    stop(proc)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group id is the leader's pid: only what we started


def gateway_server_idle(base: str, timeout: float = 30.0) -> None:
    """Stop the gateway's server by hand and wait until the gateway reports it idle."""
    requests.post(base + "/shutdown", timeout=HTTP_TIMEOUT).raise_for_status()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = requests.get(base, timeout=HTTP_TIMEOUT).json()
        if state["phase"] == "Idle" and not state["upstream"]["running"]:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{base} did not become Idle within {timeout}s after /shutdown")


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far) for every process readable in /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:  # gone meanwhile
            continue
        # After "pid (comm) ": state, ppid, ... utime and stime are the 12th and 13th fields.
        fields = text[text.rindex(")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def tree_cpu(root: int, *, include_root: bool = True, exclude: frozenset[int] = frozenset()) -> float:
    """CPU seconds used so far by `root`'s descendants (and itself), leaving out `exclude`'s subtrees.

    Spawned servers count wherever they run: the nmcp gateway starts its servers in sessions of
    their own, so a process group would miss them; the parent links do not.
    """
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total = table[root][1] if include_root and root in table else 0.0
    todo = [pid for pid in children.get(root, []) if pid not in exclude]
    while todo:
        pid = todo.pop()
        total += table[pid][1]
        todo += [child for child in children.get(pid, []) if child not in exclude]
    return total


def own_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` itself, not by its children."""
    return _process_table()[pid][1]


def gunicorn_worker(master: int, timeout: float = 30.0) -> int:
    """The gateway's one gunicorn worker: the child of `master` that gunicorn forked (the same
    command line as the master's), not a server process."""
    deadline = time.monotonic() + timeout
    with open(f"/proc/{master}/cmdline", "rb") as own:
        command = own.read()
    while time.monotonic() < deadline:
        for pid, (ppid, _) in _process_table().items():
            if ppid != master:
                continue
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as child:
                if child.read() == command:
                    return pid
        time.sleep(0.1)
    raise RuntimeError(f"no gunicorn worker under process {master}")


def tcp_ready(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0
    return ready


def http_ready(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False
    return ready


def compare_targets(rev: str) -> tuple[Target, Target]:
    """The nmcp gateway's two rows for the code of another commit."""
    return (Target(f"{NMCP_HTTP.key}@{rev}", "b", f"{NMCP_HTTP.label} at {rev}", NMCP_HTTP.sessions_share),
            Target(f"{NMCP_SSE.key}@{rev}", "c", f"{NMCP_SSE.label} at {rev}", NMCP_SSE.sessions_share))


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A checkout of `rev` of this repository (git worktree) for as long as the block runs."""
    path = Path(tempfile.mkdtemp(prefix=f"nmcp-{rev}-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False,
                       capture_output=True)


@contextlib.contextmanager
def nmcp_gateway(workdir: Path, logs: Path, tree: Path = ROOT) -> Iterator[tuple[str, int]]:
    """The nmcp gateway (local runtime) serving server-everything; yields the server's URL and the pid.

    `tree` is the checkout whose code runs (another commit's, to compare): the gateway starts in it,
    with it first on PYTHONPATH, so the CLI and gunicorn import that code, whatever is installed.
    """
    manifest = gateway_manifest(workdir / f"everything-{tree.name}.yaml")
    port = free_port()
    argv = [str(NMCP), "gateway", "--runtime", "local", "-f", str(manifest), "--bind", f"127.0.0.1:{port}"]
    argv = ["env", f"PYTHONPATH={tree}", *argv]
    base = f"http://127.0.0.1:{port}"
    with process_group(argv, logs / f"nmcp-gateway-{tree.name}.log", http_ready(base + "/healthz"), "nmcp gateway",
                       cwd=tree) as proc:
        yield f"{base}/api/v1/servers/{SERVER_NAME}", proc.pid


@contextlib.contextmanager
def supergateway(transport: str, logs: Path) -> Iterator[tuple[str, int]]:
    """supergateway bridging server-everything to `sse` or (stateful) `streamableHttp`."""
    port = free_port()
    argv = [str(SUPERGATEWAY), "--stdio", f"{EVERYTHING} stdio", "--port", str(port), "--logLevel", "none"]
    if transport == "streamableHttp":
        argv += ["--outputTransport", "streamableHttp", "--stateful"]
    with process_group(argv, logs / f"supergateway-{transport}.log", tcp_ready(port), "supergateway") as proc:
        yield f"http://127.0.0.1:{port}", proc.pid


@contextlib.contextmanager
def native_http(transport: str, logs: Path) -> Iterator[tuple[str, int]]:
    """server-everything in its own `sse` or `streamableHttp` mode (it listens on every interface)."""
    port = free_port()
    argv = ["env", f"PORT={port}", str(EVERYTHING), transport]
    with process_group(argv, logs / f"everything-{transport}.log", tcp_ready(port), "server-everything") as proc:
        yield f"http://127.0.0.1:{port}", proc.pid


@contextlib.contextmanager
def mcp_proxy(venv: Path, logs: Path) -> Iterator[tuple[str, int]]:
    """mcp-proxy (from its own venv) bridging server-everything; serves /sse and /mcp/ together."""
    port = free_port()
    argv = [str(venv / "bin" / "mcp-proxy"), "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING",
            "--", str(EVERYTHING), "stdio"]
    base = f"http://127.0.0.1:{port}"
    with process_group(argv, logs / "mcp-proxy.log", http_ready(base + "/status"), "mcp-proxy") as proc:
        yield base, proc.pid


def tool_versions() -> dict[str, str]:
    """Versions of the server and the npm bridge actually installed, for the results' header."""
    def npm_version(package: str) -> str:
        return json.loads((ROOT / "node_modules" / package / "package.json").read_text())["version"]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {"node": node, "server-everything": npm_version("@modelcontextprotocol/server-everything"),
            "supergateway": npm_version("supergateway")}


def ensure_mcp_proxy(venv: Path) -> Path:
    """mcp-proxy in a venv of its own: it pins the 1.x SDK, the project venv has 2.x."""
    exe = venv / "bin" / "mcp-proxy"
    if not exe.exists():
        print(f"installing mcp-proxy=={MCP_PROXY_VERSION} (mcp=={MCP_PROXY_SDK}) into {venv} ...", file=sys.stderr,
              flush=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"mcp-proxy=={MCP_PROXY_VERSION}",
                        f"mcp=={MCP_PROXY_SDK}"], check=True)
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    if MCP_PROXY_VERSION not in version:
        raise RuntimeError(f"{exe} is {version.strip()!r}, expected {MCP_PROXY_VERSION}; remove {venv} to reinstall")
    return exe
