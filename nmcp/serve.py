"""The gateway app with its runtime, wired by import: what gunicorn serves (`nmcp.serve:create_app()`).

`nmcp gateway` and `nmcp up` both run this app under gateway/gunicorn.conf.py. `NMCP_RUNTIME`
picks where servers run: `local` is the embedded runtime (`nmcp.embedded`: the hooks' lifecycle,
pools included, over local processes), `kubernetes` is `gateway.runtimes.kubernetes` (Pods made by
the hooks in a cluster). This module is the one place the gateway meets a runtime from above it:
the gateway package never imports upward.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from gateway import app as gateway_app
from gateway.config import Config
from gateway.runtime import Runtime
from gateway.runtimes import kubernetes
from nmcp.embedded import runtime as embedded

RUNTIMES: dict[str, Callable[[Config], Runtime]] = {
    "local": embedded.create_runtime,
    "kubernetes": kubernetes.create_runtime,
}


def create_app(config: Config | None = None) -> Flask:
    """The gateway app over the runtime its settings name (`config`, else the `NMCP_*` environment)."""
    config = config if config is not None else Config.from_env()
    return gateway_app.create_app(config, RUNTIMES[config.runtime](config))  # Config checked the name
