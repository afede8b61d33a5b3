"""The gateway's settings table: every `NMCP_*` variable the gateway, its gunicorn and its runtimes
read, with its type, default and meaning, declared once (see nmcp.model.settings).

Read once, when the process starts (`Config.from_env`); nothing else reads the environment. The
README's settings table and `nmcp gateway --help` are made from, or tested against, this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nmcp.model import settings as s
from nmcp.model.settings import SettingError as ConfigError
from nmcp.model.settings import setting

__all__ = ["Config", "ConfigError"]

LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Config:
    # -- where servers come from
    runtime: str = setting(
        "NMCP_RUNTIME", "local", "`local` (servers as local processes, the `nmcp up` system) or `kubernetes` "
        "(Pods made by the operator's hooks)", s.choice("local", "kubernetes"))
    manifests: tuple[str, ...] = setting(
        "NMCP_MANIFESTS", (), "MCPServer and MCPPool manifest files or directories, `os.pathsep`-separated "
        "(local)", s.paths)
    up_namespace: str = setting(
        "NMCP_UP_NAMESPACE", "default", "namespace of manifests that name none (local)", s.text)
    up_poll_interval: float = setting(
        "NMCP_UP_POLL_INTERVAL", 1.0, "seconds between checks of the manifest files for changes; 0 turns "
        "live reload off (local)", s.seconds_or_zero)
    log_lines: int = setting(
        "NMCP_LOG_LINES", 1000, "log lines kept per local server for `GET .../logs`", s.count)
    namespaces: tuple[str, ...] = setting(
        "NMCP_NAMESPACES", (), "namespaces to serve, comma-separated; `*` for all (kubernetes)", s.names,
        shown="(the gateway's own)")
    kubeconfig: str = setting(
        "NMCP_KUBECONFIG", "", "kubeconfig file; else `KUBECONFIG`, the in-cluster service account, "
        "`~/.kube/config` (kubernetes)", s.text)
    kube_context: str = setting(
        "NMCP_KUBE_CONTEXT", "", "kubeconfig context (kubernetes)", s.text, shown="(the current one)")
    kube_write_interval: float = setting(
        "NMCP_KUBE_WRITE_INTERVAL", 20.0, "seconds between coalesced activity writes per server (kubernetes)",
        s.seconds)
    kube_watch_timeout: float = setting(
        "NMCP_KUBE_WATCH_TIMEOUT", 300.0, "seconds one watch request stays open before it is resumed "
        "(kubernetes)", s.seconds)
    kube_ping_interval: float = setting(
        "NMCP_KUBE_PING_INTERVAL", 20.0, "seconds between keep-alive pings on an attach; silence for two "
        "means dead (kubernetes)", s.seconds)
    kube_sync_timeout: float = setting(
        "NMCP_KUBE_SYNC_TIMEOUT", 30.0, "seconds start-up waits for the first list of servers (kubernetes)",
        s.seconds)
    # -- clients
    keepalive: float = setting(
        "NMCP_KEEPALIVE", 15.0, "seconds between SSE keep-alive comments; also how long a Streamable HTTP "
        "response may wait to be plain JSON before it turns into an SSE stream", s.seconds)
    session_timeout: float | None = setting(
        "NMCP_SESSION_TIMEOUT", None, "seconds after which a client session nobody uses (no open stream, no "
        "request) is closed; unset: the server's idle timeout, at least 60 s", s.seconds,
        shown="(the server's)")
    max_sessions: int = setting(
        "NMCP_MAX_SESSIONS", 1000, "client sessions (SSE and Streamable HTTP) one server may hold; beyond it a "
        "new session gets 429 with `Retry-After`", s.count)
    allowed_origins: tuple[str, ...] = setting(
        "NMCP_ALLOWED_ORIGINS", (), "browser Origins allowed besides localhost ones, comma-separated; `*` "
        "allows any. Checked on the MCP endpoints and on every state-changing request", s.names)
    allowed_hosts: tuple[str, ...] = setting(
        "NMCP_ALLOWED_HOSTS", (), "names clients may reach the gateway by (the `Host` header) besides IP "
        "addresses and, when bound to loopback, `localhost`; comma-separated, `.example.com` for a whole "
        "domain, `*` for any. Others get 403 on every endpoint", s.names)
    max_body: int = setting(
        "NMCP_MAX_BODY", 32 * 1024 * 1024, "largest request body in bytes (a 16 MB MCP message and its JSON "
        "escaping pass); a larger one gets 413 before it is read", s.count)
    max_message: int = setting(
        "NMCP_MAX_MESSAGE", 8 * 1024 * 1024, "largest message in bytes written to an upstream server (servers "
        "on the TypeScript SDK exit on a stdio line over 10 MiB); a larger request gets a JSON-RPC error",
        s.count)
    worker_connections: int = setting(
        "NMCP_WORKER_CONNECTIONS", 16384, "connections held at once (idle streams included); the open-file "
        "limit is raised to fit at start where the system allows it", s.count)
    header_timeout: float = setting(
        "NMCP_HEADER_TIMEOUT", 10.0, "seconds a client has to send a complete request head; a slower one is "
        "disconnected", s.seconds)
    # -- HTTP upstream servers
    upstream_connect_timeout: float = setting(
        "NMCP_UPSTREAM_CONNECT_TIMEOUT", 10.0, "seconds to connect to an HTTP server and get its SSE endpoint "
        "or stream", s.seconds)
    upstream_request_timeout: float = setting(
        "NMCP_UPSTREAM_REQUEST_TIMEOUT", 300.0, "seconds a request to an HTTP server may wait for its answer",
        s.seconds)
    upstream_close_timeout: float = setting(
        "NMCP_UPSTREAM_CLOSE_TIMEOUT", 5.0, "seconds closing an HTTP server session waits for its DELETE and "
        "readers", s.seconds)
    upstream_reconnect_delay: float = setting(
        "NMCP_UPSTREAM_RECONNECT_DELAY", 1.0, "seconds before reopening a GET stream the server ended, unless "
        "it sent `retry`", s.seconds)
    # -- identity, access and audit (README: Identity and access)
    auth: str = setting(
        "NMCP_AUTH", "auto", "`auto`: bearer tokens required once an issuer or TokenReview is configured; "
        "`none`: no authentication even on a non-loopback address (else refused at start)", s.choice("auto", "none"))
    auth_issuer: str = setting(
        "NMCP_AUTH_ISSUER", "", "OAuth issuer whose JWT access tokens are accepted (its metadata and JWKS are "
        "discovered from it)", s.text)
    auth_resource_url: str = setting(
        "NMCP_AUTH_RESOURCE_URL", "", "the gateway's public base URL: a server's resource (token audience) is "
        "this plus its MCP path", s.text, shown="(from the request's Host)")
    auth_audiences: tuple[str, ...] = setting(
        "NMCP_AUTH_AUDIENCES", (), "audiences accepted on every server besides its own resource URL, "
        "comma-separated", s.names)
    auth_scopes: tuple[str, ...] = setting(
        "NMCP_AUTH_SCOPES", (), "scopes a token must hold, comma-separated (else 403 insufficient_scope)", s.names)
    auth_algorithms: tuple[str, ...] = setting(
        "NMCP_AUTH_ALGORITHMS", ("RS256", "ES256", "PS256", "EdDSA"), "JWT signature algorithms accepted "
        "(asymmetric only), comma-separated", s.names)
    auth_tokenreview_audiences: tuple[str, ...] = setting(
        "NMCP_AUTH_TOKENREVIEW_AUDIENCES", (), "audiences of Kubernetes ServiceAccount tokens accepted through "
        "TokenReview, comma-separated; empty: TokenReview off", s.names)
    audit: str = setting(
        "NMCP_AUDIT", "", "audit events (one JSON line per MCP request and REST operation): a file path, or `-` "
        "for stdout; empty: off", s.text)
    audit_arguments: bool = setting(
        "NMCP_AUDIT_ARGUMENTS", False, "include tool arguments in audit events", s.flag)
    # -- the process
    bind: str = setting("NMCP_BIND", "127.0.0.1:8080", "address the gateway listens on", s.address)
    log_level: str = setting(
        "NMCP_LOG_LEVEL", "info", "log level", s.choice("debug", "info", "warning", "error", "critical"))
    access_log: bool = setting(
        "NMCP_ACCESS_LOG", False, "one access log line per HTTP request on stdout (gunicorn's format); off, "
        "MCP calls and REST operations are still recorded by the audit stream (NMCP_AUDIT) and /metrics", s.flag)
    log_format: str = setting(
        "NMCP_LOG_FORMAT", "text", "`text` or `json` lines for server lifecycle events (local)", s.choice(*LOG_FORMATS))
    graceful_timeout: float = setting(
        "NMCP_GRACEFUL_TIMEOUT", 20.0, "seconds a stopping gateway gives open requests", s.seconds)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        return s.from_env(cls, environ)

    def env_name(self, name: str) -> str:
        return s.env_name(Config, name)
