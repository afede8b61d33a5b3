"""A runtime factory named by `NMCP_RUNTIME=module:function`, as `nmcp up` names its own: the local
runtime over one server declared in code instead of manifests."""

from __future__ import annotations

from gateway.config import Config
from gateway.runtimes.local import LocalRuntime
from nmcp.model.resources import read_server
from tests.support import VENV_BIN


def create_runtime(config: Config) -> LocalRuntime:
    server = read_server({"metadata": {"name": "clock", "namespace": "tools"},
                          "spec": {"command": [str(VENV_BIN / "mcp-server-time")]}})
    return LocalRuntime([server], stop_grace=config.stop_grace)
