"""`nmcp operator`: serve the Metacontroller webhooks under gunicorn.

The command replaces itself with gunicorn (`exec`), so gunicorn's master is the process that
receives the container's signals and nothing of click stays in between. It imports only click:
`nmcp --help` must not pay for (or depend on) Flask or gunicorn.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from hooks.settings import OperatorSettings
from nmcp.model import settings

CONFIG = Path(__file__).with_name("gunicorn.conf.py")
APP = "hooks.app:create_app()"


def _bind(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT such as 0.0.0.0:8000, got {value!r}")
    return value


def gunicorn_argv(bind: str | None, workers: int | None) -> list[str]:
    """The gunicorn command line; options left unset fall back to gunicorn.conf.py (and its NMCP_ env)."""
    argv = [sys.executable, "-m", "gunicorn", "--config", str(CONFIG)]
    if bind:
        argv += ["--bind", bind]
    if workers:
        argv += ["--workers", str(workers)]
    return [*argv, APP]


@click.command(epilog=settings.help_text(OperatorSettings))
@click.option("--bind", callback=_bind, metavar="HOST:PORT",
              help=f"Address to listen on. Default {OperatorSettings.bind} "
                   f"(env {settings.env_name(OperatorSettings, 'bind')}).")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="gunicorn worker processes. Default: one per CPU, at least 2 "
                   f"(env {settings.env_name(OperatorSettings, 'workers')}).")
def operator(bind: str | None, workers: int | None) -> None:
    """Serve the MCPPool and MCPServer webhooks for Metacontroller.

    Routes: POST /pool/{sync,finalize,customize} and /server/{sync,finalize,customize};
    GET /healthz and /readyz for probes. Listens on 0.0.0.0:8000 unless told otherwise,
    with gunicorn's gthread workers (see hooks/gunicorn.conf.py).
    """
    argv = gunicorn_argv(bind, workers)
    os.execv(argv[0], argv)
