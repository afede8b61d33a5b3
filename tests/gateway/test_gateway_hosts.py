"""DNS rebinding: a request whose Host is not a name of the gateway is refused on every endpoint,
REST included, even without an Origin (a rebound page's plain GET carries none)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from gateway.hosts import host_allowed, is_loopback
from tests.gateway.conftest import Gateway, run_gateway, server, write_manifests
from tests.support import VENV_BIN

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def call(gateway: Gateway, method: str, path: str, host: str) -> requests.Response:
    body = json.dumps(INIT) if path.endswith("/mcp") else None
    return requests.request(method, gateway.url + path, data=body, timeout=30, stream=True,
                            headers={**MCP_HEADERS, "Host": host})


ENDPOINTS = [("GET", "/api/v1/servers"), ("GET", "/api/v1/servers/time"), ("GET", "/api/v1/servers/time/logs"),
             ("GET", "/api/v1/servers/time/sse"), ("POST", "/api/v1/servers/time/mcp"), ("GET", "/healthz"),
             ("GET", "/openapi.json")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_foreign_host_is_refused_everywhere(gateway: Gateway, method: str, path: str) -> None:
    with call(gateway, method, path, "rebound.attacker.example") as response:
        assert response.status_code == 403
        error = response.json()["error"]
    assert error["code"] == "host_not_allowed"
    assert "rebound.attacker.example" in error["message"]
    assert "NMCP_ALLOWED_HOSTS" in error["message"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST.", "[::1]"])
def test_the_gateways_own_names_are_answered_on_loopback(gateway: Gateway, host: str) -> None:
    port = gateway.url.rsplit(":", 1)[1]
    with call(gateway, "GET", "/api/v1/servers", f"{host}:{port}") as response:
        assert response.status_code == 200
        assert "servers" in response.json()


def test_configured_names_are_answered(tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path / "m", [server("time", [str(VENV_BIN / "mcp-server-time")])])
    with run_gateway(manifests, NMCP_ALLOWED_HOSTS="mcp.example.com,.corp.example") as gw:
        for host, status in (("mcp.example.com", 200), ("a.b.corp.example:443", 200), ("corp.example.evil", 403),
                             ("example.com", 403)):
            with call(gw, "GET", "/api/v1/servers", host) as response:
                assert response.status_code == status, host


def test_localhost_is_a_name_of_the_gateway_only_when_it_listens_on_loopback() -> None:
    assert is_loopback("127.0.0.1:8080") and is_loopback("[::1]:8080") and is_loopback("localhost:8080")
    assert not is_loopback("0.0.0.0:8080") and not is_loopback("10.0.0.5:8080")
    assert host_allowed("localhost:8080", (), loopback=True)
    assert not host_allowed("localhost:8080", (), loopback=False)
    assert host_allowed("10.0.0.5:8080", (), loopback=False)  # an address is never a rebound name
    assert host_allowed(None, (), loopback=False)  # HTTP/1.0 without Host: no browser sends that
    assert not host_allowed("", (), loopback=True)
