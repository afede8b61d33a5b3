"""Clients of the other protocol era: the 1.x Python SDK (its own venv) and the MCP Inspector CLI."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.gateway.conftest import HERE, Gateway
from tests.support import NODE_BIN, ROOT

V1_PYTHON = ROOT / ".venv-mcp1" / "bin" / "python"


@pytest.mark.parametrize("transport", ["sse", "http"])
def test_the_1x_sdk_client_works_through_the_gateway(gateway: Gateway, transport: str) -> None:
    url = gateway.sse("everything") if transport == "sse" else gateway.mcp("everything")
    done = subprocess.run([str(V1_PYTHON), str(HERE / "client_v1.py"), url, transport],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["protocolVersion"] in ("2025-06-18", "2025-11-25", "2025-03-26", "2024-11-05")
    assert seen["server"] == "mcp-servers/everything"
    assert {"echo", "get-sum", "trigger-sampling-request"} <= set(seen["tools"])
    assert seen["echo"] == "Echo: from 1.x"
    assert seen["resource"].startswith("#")
    assert "Lyon" in seen["prompt"]
    assert "completed" in seen["longRun"].lower()
    assert seen["progress"] == [1, 2, 3]
    assert "forty-two" in seen["sampled"]


def test_the_inspector_cli_lists_tools(gateway: Gateway) -> None:
    done = subprocess.run([str(NODE_BIN / "mcp-inspector"), "--cli", gateway.mcp("time"), "--transport", "http",
                           "--method", "tools/list"], capture_output=True, text=True, timeout=120, check=False,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    tools = json.loads(done.stdout)["tools"]
    assert "get_current_time" in {t["name"] for t in tools}
