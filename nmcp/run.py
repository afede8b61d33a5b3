"""`nmcp gateway` and `nmcp up`: the gateway under gunicorn (one gevent worker), one system.

`nmcp up PATHS` is `nmcp gateway --runtime local -f PATHS` with the options of a local run
(default namespace, live reload, log format). Options become `NMCP_*` environment variables
(the gateway's settings table, gateway/config.py), read once at start-up by gunicorn.conf.py and
by `nmcp.serve:create_app()`, the app it names. This module imports only click and the settings
table: gevent must patch the worker before anything else loads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from gateway.config import Config
from nmcp.model import settings

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def default_runtime() -> str:
    """`kubernetes` inside a cluster (a Pod with a service account), `local` anywhere else."""
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.exists()
    return "kubernetes" if in_cluster else "local"


def _bind(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    return value


def gunicorn_argv() -> list[str]:
    """The gunicorn command line: the gateway's gunicorn.conf.py, which names the app and reads the bind."""
    import gateway  # noqa: PLC0415 - only to find its config file; imports nothing heavy

    # __path__, not __file__: an editable install may present the package as a namespace package.
    config = Path(next(iter(gateway.__path__))) / "gunicorn.conf.py"
    return [sys.executable, "-m", "gunicorn", "--config", str(config)]


def serve(**values: Any) -> None:
    """Become gunicorn serving the gateway with these settings (gateway/config.py field values)."""
    env = {**os.environ, **settings.environment(Config, **values)}
    Config.from_env(env)  # a bad value stops here, named, before gunicorn starts
    argv = gunicorn_argv()
    os.execve(argv[0], argv, env)  # gunicorn takes over the process: signals and Ctrl-C reach it directly


def _paths(paths: tuple[str, ...]) -> tuple[str, ...] | None:
    return tuple(str(Path(p).resolve()) for p in paths) or None


BIND = click.option("--bind", default="127.0.0.1:8080", show_default=True, callback=_bind, metavar="HOST:PORT",
                    help="Address to listen on. Every server is at http://HOST:PORT/api/v1/servers/NAME/mcp "
                         "(Streamable HTTP) and .../sse (HTTP+SSE).")


@click.command(epilog=settings.help_text(Config))
@BIND
@click.option("--runtime", type=click.Choice(["local", "kubernetes"]), default=default_runtime,
              show_default="kubernetes in a cluster, else local",
              help="Where servers run: local processes under the pools' limits (the `nmcp up` system), "
                   "or Kubernetes Pods made by the operator's hooks.")
@click.option("-f", "--manifests", multiple=True, type=click.Path(exists=True), metavar="PATH",
              help="MCPServer and MCPPool manifest file or directory (local runtime; repeatable).")
@click.option("--namespace", multiple=True, metavar="NAMESPACE",
              help="Namespace to serve (kubernetes runtime; repeatable; default: the current one).")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="Kubeconfig for the kubernetes runtime outside a cluster (default: $KUBECONFIG, ~/.kube/config).")
@click.option("--context", metavar="NAME", help="Kubeconfig context to use (default: the current one).")
@click.option("--allowed-origin", "allowed_origins", multiple=True, metavar="ORIGIN",
              help="Browser Origin allowed besides localhost ones (repeatable; '*' allows any).")
def gateway(*, bind: str, runtime: str, manifests: tuple[str, ...], namespace: tuple[str, ...],
            kubeconfig: str | None, context: str | None, allowed_origins: tuple[str, ...]) -> None:
    """Serve every MCP server over SSE and Streamable HTTP from one HTTP endpoint."""
    serve(bind=bind, runtime=runtime, manifests=_paths(manifests), namespaces=namespace or None,
          kubeconfig=str(Path(kubeconfig).resolve()) if kubeconfig else None, kube_context=context,
          allowed_origins=allowed_origins or None)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@BIND
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

    The same system as `nmcp gateway --runtime local -f PATHS`, and the same YAML you would
    `kubectl apply`. Each document is validated against the CRD schema: a bad one is logged with
    its file, document number and field, and the others still run. A server whose pool is not
    declared is Degraded (PoolNotFound), except pool `default`, which is provided (maxActive 10,
    maxIdle 2) when no manifest declares it. Servers start on first use (a client connecting,
    or POST /api/v1/servers/NAME/request) and stop after their idle timeout, within their pool's
    maxActive and maxIdle, exactly as the cluster's hooks decide. Commands are looked up on PATH,
    with the directory of this Python (e.g. the venv's bin) first.

    Manifests are re-read when files under PATHS are added, edited or removed (see
    --reload-interval): a new server appears Idle, an edited one runs its new spec (a running
    process is replaced), a removed one is stopped. SIGHUP restarts the gateway worker:
    everything is reloaded, running servers stop.

    Nothing is kept across restarts: every server starts Idle. Ctrl-C stops every server process.
    """
    serve(bind=bind, runtime="local", manifests=_paths(paths), log_format=log_format, up_namespace=namespace,
          up_poll_interval=reload_interval)
