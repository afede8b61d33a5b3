"""The gateway's rules against hostile input, as pure functions: what a malformed JSON-RPC message
is answered with, how long an unused session lives, when a server takes no more sessions, how the
open-file limit is raised, how the settings read, and how a server's stdout lines are read."""

from __future__ import annotations

import json
import math

import pytest

from gateway import limits
from gateway.config import Config, ConfigError
from gateway.protocol import jsonrpc
from gateway.upstreams.stdio import StdioUpstream
from nmcp.model.resources import DEFAULT_IDLE_TIMEOUT

PARSE, INVALID, PARAMS = -32700, -32600, -32602


def call(**members: object) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", **members}


MALFORMED = [
    pytest.param("not json", b"{", PARSE, None, id="not-json"),
    pytest.param("NaN", b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":NaN}}', PARSE, None, id="nan"),
    pytest.param("deep", b"[" * 100_000 + b"]" * 100_000, PARSE, None, id="nested-too-deep"),
    pytest.param("scalar", 5, INVALID, None, id="not-an-object"),
    pytest.param("no-version", {"id": 7, "method": "ping"}, INVALID, 7, id="no-jsonrpc"),
    pytest.param("version", {"jsonrpc": "1.0", "id": 7, "method": "ping"}, INVALID, 7, id="jsonrpc-1.0"),
    pytest.param("null id", call(id=None), INVALID, None, id="id-null"),
    pytest.param("object id", call(id={"a": 1}), INVALID, None, id="id-object"),
    pytest.param("array id", call(id=[1]), INVALID, None, id="id-array"),
    pytest.param("bool id", call(id=True), INVALID, None, id="id-true"),
    pytest.param("float id", call(id=1.5), INVALID, None, id="id-float"),
    pytest.param("method", {"jsonrpc": "2.0", "id": 7, "method": 5}, INVALID, 7, id="method-number"),
    pytest.param("neither", {"jsonrpc": "2.0", "id": 7}, INVALID, 7, id="no-method-no-result"),
    pytest.param("no id", {"jsonrpc": "2.0", "result": {}}, INVALID, None, id="response-without-id"),
    pytest.param("both", {"jsonrpc": "2.0", "id": 7, "result": {}, "error": {"code": 1, "message": "m"}},
                 INVALID, 7, id="result-and-error"),
    pytest.param("result", {"jsonrpc": "2.0", "id": 7, "result": [1]}, INVALID, 7, id="result-array"),
    pytest.param("error", {"jsonrpc": "2.0", "id": 7, "error": {"code": "x", "message": "m"}}, INVALID, 7,
                 id="error-code-string"),
    pytest.param("array params", call(params=[1]), PARAMS, 7, id="params-array"),
    pytest.param("string params", call(params="x"), PARAMS, 7, id="params-string"),
    pytest.param("null params", call(params=None), PARAMS, 7, id="params-null"),
    pytest.param("meta", call(params={"_meta": 5}), PARAMS, 7, id="meta-number"),
    pytest.param("token", call(params={"_meta": {"progressToken": {"a": 1}}}), PARAMS, 7, id="progress-token-object"),
    pytest.param("notification", {"jsonrpc": "2.0", "method": "notifications/x", "params": [1]}, PARAMS, None,
                 id="notification-params-array"),
    pytest.param("subscribe", {"jsonrpc": "2.0", "id": 7, "method": "resources/subscribe", "params": {}}, PARAMS, 7,
                 id="subscribe-without-uri"),
]


def check(body: object) -> jsonrpc.Problem | None:
    """What a transport does with a body: parse it (bytes), then validate the value."""
    if isinstance(body, bytes):
        value, problem = jsonrpc.parse(body)
        if problem is not None:
            return problem
        body = value
    return jsonrpc.validate(body)


@pytest.mark.parametrize(("what", "body", "code", "echoed"), MALFORMED)
def test_every_malformed_message_has_its_json_rpc_error(what: str, body: object, code: int,
                                                        echoed: object) -> None:
    problem = check(body)
    assert problem is not None, what
    error = problem.error()
    assert error["error"]["code"] == code
    assert error["id"] == echoed  # the request's own id when it could be read, else null
    assert error["error"]["data"]["code"] == jsonrpc.STABLE_CODES[code]
    json.dumps(error, allow_nan=False)  # the answer itself is JSON


@pytest.mark.parametrize("message", [
    pytest.param({"jsonrpc": "2.0", "id": 1, "method": "ping"}, id="request"),
    pytest.param({"jsonrpc": "2.0", "id": "a", "method": "x", "params": {"_meta": {"progressToken": 3}}}, id="token"),
    pytest.param({"jsonrpc": "2.0", "method": "notifications/initialized"}, id="notification"),
    pytest.param({"jsonrpc": "2.0", "id": 3, "result": {}}, id="result"),
    pytest.param({"jsonrpc": "2.0", "id": 3, "error": {"code": -1, "message": "no", "data": [1]}}, id="error"),
    pytest.param({"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": "u"}}, id="subscribe"),
])
def test_valid_messages_pass(message: dict[str, object]) -> None:
    assert jsonrpc.validate(message) is None


@pytest.mark.parametrize(("message", "kind"), [
    pytest.param({"jsonrpc": "2.0", "id": None, "method": "x"}, "invalid", id="null-id-request"),
    pytest.param({"jsonrpc": "2.0", "id": {"a": 1}, "method": "x"}, "invalid", id="object-id-request"),
    pytest.param({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "m"}}, "response",
                 id="null-id-error-response"),
    pytest.param({"jsonrpc": "2.0", "id": None, "result": {}}, "invalid", id="null-id-result"),
    pytest.param({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {}}, "invalid", id="result-and-error"),
])
def test_the_one_classifier_agrees_with_mcp_on_ids(message: dict[str, object], kind: str) -> None:
    assert jsonrpc.kind(message) == kind


def test_a_batch_with_one_bad_member_is_refused_whole_naming_each() -> None:
    good = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    problem = jsonrpc.check_batch([good, call(params=[1]), call(id=None)])
    assert problem is not None
    assert problem.code == PARAMS and problem.id is None
    assert "nothing in the batch was processed" in problem.message
    assert [(p["index"], p["code"]) for p in problem.details] == [(1, PARAMS), (2, INVALID)]
    assert jsonrpc.check_batch([]) is not None
    assert jsonrpc.check_batch([good, {"jsonrpc": "2.0", "method": "n"}]) is None


def test_only_json_rpc_members_go_upstream() -> None:
    assert jsonrpc.clean({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {}, "extra": 1}) == \
        {"jsonrpc": "2.0", "id": 1, "method": "x", "params": {}}
    assert jsonrpc.clean({"jsonrpc": "2.0", "id": 1, "result": {}, "stray": True}) == \
        {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_a_lone_surrogate_is_written_escaped_not_dropped() -> None:
    value, problem = jsonrpc.parse(b'{"text": "a\\ud800b"}')
    assert problem is None
    assert json.loads(jsonrpc.dumps(value)) == value  # would be a UnicodeEncodeError as UTF-8
    assert jsonrpc.dumps({"text": "é"}) == '{"text":"é"}'.encode()  # UTF-8 otherwise


@pytest.mark.parametrize(("configured", "idle", "expected"), [
    pytest.param(None, None, DEFAULT_IDLE_TIMEOUT, id="the-model-default"),
    pytest.param(None, 900.0, 900.0, id="the-servers-idle-timeout"),
    pytest.param(None, 1.0, limits.MIN_SESSION_TIMEOUT, id="never-below-the-floor"),
    pytest.param(2.0, 900.0, 2.0, id="configured-wins"),
])
def test_an_unused_session_lives_as_long_as_its_server_would(configured: float | None, idle: float | None,
                                                             expected: float) -> None:
    assert limits.session_timeout_for(configured, idle) == expected
    assert limits.session_timeout_for(None, None) < 3600  # far below the old hour


def test_a_full_server_says_when_a_session_expires() -> None:
    assert limits.admit_session(9, 10, [], 60.0).admitted
    refused = limits.admit_session(10, 10, [12.5, 30.0, 1.0], 60.0)
    assert (refused.admitted, refused.retry_after) == (False, math.ceil(60.0 - 30.0))
    assert limits.admit_session(10, 10, [], 60.0).retry_after == 60  # every session holds a stream
    assert limits.admit_session(10, 10, [60.0], 60.0).retry_after == 1  # due now: never 0


@pytest.mark.parametrize(("soft", "hard", "target"), [
    pytest.param(1024, 524288, (17408, 524288), id="raise-the-soft-limit"),
    pytest.param(1024, 4096, (17408, 17408), id="the-hard-one-too"),
    pytest.param(65536, 65536, None, id="enough-already"),
    pytest.param(-1, -1, None, id="unlimited"),
])
def test_the_open_file_limit_is_raised_to_fit_the_connections(soft: int, hard: int,
                                                               target: tuple[int, int] | None) -> None:
    assert limits.open_files_target(soft, hard, 16384 + limits.FD_RESERVE, unlimited=-1) == target
    assert "NMCP_WORKER_CONNECTIONS=16384" in limits.fd_capacity_warning(4096, 16384)


def test_the_new_settings_read_from_the_environment() -> None:
    config = Config.from_env({"NMCP_MAX_BODY": "1024", "NMCP_MAX_MESSAGE": "2048", "NMCP_MAX_SESSIONS": "3",
                              "NMCP_SESSION_TIMEOUT": "30", "NMCP_HEADER_TIMEOUT": "2.5",
                              "NMCP_WORKER_CONNECTIONS": "20000"})
    assert (config.max_body, config.max_message, config.max_sessions, config.session_timeout,
            config.header_timeout, config.worker_connections) == (1024, 2048, 3, 30.0, 2.5, 20000)
    defaults = Config.from_env({})
    assert defaults.session_timeout is None
    assert defaults.max_body >= 16 * 1024 * 1024 * 2  # a 16 MB message, even escaped, passes
    assert defaults.max_message < 10 * 1024 * 1024  # below the TypeScript SDK's stdio read buffer
    with pytest.raises(ConfigError, match="NMCP_MAX_BODY: expected an integer"):
        Config.from_env({"NMCP_MAX_BODY": "1.5"})
    with pytest.raises(ConfigError, match="NMCP_HEADER_TIMEOUT: must be positive"):
        Config.from_env({"NMCP_HEADER_TIMEOUT": "0"})


class _Lines:
    """A stdio connection that has written `lines` and then ended."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = list(lines)

    def receive(self) -> bytes | None:
        return self.lines.pop(0) if self.lines else None

    def send(self, message: bytes) -> None:
        raise AssertionError("nothing is sent here")

    def close(self) -> None:
        pass


def test_a_server_line_nested_too_deep_is_skipped_and_the_next_message_arrives() -> None:
    # A line that opens like a message but nests deeper than any parser reads: skipped like any
    # line that is not JSON-RPC, never the end of the connection for every session on it.
    received: list[dict[str, object]] = []
    closed: list[object] = []
    nested = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    answer = {"jsonrpc": "2.0", "id": 1, "result": {}}
    upstream = StdioUpstream("hostile", _Lines([nested, json.dumps(answer).encode()]),  # type: ignore[arg-type]
                             received.append, closed.append)
    upstream._reader.join(timeout=10)
    assert received == [answer]
    assert upstream.skipped_lines == 1 and closed == [upstream]
