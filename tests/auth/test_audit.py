"""Audit and metrics: every MCP request and REST operation, allowed or refused, is one JSON event
with its subject and outcome; calls and denials are counted in /metrics."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests

from tests.auth.conftest import authenticated_gateway, connect, servers
from tests.gateway.conftest import Gateway
from tests.support import wait_for
from tests.support.oidc import Issuer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Gateway]:
    with authenticated_gateway(tmp_path_factory.mktemp("audited"), issuer, servers()) as gw:
        yield gw


def audit_events(gateway: Gateway) -> list[dict[str, Any]]:
    assert gateway.log_path is not None
    path = Path(gateway.log_path).parent / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def with_id(gateway: Gateway, request_id: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(gateway) if e["requestId"] == request_id]


def test_every_request_is_one_event_with_its_subject_and_outcome(gateway: Gateway, issuer: Issuer) -> None:
    alice = issuer.token("alice", gateway.mcp("test"))
    cases = [  # (method, url, token, json body, expected subject, outcome, reason)
        ("GET", gateway.api("test"), alice, None, "alice", "ok", ""),
        ("GET", gateway.api("test"), None, None, "anonymous", "denied", "unauthorized"),
        ("GET", gateway.api("test") + "/logs", "garbage", None, "anonymous", "denied", "unauthorized"),
        ("POST", gateway.mcp("test"), issuer.token("bob", gateway.mcp("other")),
         {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}},
         "anonymous", "denied", "unauthorized"),
        ("POST", gateway.mcp("test"), issuer.token("bob", gateway.mcp("test"), scope="mcp:admin"), None,
         "anonymous", "denied", "insufficient_scope"),
    ]
    for method, url, token, body, subject, outcome, reason in cases:
        request_id = uuid.uuid4().hex
        headers = {"X-Request-Id": request_id, "Accept": "application/json, text/event-stream",
                   **({"Authorization": f"Bearer {token}"} if token else {})}
        resp = requests.request(method, url, headers=headers, json=body, timeout=30)
        assert resp.headers["X-Request-Id"] == request_id
        events = wait_for(lambda rid=request_id: with_id(gateway, rid), f"the audit event of {method} {url}")
        assert len(events) == 1, events
        event = events[0]
        assert (event["subject"], event["outcome"], event.get("reason", "")) == (subject, outcome, reason), event
        assert event["server"] == url.split("/servers/")[1].split("/")[0]
        assert "arguments" not in event
        if body:
            assert (event["method"], event["name"], event["rpcId"]) == ("tools/call", "echo", 7)


def test_an_sdk_session_is_audited_call_by_call(gateway: Gateway, issuer: Issuer) -> None:
    marker = uuid.uuid4().hex

    async def session() -> None:
        async with connect(gateway.mcp("test"), issuer.token("bob", gateway.mcp("test"))) as client:
            await client.list_tools()
            await client.call_tool("echo", {"text": marker})

    anyio.run(session)
    mine = wait_for(lambda: [e for e in audit_events(gateway) if e["subject"] == "bob" and e["operation"] == "mcp"
                             and e["method"] == "tools/call"], "bob's tool call audited")
    assert [(e["name"], e["outcome"], e["server"]) for e in mine] == [("echo", "ok", "test")]
    methods = [e["method"] for e in audit_events(gateway) if e["subject"] == "bob" and e["operation"] == "mcp"]
    assert methods.count("initialize") == 1 and methods.count("tools/list") == 1
    assert marker not in json.dumps(audit_events(gateway))  # no arguments unless NMCP_AUDIT_ARGUMENTS


def test_calls_and_denials_are_counted_in_metrics(gateway: Gateway, issuer: Issuer) -> None:
    requests.get(gateway.api("other"), timeout=10)
    token = issuer.token("alice", gateway.mcp("other"))
    requests.get(gateway.api("other"), headers={"Authorization": f"Bearer {token}"}, timeout=10)
    metrics = requests.get(gateway.url + "/metrics", timeout=10).text
    assert 'nmcp_gateway_denials_total{method="show",reason="unauthorized",server="other"}' in metrics
    assert 'nmcp_gateway_calls_total{method="show",outcome="ok",server="other"}' in metrics
    assert 'nmcp_gateway_call_duration_seconds_bucket{le="+Inf",method="show",server="other"}' in metrics
    assert "# TYPE nmcp_gateway_sessions gauge" in metrics
