"""Pick the runtime the gateway serves from: `local`, `kubernetes`, or any `module:function`.

A dotted `module:function` lets another program run this same app with its own runtime; e.g.
`nmcp up` sets `NMCP_RUNTIME=nmcp.up:create_runtime`. Every factory is called as
`function(config)` with the gateway's `Config` and returns a `Runtime`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.runtime import Runtime

FACTORIES = {
    "local": "gateway.runtimes.local:create_runtime",
    "kubernetes": "gateway.runtimes.kubernetes:create_runtime",
}


def create_runtime(name: str, config: Config) -> Runtime:
    """The runtime called `name`; ValueError naming the problem when there is none."""
    target = FACTORIES.get(name, name)
    module_name, _, function_name = target.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"unknown runtime {name!r}: use local, kubernetes or module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"runtime {name!r}: cannot import {module_name}: {err}") from err
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise ValueError(f"runtime {name!r}: {module_name} has no function {function_name}")
    return factory(config)
