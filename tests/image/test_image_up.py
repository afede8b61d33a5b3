"""What the image is, as `podman images` and `podman run` show it, and `nmcp up` inside it.

The image the chart deploys holds nmcp and its dependencies only: in a cluster, MCP servers run in
their own images. `nmcp up` in a container starts servers as processes of that container, so it
serves only what the image holds: built with `EXTRA_PACKAGES=mcp-server-time==...` it serves
examples/local/time.yaml; examples/local/everything.yaml needs Node, which no variant holds, and
shows as Degraded with the reason.
"""

from __future__ import annotations

from typing import Any

import anyio
import requests
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.image.podman import PROJECT, RUNTIME, inspect, podman, run, wait_answering
from tests.support import ROOT, free_port, wait_for

# The settings the chart gives its containers (tests/image/test_image_chart.py runs the chart's own).
HARDENED = ["--user", "10001:10001", "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777,size=16m",
            "--cap-drop=ALL", "--security-opt", "no-new-privileges"]


def test_the_image_is_small_non_root_and_runs_nmcp(image: str) -> None:
    config = inspect(image)
    assert config["Config"]["User"] == "10001:10001"
    assert config["Config"]["Entrypoint"] == ["nmcp"]
    assert config["Size"] < 200 * 1000 * 1000, f"the image grew to {config['Size'] / 1e6:.0f} MB"
    version = podman("run", "--rm", "--pull=never", "--network", "none", *RUNTIME, *HARDENED, image, "--version").stdout
    assert version.strip() == f"nmcp, version {PROJECT['version']}"


async def current_time(url: str) -> str:
    async with Client(streamable_http_client(url), mode="legacy") as client:
        answer = await client.call_tool("get_current_time", {"timezone": "UTC"})
        return answer.content[0].text  # type: ignore[union-attr]


def test_nmcp_up_in_the_image_serves_the_examples_that_need_no_node(up_image: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    examples = ["--volume", f"{ROOT / 'examples' / 'local'}:/examples:ro"]
    with run(up_image, ["up", "/examples", "--bind", f"127.0.0.1:{port}"], [*HARDENED, *examples]) as box:
        wait_answering(box, f"{base}/readyz")
        listed = requests.get(f"{base}/api/v1/servers", timeout=10).json()["servers"]
        assert sorted((s["name"], s["phase"]) for s in listed) == [("everything", "Idle"), ("time", "Idle")]
        assert '"timezone": "UTC"' in anyio.run(current_time, f"{base}/api/v1/servers/time/mcp")
        requests.post(f"{base}/api/v1/servers/everything/request", timeout=10).raise_for_status()

        def degraded() -> dict[str, Any] | None:
            server = requests.get(f"{base}/api/v1/servers/everything", timeout=10).json()
            return server if server["phase"] == "Degraded" else None

        assert "cannot run 'npx'" in wait_for(degraded, "everything to be Degraded")["message"]
