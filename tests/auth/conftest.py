"""Fixtures of the identity tests: a real issuer (oidc-provider) and a gateway that trusts it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.gateway.conftest import HERE, PYTHON, Gateway, pool, run_gateway, server, write_manifests
from tests.support.oidc import Issuer, running_issuer

CLIENTS = ("alice", "bob")
TEST_SERVER = [PYTHON, str(HERE / "stdio_server.py")]


def access_policy(name: str, subjects: list[dict[str, object]], servers: list[str],
                  **spec: object) -> dict[str, object]:
    return {"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPAccessPolicy", "metadata": {"name": name},
            "spec": {"subjects": subjects, "servers": servers, **spec}}


def servers() -> list[dict[str, object]]:
    """Two servers, each open to both test clients with every tool and operation."""
    return [pool(maxActive=10, maxIdle=10), server("test", TEST_SERVER), server("other", TEST_SERVER),
            access_policy("everyone", [{"user": c} for c in CLIENTS], ["*"],
                          operations=["request", "shutdown", "logs"])]


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    with running_issuer(tmp_path_factory.mktemp("issuer"), CLIENTS) as running:
        yield running


@contextlib.contextmanager
def authenticated_gateway(directory: Path, issuer: Issuer, docs: list[dict[str, object]],
                          **env: str) -> Iterator[Gateway]:
    manifests = write_manifests(directory, docs)
    with run_gateway(manifests, NMCP_AUTH_ISSUER=issuer.url, NMCP_AUTH_SCOPES="mcp",
                     NMCP_AUDIT=str(directory / "audit.jsonl"), **env) as gw:
        yield gw


@contextlib.asynccontextmanager
async def connect(url: str, token: str | None) -> AsyncIterator[Client]:
    """An initialized SDK 2.x client session over Streamable HTTP (or HTTP+SSE for an /sse URL)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if url.endswith("/sse"):
        async with Client(sse_client(url, headers=headers), mode="legacy") as client:
            yield client
        return
    async with create_mcp_http_client(headers=headers) as http, \
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        yield client
