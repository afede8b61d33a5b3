"""`nmcp gateway`: run the gateway app under gunicorn with the gevent worker.

Options become `NMCP_*` environment variables that the app reads once at start-up, so the same
app runs unchanged under a bare `gunicorn "gateway.app:create_app()"` with the env set by hand.
This module imports only click: gevent must patch the process before anything else loads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def default_runtime() -> str:
    """`kubernetes` inside a cluster (a Pod with a service account), `local` anywhere else."""
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.exists()
    return "kubernetes" if in_cluster else "local"


@click.command()
@click.option("--bind", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Address to listen on.")
@click.option("--runtime", default=default_runtime, show_default="kubernetes in a cluster, else local",
              metavar="local|kubernetes|MODULE:FUNCTION",
              help="Where servers run: local subprocesses, Kubernetes Pods, or a runtime factory.")
@click.option("-f", "--manifests", multiple=True, type=click.Path(exists=True), metavar="PATH",
              help="MCPServer manifest file or directory (local runtime; repeatable).")
@click.option("--namespace", multiple=True, metavar="NAMESPACE",
              help="Namespace to serve (kubernetes runtime; repeatable; default: the current one).")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="Kubeconfig for the kubernetes runtime outside a cluster (default: $KUBECONFIG, ~/.kube/config).")
@click.option("--context", metavar="NAME", help="Kubeconfig context to use (default: the current one).")
@click.option("--start-timeout", type=float, metavar="SECONDS",
              help="How long a client is held while its server starts (default 120).")
@click.option("--allowed-origin", "allowed_origins", multiple=True, metavar="ORIGIN",
              help="Browser Origin allowed besides localhost ones (repeatable; '*' allows any).")
def gateway(*, bind: str, runtime: str, manifests: tuple[str, ...], namespace: tuple[str, ...],
            kubeconfig: str | None, context: str | None, start_timeout: float | None,
            allowed_origins: tuple[str, ...]) -> None:
    """Serve every MCP server over SSE and Streamable HTTP from one HTTP endpoint."""
    env = dict(os.environ, NMCP_RUNTIME=runtime)
    if manifests:
        env["NMCP_MANIFESTS"] = os.pathsep.join(str(Path(p).resolve()) for p in manifests)
    if namespace:
        env["NMCP_NAMESPACES"] = ",".join(namespace)
    if kubeconfig:
        env["NMCP_KUBECONFIG"] = str(Path(kubeconfig).resolve())
    if context:
        env["NMCP_KUBE_CONTEXT"] = context
    if start_timeout is not None:
        env["NMCP_START_TIMEOUT"] = str(start_timeout)
    if allowed_origins:
        env["NMCP_ALLOWED_ORIGINS"] = ",".join(allowed_origins)
    config = Path(__file__).with_name("gunicorn.conf.py")
    argv = [sys.executable, "-m", "gunicorn", "--config", str(config), "--bind", bind, "gateway.app:create_app()"]
    os.execve(sys.executable, argv, env)  # gunicorn takes over the process: signals reach it directly
