"""The bridge's routing rules as pure decisions (gateway/routing.py): no server, no network."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway import routing
from gateway.protocol import jsonrpc, stateless
from gateway.routing import Decision, Delivery, Pending, Table


@dataclass(frozen=True)
class SessionView:
    id: str
    capabilities: frozenset[str]
    log_level: str | None = None


def table(pending: dict[int, Pending] | None = None, **options: object) -> Table:
    sessions = {
        "a": SessionView("a", frozenset({"sampling", "roots"})),
        "b": SessionView("b", frozenset({"elicitation"}), log_level="warning"),
        "c": SessionView("c", frozenset()),
    }
    return Table(sessions=sessions, pending=pending or {}, **options)  # type: ignore[arg-type]


def test_a_response_goes_back_to_its_session_under_the_clients_id() -> None:
    pending = {7: Pending("a", "client-1", "tools/call", seq=1)}
    decision = routing.route({"jsonrpc": "2.0", "id": 7, "result": {"ok": True}}, table(pending))
    assert decision == Decision(
        deliveries=(Delivery("a", {"jsonrpc": "2.0", "id": "client-1", "result": {"ok": True}}, "client-1"),),
        finished=7)


def test_a_late_response_to_a_cancelled_request_is_dropped() -> None:
    decision = routing.route({"jsonrpc": "2.0", "id": 99, "result": {}}, table())
    assert decision.deliveries == ()
    assert "dropped" in decision.note


def test_progress_goes_to_the_session_that_asked_for_it_under_its_own_token() -> None:
    pending = {3: Pending("b", 11, "tools/call", seq=1, progress_token="mine")}
    note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 3, "progress": 1}}
    decision = routing.route(note, table(pending))
    assert decision.deliveries == (Delivery("b", {**note, "params": {"progressToken": "mine", "progress": 1}}, 11),)


def test_list_changed_goes_to_every_session_and_resource_updates_to_subscribers() -> None:
    changed = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    assert [d.session for d in routing.route(changed, table()).deliveries] == ["a", "b", "c"]
    updated = {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "x://1"}}
    subscribed = table(subscriptions={"x://1": frozenset({"c", "a"})})
    assert [d.session for d in routing.route(updated, subscribed).deliveries] == ["a", "c"]


def sampling(request_id: int = 40) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "sampling/createMessage", "params": {}}


def test_a_server_request_goes_to_the_one_session_in_flight_and_calls_take_turns_from_then_on() -> None:
    pending = {1: Pending("a", "old", "tools/call", seq=1), 2: Pending("a", "new", "tools/call", seq=2)}
    decision = routing.route(sampling(), table(pending))
    assert decision.deliveries == (Delivery("a", sampling(), "new"),)
    assert decision.bind == (40, "a")
    assert decision.take_turns


def test_a_server_request_that_cannot_be_attributed_is_refused_and_shown_to_no_one() -> None:
    overlapping = table({1: Pending("c", "x", "tools/call", seq=1), 2: Pending("a", "y", "tools/call", seq=2)})
    idle = table()
    for state, turns in ((overlapping, True), (idle, False)):
        decision = routing.route(sampling(), state)
        assert decision.deliveries == ()
        assert decision.upstream[0]["error"]["code"] == jsonrpc.METHOD_NOT_FOUND
        assert "cannot be attributed" in decision.upstream[0]["error"]["message"]
        assert decision.take_turns is turns  # turns help only when a call caused it


def test_a_session_without_the_capability_is_not_asked_the_server_gets_an_error() -> None:
    pending = {1: Pending("c", "x", "tools/call", seq=1)}
    decision = routing.route(sampling(), table(pending))
    assert decision.deliveries == ()
    assert decision.upstream[0]["id"] == 40
    assert decision.upstream[0]["error"]["code"] == jsonrpc.METHOD_NOT_FOUND


def test_a_server_ping_is_answered_by_the_gateway() -> None:
    decision = routing.route({"jsonrpc": "2.0", "id": 5, "method": "ping"}, table())
    assert decision.upstream == ({"jsonrpc": "2.0", "id": 5, "result": {}},)
    assert decision.deliveries == ()


def test_log_messages_follow_the_one_session_in_flight_else_reach_everyone_at_its_level() -> None:
    log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "error", "data": "x"}}
    busy = table({1: Pending("b", 8, "tools/call", seq=1)})
    assert routing.route(log, busy).deliveries == (Delivery("b", log, 8),)
    assert [d.session for d in routing.route(log, table()).deliveries] == ["a", "b", "c"]
    assert routing.route(log, table(internal=True)).deliveries == ()  # it answers the gateway's own request
    overlapping = routing.route(log, table({1: Pending("b", 8, "tools/call", seq=1), 2: Pending("a", 9, "x", seq=2)}))
    assert overlapping.deliveries == ()
    assert overlapping.take_turns
    info = {**log, "params": {"level": "info", "data": "x"}}  # below the warning level b asked for
    assert [d.session for d in routing.route(info, table()).deliveries] == ["a", "c"]
    assert routing.route(info, busy).deliveries == ()


def test_the_upstream_runs_at_the_most_verbose_level_asked_for() -> None:
    assert routing.upstream_log_level(["error", None, "info", "warning"]) == "info"
    assert routing.upstream_log_level([None]) is None
    assert routing.wants("warning", "error") and not routing.wants("warning", "info")


def test_a_cancellation_of_a_server_request_reaches_the_session_that_has_it() -> None:
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 40}}
    decision = routing.route(cancel, table(server_requests={40: "a"}))
    assert decision.deliveries == (Delivery("a", cancel),)
    assert decision.unbind == 40


def test_client_requests_go_upstream_with_fresh_ids_tokens_and_no_2026_envelope() -> None:
    message = {"jsonrpc": "2.0", "id": "c-1", "method": "tools/call", "params": {
        "name": "t", "_meta": {"progressToken": "p", "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}
    out, token = routing.upstream_request(message, 12)
    assert token == "p"
    assert out == {"jsonrpc": "2.0", "id": 12, "method": "tools/call",
                   "params": {"name": "t", "_meta": {"progressToken": 12}}}


@pytest.mark.parametrize(("message", "kind"), [
    ({"jsonrpc": "2.0", "id": 1, "method": "x"}, "request"),
    ({"jsonrpc": "2.0", "method": "x"}, "notification"),
    ({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "m"}}, "response"),
    ({"jsonrpc": "1.0", "id": 1, "method": "x"}, "invalid"),
    (["not", "a", "message"], "invalid"),
])
def test_message_kinds(message: object, kind: str) -> None:
    assert jsonrpc.kind(message) == kind


def test_modern_results_get_the_2026_fields_unless_the_server_set_them() -> None:
    listed = stateless.complete_response("tools/list", {"jsonrpc": "2.0", "id": 1, "result": {"tools": [], "ttlMs": 5}})
    assert listed["result"] == {"resultType": "complete", "ttlMs": 5, "cacheScope": "private", "tools": []}
    called = stateless.complete_response("tools/call", {"jsonrpc": "2.0", "id": 1, "result": {"content": []}})
    assert called["result"] == {"resultType": "complete", "content": []}


def test_base64_header_values_are_decoded() -> None:
    assert stateless.decode_header_value("=?base64?w6l0w6k=?=") == "été"
    assert stateless.decode_header_value("plain") == "plain"
    assert stateless.decode_header_value("=?base64?not base64?=") is None
