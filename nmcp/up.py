"""`nmcp up`: run MCP servers from manifests on this machine, behind the gateway, no cluster needed.

The command runs the gateway app under gunicorn (one gevent worker) with the embedded runtime
(`nmcp.embedded.runtime:create_runtime`), which loads the manifests and starts the reconcile
loop inside the worker. Options become `NMCP_*` environment variables read once at start-up.
This module imports only click: gevent must patch the worker before anything else loads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

RUNTIME = "nmcp.embedded.runtime:create_runtime"
APP = "gateway.app:create_app()"


def _bind(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    return value


def gunicorn_argv(bind: str) -> list[str]:
    """The gunicorn command line: the gateway's own gunicorn.conf.py, the gateway app."""
    import gateway  # noqa: PLC0415 - only to find its config file; imports nothing heavy

    # __path__, not __file__: an editable install may present the package as a namespace package.
    config = Path(next(iter(gateway.__path__))) / "gunicorn.conf.py"
    return [sys.executable, "-m", "gunicorn", "--config", str(config), "--bind", bind, APP]


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--bind", default="127.0.0.1:8080", show_default=True, callback=_bind, metavar="HOST:PORT",
              help="Address the gateway listens on. Every server is at "
                   "http://HOST:PORT/api/v1/servers/NAME/mcp (Streamable HTTP) and .../sse (HTTP+SSE).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one readable line per event; json: one JSON object per line, with fields such as "
                   "event, server, from, to, reason.")
@click.option("--namespace", default="default", show_default=True, metavar="NAMESPACE",
              help="Namespace of manifests that do not set metadata.namespace.")
@click.option("--reload-interval", type=click.FloatRange(min=0), default=1.0, show_default=True, metavar="SECONDS",
              help="How often the manifest files are checked for changes (added, edited, removed files "
                   "apply while running); 0 turns live reload off.")
def up(*, paths: tuple[str, ...], bind: str, log_format: str, namespace: str, reload_interval: float) -> None:
    """Run the MCPServers and MCPPools in PATHS (YAML files or directories) on this machine.

    The same YAML you would `kubectl apply`. Each document is validated against the CRD schema:
    a bad one is logged with its file, document number and field, and the others still run.
    Servers start on first use (a client connecting, or POST /api/v1/servers/NAME/request) and
    stop after their idle timeout, within their pool's maxActive and maxIdle, exactly as the
    cluster's hooks decide. Commands are looked up on PATH, with the directory of this Python
    (e.g. the venv's bin) first.

    Manifests are re-read when files under PATHS are added, edited or removed (see
    --reload-interval): a new server appears Idle, an edited one runs its new spec (a running
    process is replaced), a removed one is stopped. SIGHUP restarts the gateway worker:
    everything is reloaded, running servers stop.

    Nothing is kept across restarts: every server starts Idle. Ctrl-C stops every server process.
    """
    env = dict(os.environ)
    env.update({
        "NMCP_RUNTIME": RUNTIME,
        "NMCP_MANIFESTS": os.pathsep.join(str(Path(p).resolve()) for p in paths),
        "NMCP_LOG_FORMAT": log_format,
        "NMCP_UP_NAMESPACE": namespace,
        "NMCP_UP_POLL_INTERVAL": str(reload_interval),
    })
    argv = gunicorn_argv(bind)
    os.execve(argv[0], argv, env)  # gunicorn takes over the process: Ctrl-C reaches it directly
