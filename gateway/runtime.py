"""The seam between the gateway and wherever servers run.

The session bridge and the HTTP routes talk only to a `Runtime`; it says which servers exist,
signals demand, waits for a server to be ready, and hands over a connection to it. Three
runtimes implement it: `local` (the gateway starts subprocesses itself), `embedded` (`nmcp up`:
the hooks' sync logic decides, local processes run), and `kubernetes` (Pods made by the hooks,
stdio over `pods/attach`, HTTP through the server's Service).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from nmcp.model.resources import Server


@dataclass(frozen=True)
class ServerRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServerState:
    """What the REST API shows of a server, and what the bridge needs to reach it."""

    server: Server
    phase: str  # Idle, Requested, Starting, Ready, Stopping, Degraded
    reason: str = ""
    message: str = ""
    sessions: int = 0
    last_active_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> ServerRef:
        return ServerRef(self.server.namespace, self.server.name)


class RuntimeError_(Exception):
    """Base of runtime errors; `code` is the stable machine-readable code of the JSON error body."""

    code = "runtime_error"
    http_status = 502

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class ServerNotFound(RuntimeError_):
    code = "server_not_found"
    http_status = 404


class AmbiguousServer(RuntimeError_):
    """A bare name that exists in several served namespaces."""

    code = "ambiguous_server"
    http_status = 409


class StartFailed(RuntimeError_):
    """The server did not become ready: `reason` says why (PoolFull, ImagePullFailing, StartTimeout,
    NotRunnable, CrashLoopBackOff, ...), in the words of the server's Ready condition."""

    code = "server_start_failed"
    http_status = 503


class Forbidden(RuntimeError_):
    """The runtime's credentials lack a permission; the message names it."""

    code = "forbidden"
    http_status = 502


def pick(refs: Iterable[ServerRef], name: str, namespace: str | None = None) -> ServerRef:
    """The one server among `refs` that a URL's name (and namespace, if any) names."""
    matches = [ref for ref in refs if ref.name == name and namespace in (None, ref.namespace)]
    if not matches:
        where = f" in namespace {namespace}" if namespace else ""
        raise ServerNotFound(f"no MCPServer named {name!r}{where}")
    if len(matches) > 1:
        spaces = ", ".join(sorted(r.namespace for r in matches))
        raise AmbiguousServer(f"{name!r} exists in several namespaces ({spaces}); "
                              f"use /api/v1/namespaces/<namespace>/servers/{name}")
    return matches[0]


class StdioConnection(Protocol):
    """A bidirectional newline-delimited JSON-RPC stream to one server process.

    Implementations are gevent-cooperative: `receive` blocks only the calling greenlet.
    """

    def send(self, message: bytes) -> None:
        """Write one JSON-RPC message (no embedded newline); the newline is added here."""

    def receive(self) -> bytes | None:
        """The next stdout line without its newline; None once the stream has ended."""

    def close(self) -> None:
        """End the connection (and the process, where the runtime owns it)."""


@dataclass(frozen=True)
class HttpEndpoint:
    """An HTTP MCP server: `url` is its full endpoint (…/sse or …/mcp)."""

    url: str
    transport: str  # "sse" or "streamable-http"


class Runtime(Protocol):
    # True when the runtime runs instances of isolated servers (`isolation: session`): every
    # method below that takes an `instance` key then acts on that instance's own Pod, which the
    # pool admits like any other. The gateway reads it with getattr(..., False): a runtime
    # without it serves every session of such a server from one upstream.
    isolates_sessions: bool

    def list_servers(self) -> list[ServerState]:
        """Every server this gateway serves."""

    def resolve(self, name: str, namespace: str | None = None) -> ServerRef:
        """The server a URL names; ServerNotFound or AmbiguousServer."""

    def get(self, ref: ServerRef) -> ServerState:
        """The server's current state; ServerNotFound."""

    def request(self, ref: ServerRef, instance: str | None = None, *, spare: bool = False) -> None:
        """Signal demand: the server (or one instance of it) should run (never lost, even while it is
        Stopping). A `spare` instance is started for no client yet; requesting it again without
        `spare` hands it to one."""

    def release(self, ref: ServerRef, instance: str) -> None:
        """The instance's client is gone: its Pod stops now."""

    def shutdown(self, ref: ServerRef) -> None:
        """Ask for the server to stop."""

    def touch(self, ref: ServerRef, sessions: int, instance: str | None = None) -> None:
        """Record activity (of the server, or of one instance) and the number of open client
        sessions (rate-limited by the runtime)."""

    def wait_ready(self, ref: ServerRef, timeout: float, instance: str | None = None) -> ServerState:
        """Block (the greenlet) until the server (or the instance) is Ready; StartFailed naming the reason otherwise."""

    def connect(self, ref: ServerRef, instance: str | None = None) -> StdioConnection | HttpEndpoint:
        """A connection to a Ready server, or to the Pod of one of its instances."""

    def logs(self, ref: ServerRef, follow: bool) -> Iterator[str]:
        """The server's stderr / container log lines."""

    def ready(self) -> tuple[bool, str]:
        """Whether the runtime itself works (for /readyz), with a reason when not."""

    def close(self) -> None:
        """Stop everything the runtime started."""
