"""Hostile input to the webhooks: no body, however wrong, gets a 500.

A seeded fuzz corpus (mutations of every fixture request in tests/hooks/fixtures, values the CRD
schema accepts at its very edges, deep nesting) is posted to the real app under gunicorn
(gthread, hooks/gunicorn.conf.py, as tests/hooks/test_hook_http.py serves it). Every answer is a
200 with a status, or a 4xx with a JSON error from the app's one error handler. The corpus is the
same on every run (seed 13), and bounded: a thousand bodies, a few seconds.

Alongside: values the schema lets through but nmcp caps are a condition naming the field
(Degraded / InvalidSpec), never an exception, and a server nmcp cannot compute with anyway stays
out of its pool's plan instead of failing the pool's sync for every other server.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

import crds
from hooks import lifecycle, sync
from hooks.app import create_app
from nmcp.model import schema
from nmcp.model.resources import MAX_COUNT, MAX_DURATION, SpecError, format_time_precise, parse_duration
from tests.hooks.builders import NOW, pod, pool, pool_request, server, server_request
from tests.support import ROOT, gunicorn

FIXTURES = ROOT / "tests" / "hooks" / "fixtures"
SEED = 13
MUTANTS = 1000

# Values a hostile or careless writer can put anywhere: the edges of every type.
HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1.5, -0.0, 1e308, -1e308, 2**63, -(2**63), 10**30, 10**300,
    "", " ", "-1", "0", "1e999999999", "99999999h", "999999999999", "9" * 400, "1h" * 60, "NaN",
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+05:00", "2026-13-45T99:99:99Z", "\ud800", "\u00b2",
    "a" * 5000, [], {}, [[[[[[[[[[[]]]]]]]]]]], {"a": {"b": {"c": {}}}}, ["x", 1, None], {"": ""},
]
# Fields the hooks compute with: mutated on purpose, not only when the dice land there.
TARGETS = [
    ("parent", "spec", "idleTimeout"), ("parent", "spec", "startTimeout"),
    ("parent", "spec", "defaultIdleTimeout"), ("parent", "spec", "maxActive"), ("parent", "spec", "maxIdle"),
    ("parent", "spec", "transport", "port"), ("parent", "spec", "transport", "path"),
    ("parent", "spec", "resources", "limits", "cpu"), ("parent", "spec", "defaultResources", "limits", "memory"),
    ("parent", "spec", "securityContext"), ("parent", "spec", "env"), ("parent", "spec", "pool"),
    ("parent", "metadata", "annotations", "nmcp.nwrx.io/requested-at"),
    ("parent", "metadata", "annotations", "nmcp.nwrx.io/last-active-at"),
    ("parent", "metadata", "annotations", "nmcp.nwrx.io/stop-requested-at"),
    ("parent", "metadata", "annotations", "nmcp.nwrx.io/sessions"),
    ("parent", "metadata", "name"), ("parent", "metadata", "generation"), ("parent", "metadata", "deletionTimestamp"),
    ("parent", "status", "answeredRequests"), ("parent", "status", "active"), ("controller", "metadata", "annotations"),
]


def _fixtures() -> list[tuple[str, dict[str, Any]]]:
    """(route, body) of every fixture request, `now` stripped."""
    found = []
    for path in sorted(FIXTURES.glob("*/*.request.json")):
        kind, hook = path.parent.name.split("-", 1)
        body = json.loads(path.read_text())
        body.pop("now", None)
        found.append((f"/{kind}/{hook}", body))
    return found


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON document (dict keys and list indexes)."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nodes(item, (*path, index))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """`doc` with the node at `path` replaced (dicts on the way are made where missing)."""
    if not path:
        return value
    node = doc
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return doc
        if not isinstance(node, (dict, list)):
            return doc
    if isinstance(node, dict) or (isinstance(path[-1], int) and path[-1] < len(node)):
        node[path[-1]] = value
    return doc


def _mutants() -> list[tuple[str, str, bytes]]:
    """(id, route, body) of the seeded corpus."""
    rng = random.Random(SEED)
    fixtures = _fixtures()
    corpus = []
    for number in range(MUTANTS):
        route, original = rng.choice(fixtures)
        body = copy.deepcopy(original)
        for _ in range(rng.randint(1, 4)):
            path = rng.choice(TARGETS) if rng.random() < 0.5 else rng.choice(list(_nodes(body)))
            body = _set(body, path, copy.deepcopy(rng.choice(HOSTILE)))
        if rng.random() < 0.1:  # a related object moved into the wrong kind's map
            related = body.get("related") if isinstance(body, dict) else None
            if isinstance(related, dict) and related:
                related[rng.choice(["Pod.v1", "MCPPool.nmcp.nwrx.io/v1", "MCPServer.nmcp.nwrx.io/v1"])] = \
                    copy.deepcopy(rng.choice(list(related.values())))
        corpus.append((f"mutant-{number}", route, json.dumps(body).encode()))
    return corpus


def _nested(depth: int, leaf: str = "[]") -> str:
    return "[" * depth + leaf + "]" * depth


def _deep() -> list[tuple[str, str, bytes]]:
    """Bodies nested 100 to 100,000 levels: at the top, in a spec field the hooks walk, in `related`."""
    corpus = []
    for depth in (100, 900, 990, 1000, 5000, 100_000):
        corpus.append((f"top-{depth}", "/server/sync", _nested(depth).encode()))
        deep_object = '{"a":' * depth + "1" + "}" * depth
        spec = ('{"parent": {"metadata": {"name": "a", "namespace": "team"}, "spec": {"command": ["x"], '
                f'"securityContext": {deep_object}}}}}')
        corpus.append((f"security-context-{depth}", "/pool/sync", spec.encode()))
        corpus.append((f"server-security-context-{depth}", "/server/sync", spec.encode()))
        # Requested just now, so that the pool would build its Pod (and walk the securityContext).
        requested = json.dumps({"nmcp.nwrx.io/requested-at": format_time_precise(datetime.now(UTC))})
        related = ('{"parent": {"metadata": {"name": "default", "namespace": "team"}}, '
                   '"related": {"MCPServer.nmcp.nwrx.io/v1": {"team/a": {"metadata": {"name": "a", '
                   f'"annotations": {requested}}}, "spec": {{"pool": "default", "image": "x", '
                   f'"securityContext": {deep_object}}}}}}}}}}}')
        corpus.append((f"related-{depth}", "/pool/sync", related.encode()))
        corpus.append((f"env-{depth}", "/server/sync", (
            '{"parent": {"metadata": {"name": "a"}, "spec": {"image": "x", "env": [{"name": "A", "valueFrom": '
            f'{{"resourceFieldRef": {{"divisor": {_nested(depth, chr(34) + "1" + chr(34))}}}}}}}]}}}}}}').encode()))
    return corpus


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with gunicorn("hooks.app:create_app()", config=str(ROOT / "hooks" / "gunicorn.conf.py"),
                  worker_class="gthread", workers=2, env={"NMCP_OPERATOR_ACCESS_LOG": "0"}) as url:
        yield url


def _strict_json(text: str) -> Any:
    """JSON as Metacontroller's Go decoder reads it: NaN and Infinity are not JSON."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a response")
    return json.loads(text, parse_constant=refuse)


def _check(route: str, response: requests.Response) -> dict[str, Any]:
    assert response.status_code < 500, f"{route}: {response.status_code} {response.text[:500]}"
    assert response.headers["Content-Type"] == "application/json"
    body = _strict_json(response.text)
    if response.status_code >= 400:
        assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"], body
    else:
        assert "status" in body or "relatedResources" in body, body
    return body


def test_a_seeded_corpus_of_mutated_fixtures_never_gets_a_500(base: str) -> None:
    corpus = _mutants()
    statuses: dict[int, int] = {}
    with requests.Session() as http:
        for case_id, route, data in corpus:
            response = http.post(base + route, data=data, headers={"Content-Type": "application/json"}, timeout=60)
            try:
                _check(route, response)
            except AssertionError as err:
                raise AssertionError(f"{case_id} {route} {data[:2000]!r}: {err}") from None
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    # The corpus reaches the pure functions, not only the schema check.
    assert statuses.get(200, 0) > MUTANTS // 4, statuses
    assert sum(n for code, n in statuses.items() if 400 <= code < 500) > MUTANTS // 10, statuses


def test_deep_nesting_is_a_4xx_with_a_json_error_never_a_500(base: str) -> None:
    with requests.Session() as http:
        for case_id, route, data in _deep():
            response = http.post(base + route, data=data, headers={"Content-Type": "application/json"}, timeout=60)
            body = _check(route, response)
            if case_id == "top-1000":
                assert (response.status_code, body["error"]["code"]) == (400, "too_deep"), body
            if case_id in ("related-100", "related-900"):
                # Readable, so only that server is refused: its pool's sync goes on.
                assert response.status_code == 200, body
                assert body["status"]["conditions"][0]["reason"] == "Reconciled", body


# --- values the schema accepts at its edges ---------------------------------------------------------


DURATION = re.compile(crds.openapi_schema("server")["properties"]["spec"]["properties"]["idleTimeout"]["pattern"])


def _durations(rng: random.Random, count: int) -> list[Any]:
    """Durations the CRD accepts, biased to its edges: the longest parts, the most parts, the cap."""
    values: list[Any] = [0, 31536000, "31536000", "8760h", "8760h0m0.001s", "999999999h", "999999999",
                         "999999999.999999999h" * 4, "0ms", "1ms", "0.000000001s"]
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 4)):
            number = str(rng.randint(0, 10 ** rng.randint(1, 9) - 1))
            if rng.random() < 0.3:
                number += "." + str(rng.randint(0, 10 ** rng.randint(1, 9) - 1))
            parts.append(number + rng.choice(["ms", "s", "m", "h"]))
        values.append("".join(parts))
    return values


def test_every_duration_the_schema_accepts_is_a_value_or_a_condition_naming_the_field() -> None:
    rng = random.Random(SEED)
    client = create_app().test_client()
    for value in _durations(rng, 150):
        doc = {"apiVersion": "nmcp.nwrx.io/v1", "kind": "MCPServer", "metadata": {"name": "edge"},
               "spec": {"command": ["x"], "idleTimeout": value, "startTimeout": value or 1}}
        valid, problems = schema.validate(doc)
        assert valid is not None, (value, problems)
        assert isinstance(value, int) or DURATION.fullmatch(value)
        try:
            seconds = parse_duration(value, "spec.idleTimeout")
        except SpecError as err:
            assert err.field == "spec.idleTimeout" and "at most 8760h" in err.message
        else:
            assert 0 <= seconds <= MAX_DURATION
        parent = server("edge", idle=value, start=value or 1, requested=-1, active=-1)
        for route, body in (("/server/sync", server_request(parent, pool())),
                            ("/pool/sync", pool_request(pool(idle=value), [parent]))):
            response = client.post(route, json=body)
            assert response.status_code == 200, (value, response.get_json())


@pytest.mark.parametrize(("field", "value"), [
    pytest.param("idleTimeout", "99999999h", id="idle-hours"),
    pytest.param("idleTimeout", 999999999999, id="idle-integer"),
    pytest.param("startTimeout", "999999999h", id="start-hours"),
    pytest.param("idleTimeout", "9" * 400, id="idle-400-digits"),
])
def test_a_duration_beyond_the_cap_is_invalid_spec_naming_the_field(field: str, value: Any) -> None:
    parent = server("big", requested=-1, **{"idle" if field == "idleTimeout" else "start": value})
    body = create_app().test_client().post("/server/sync", json=server_request(parent, pool())).get_json()
    ready = body["status"]["conditions"][0]
    assert (body["status"]["phase"], ready["reason"]) == ("Degraded", "InvalidSpec")
    assert ready["message"].startswith(f"spec.{field}: ")
    assert len(ready["message"]) < 200  # a hostile value is quoted, not copied whole
    # Its pool admits the others, and not it.
    answer = sync.sync_pool(pool_request(pool(), [parent, server("fine", requested=-1)]), NOW)
    assert [c["metadata"]["name"] for c in answer["children"]] == ["mcp-fine"]


def test_counts_beyond_the_cap_are_a_pool_condition_and_use_the_cap() -> None:
    body = sync.sync_pool(pool_request(
        pool(max_active=10**12, max_idle=-5, idle="99999999h"), [server("a", requested=-1)]), NOW)
    ready = body["status"]["conditions"][0]
    assert ready["reason"] == "InvalidSpec"
    for field in ("spec.maxActive", "spec.maxIdle", "spec.defaultIdleTimeout"):
        assert field in ready["message"]
    assert f"using {MAX_COUNT}" in ready["message"]
    assert [c["metadata"]["name"] for c in body["children"]] == ["mcp-a"]


def test_annotation_times_at_the_end_of_the_calendar_are_ignored_not_overflowed() -> None:
    parent = server("late", requested=None)
    parent["metadata"]["annotations"] = {"nmcp.nwrx.io/requested-at": "9999-12-31T23:59:59.999999Z",
                                         "nmcp.nwrx.io/last-active-at": "0001-01-01T00:00:00+05:00"}
    client = create_app().test_client()
    answer = client.post("/server/sync", json=server_request(parent, pool(), [pod("late", ready=-5)]))
    assert answer.status_code == 200
    assert client.post("/pool/sync", json=pool_request(pool(), [parent], [pod("late", ready=-5)])).status_code == 200


def test_a_server_the_hooks_cannot_compute_with_stays_out_of_its_pools_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth behind the caps: an error on one server's data is that server's condition."""
    real = lifecycle.deadlines

    def deadlines(srv: Any, pool_: Any, pod_: Any) -> Any:
        if srv.name == "cursed":
            raise OverflowError("date value out of range")
        return real(srv, pool_, pod_)

    monkeypatch.setattr(lifecycle, "deadlines", deadlines)
    cursed, fine = server("cursed", requested=-2), server("fine", requested=-1)
    plan = sync.sync_pool(pool_request(pool(), [cursed, fine], [pod("cursed", ready=-5)]), NOW)
    assert [c["metadata"]["name"] for c in plan["children"]] == ["mcp-fine"]  # the cursed one's Pod goes
    assert plan["status"]["servers"] == 2
    answer = sync.sync_server(server_request(cursed, pool(), [pod("cursed", ready=-5)]), NOW)
    ready = answer["status"]["conditions"][0]
    assert (answer["status"]["phase"], ready["reason"]) == ("Degraded", "InvalidSpec")
    assert "OverflowError: date value out of range" in ready["message"]
    assert "resyncAfterSeconds" not in answer


def test_the_crds_cap_what_the_code_caps() -> None:
    server_spec = crds.openapi_schema("server")["properties"]["spec"]["properties"]
    pool_spec = crds.openapi_schema("pool")["properties"]["spec"]["properties"]
    for field in (server_spec["idleTimeout"], server_spec["startTimeout"], pool_spec["defaultIdleTimeout"]):
        assert field["maximum"] == MAX_DURATION
        assert "+" not in field["pattern"].replace(r"\.", "")  # every repetition is bounded
    for field in (pool_spec["maxActive"], pool_spec["maxIdle"]):
        assert field["maximum"] == MAX_COUNT
    assert Path(crds.__file__).with_name("mcpservers.yaml").read_text() == \
        (ROOT / "helm" / "nmcp" / "crds" / "mcpservers.yaml").read_text()
