"""The webhooks over real HTTP: the app under gunicorn (gthread, hooks/gunicorn.conf.py), and `nmcp operator`.

The same malformed-request table (fixtures/malformed/cases.json) runs against the Flask test
client and against gunicorn; happy paths post Metacontroller-shaped bodies in v1 and v2 keys.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import requests

from hooks.app import create_app
from tests.hooks.builders import customize_request, pod, pool, pool_request, rekey, server, server_request
from tests.support import ROOT, VENV_BIN, free_port, gunicorn, wait_http

MALFORMED = json.loads((Path(__file__).with_name("fixtures") / "malformed" / "cases.json").read_text())
VERSIONS = [pytest.param("v2", id="v2"), pytest.param("v1", id="v1")]
QUIET = {"NMCP_OPERATOR_ACCESS_LOG": "0"}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with gunicorn("hooks.app:create_app()", config=str(ROOT / "hooks" / "gunicorn.conf.py"),
                  worker_class="gthread", workers=2, env=QUIET) as url:
        yield url


def _body(case: dict[str, Any]) -> bytes | None:
    if "raw" in case:
        return case["raw"].encode()
    if "raw_hex" in case:
        return bytes.fromhex(case["raw_hex"])
    return json.dumps(case["body"]).encode() if "body" in case else None


def _check_error(case: dict[str, Any], status: int, body: dict[str, Any]) -> None:
    assert status == case["status"], body
    error = body["error"]
    assert error["code"] == case["code"]
    assert sorted(error.get("fields", {})) == sorted(case["fields"])
    for name in case["fields"]:
        assert name in error["message"]  # the message names every offending field too


@pytest.mark.parametrize("case", MALFORMED, ids=[c["id"] for c in MALFORMED])
def test_malformed_request_in_process(case: dict[str, Any]) -> None:
    client = create_app().test_client()
    response = client.open(case["path"], method=case.get("method", "POST"), data=_body(case),
                           content_type="application/json")
    _check_error(case, response.status_code, response.get_json())


@pytest.mark.parametrize("case", MALFORMED, ids=[c["id"] for c in MALFORMED])
def test_malformed_request_under_gunicorn(base: str, case: dict[str, Any]) -> None:
    response = requests.request(case.get("method", "POST"), base + case["path"], data=_body(case),
                                headers={"Content-Type": "application/json"}, timeout=30)
    assert response.headers["Content-Type"] == "application/json"
    _check_error(case, response.status_code, response.json())


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize("version", VERSIONS)
def test_pool_sync_admits_and_builds_valid_children(base: str, version: str) -> None:
    now = _now()
    servers = [server("time", requested=-1, now=now),
               server("web", requested=-2, transport={"type": "streamable-http", "port": 8080}, now=now),
               server("late", requested=0, now=now), server("quiet", now=now)]
    request = rekey(pool_request(pool(max_active=2, now=now), servers), version)
    response = requests.post(f"{base}/pool/sync", json=request, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "children", "resyncAfterSeconds"}  # only documented keys
    assert [(c["kind"], c["metadata"]["name"]) for c in body["children"]] == [
        ("Pod", "mcp-time"), ("Pod", "mcp-web"), ("Service", "mcp-web")]
    for child in body["children"]:
        kubernetes_validate.validate(child, "1.32.0", strict=True)
    assert body["status"]["waiting"] == 1
    assert 100 < body["resyncAfterSeconds"] <= 120


@pytest.mark.parametrize("version", VERSIONS)
def test_server_sync_reports_phase(base: str, version: str) -> None:
    now = _now()
    request = rekey(server_request(server("time", requested=-30, active=-1, now=now), pool(now=now),
                                   [pod("time", created=-25, ready=-20, now=now)]), version)
    body = requests.post(f"{base}/server/sync", json=request, timeout=30).json()
    assert body["status"]["phase"] == "Ready"
    assert body["children"] == []
    missing = rekey(server_request(server("time", requested=-1, now=now), None), version)
    body = requests.post(f"{base}/server/sync", json=missing, timeout=30).json()
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert (body["status"]["phase"], ready["reason"]) == ("Degraded", "PoolNotFound")


def test_finalize_routes_finalize(base: str) -> None:
    now = _now()
    request = server_request(server("time", deleting=True, now=now), pool(now=now), [pod("time", ready=-5, now=now)])
    request["finalizing"] = False  # the route, not the body, says which hook this is
    body = requests.post(f"{base}/server/finalize", json=request, timeout=30).json()
    assert body["finalized"] is False
    request["related"]["Pod.v1"] = {}
    assert requests.post(f"{base}/server/finalize", json=request, timeout=30).json()["finalized"] is True
    gone = pool_request(pool(deleting=True, now=now), [], finalizing=True)
    body = requests.post(f"{base}/pool/finalize", json=gone, timeout=30).json()
    assert (set(body), body["children"], body["finalized"]) == ({"status", "children", "finalized"}, [], True)


def test_customize_routes(base: str) -> None:
    body = requests.post(f"{base}/pool/customize", json=customize_request("pool", pool()), timeout=30).json()
    assert body == {"relatedResources": [{"apiVersion": "nmcp.nwrx.io/v1", "resource": "mcpservers",
                                          "namespace": "team", "labelSelector": {}}]}
    body = requests.post(f"{base}/server/customize", json=customize_request("server", server("a")), timeout=30)
    assert [r["resource"] for r in body.json()["relatedResources"]] == ["mcppools", "pods"]


def test_probes(base: str) -> None:
    assert requests.get(f"{base}/healthz", timeout=30).json() == {"status": "ok"}
    assert requests.get(f"{base}/readyz", timeout=30).status_code == 200


def test_a_bug_is_a_json_500() -> None:
    app = create_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("bug")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"


def test_body_limit_is_a_json_413() -> None:
    client = create_app({"MAX_CONTENT_LENGTH": 100}).test_client()
    response = client.post("/pool/sync", data=b"{" + b" " * 200 + b"}", content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"


def test_nmcp_operator_serves_the_hooks() -> None:
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "nmcp"), "operator", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                            cwd=ROOT, env={**os.environ, **QUIET})
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, proc)
        body = requests.post(f"http://127.0.0.1:{port}/pool/sync", json=pool_request(pool(), []), timeout=30).json()
        assert body["status"]["servers"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_nmcp_operator_help_and_bad_bind() -> None:
    nmcp = str(VENV_BIN / "nmcp")
    help_text = subprocess.run([nmcp, "operator", "--help"], capture_output=True, text=True, check=True).stdout
    assert "0.0.0.0:8000" in help_text
    bad = subprocess.run([nmcp, "operator", "--bind", "8000"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "HOST:PORT" in bad.stderr


def _mutations(seed: int, count: int) -> Iterator[tuple[str, Any]]:
    """Valid fixture bodies with one random part replaced by a value of another type."""
    import random

    rng = random.Random(seed)
    fixtures = sorted((Path(__file__).with_name("fixtures")).glob("*-*/*.request.json"))
    odd_values: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], [1, "a"], {}, {"a": None}]
    for _ in range(count):
        path = rng.choice(fixtures)
        body = json.loads(path.read_text())
        body.pop("now")
        # Walk to a random node and replace it.
        node: Any = body
        trail: list[Any] = []
        while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
            key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
            trail.append((node, key))
            node = node[key]
        if trail:
            parent, key = trail[-1]
            parent[key] = rng.choice(odd_values)
        kind, hook = path.parent.name.split("-")
        yield f"/{kind}/{hook}", body


def test_no_body_makes_a_hook_fail() -> None:
    """Whatever shape arrives, the answer is 200 or a 4xx naming the problem, never a 500."""
    client = create_app().test_client()
    for route, body in _mutations(seed=3, count=1500):
        response = client.post(route, json=body)
        assert response.status_code in (200, 400, 422), (route, json.dumps(body)[:500], response.get_json())
