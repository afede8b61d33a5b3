"""JSON-RPC 2.0 as MCP uses it: the one classifier of messages, the error codes and answers the
gateway builds, decoding and encoding, and the checks every client message passes before the
gateway acts on it. Pure: no I/O.

MCP narrows JSON-RPC: a request id is a string or an integer, never null; `params` is an object
(by name); a response carries exactly one of `result` (an object) and `error` (`code` integer,
`message` string). Servers hold to this: the TypeScript SDK drops a message that breaks it without
a word, so a gateway that passed one on would wait for an answer that never comes. Hence every
client message is checked here first, and answered at once with a JSON-RPC error when it fails:
-32700 (not JSON), -32600 (not a valid message), -32602 (params the gateway or MCP cannot take).
What goes upstream is rebuilt from the members JSON-RPC defines (`clean`), so unknown top-level
members never reach a server whose schema is strict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RequestId = str | int
Message = dict[str, Any]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# MCP's codes: the upstream closed or failed before it answered; a request the client cancelled.
CONNECTION_CLOSED = -32000
REQUEST_CANCELLED = -32800

# The stable code (`error.data.code`) of each error the checks produce.
STABLE_CODES = {PARSE_ERROR: "invalid_json", INVALID_REQUEST: "invalid_message", INVALID_PARAMS: "invalid_params"}
META_KEYS_WITH_RULES = ("progressToken", "io.modelcontextprotocol/related-task")
# Methods whose params the gateway acts on itself, and the string member each must carry.
GATEWAY_PARAMS = {"resources/subscribe": "uri", "resources/unsubscribe": "uri"}


def is_integer(value: Any) -> bool:
    """A JSON integer (true and false are not numbers, though Python's bool is an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def valid_id(value: Any) -> bool:
    """A request id MCP allows: a string or an integer."""
    return isinstance(value, str) or is_integer(value)


def kind(message: Any) -> str:
    """request, notification, response, or invalid (the envelope only; `validate` checks the rest).

    An error response may have a null id (its sender could not read the request's); a request
    may not.
    """
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return "invalid"
    if "method" in message:
        if not isinstance(message["method"], str):
            return "invalid"
        if "id" not in message:
            return "notification"
        return "request" if valid_id(message["id"]) else "invalid"
    one_outcome = "id" in message and (("result" in message) != ("error" in message))
    if one_outcome and (valid_id(message["id"]) or (message["id"] is None and "error" in message)):
        return "response"
    return "invalid"


def result(request_id: RequestId, value: dict[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def error(request_id: RequestId | None, code: int, message: str, data: Any = None) -> Message:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


@dataclass(frozen=True)
class Problem:
    """Why a client message cannot be passed on, as the JSON-RPC error that answers it."""

    code: int
    message: str
    id: RequestId | None = None  # the message's id when it could be read, else null
    details: Any = None

    def error(self) -> Message:
        data: dict[str, Any] = {"code": STABLE_CODES.get(self.code, "invalid_message")}
        if self.details is not None:
            data["problems"] = self.details
        return error(self.id, self.code, self.message, data)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. A string holding a lone surrogate (JSON may carry one as an escape,
    UTF-8 cannot) is written all-ASCII instead, escapes kept, rather than failing mid-way."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


def decode(data: bytes | str) -> Any:
    """The JSON value of what a server sent; ValueError when it is not JSON (or nests too deeply to read)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse(body: bytes) -> tuple[Any, Problem | None]:
    """The JSON value of a request body, or the parse error that answers it.

    NaN and Infinity are refused (Python's json reads them; JSON and the servers behind us do
    not), and so is nesting too deep to read.
    """
    try:
        return json.loads(body, parse_constant=_no_constants), None
    except (ValueError, RecursionError) as err:
        why = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        return None, Problem(PARSE_ERROR, f"Parse error: the body is not JSON: {why}")


def validate(message: Any) -> Problem | None:
    """Why a message from a client is not one the gateway may act on; None when it is fine."""
    if not isinstance(message, dict):
        return Problem(INVALID_REQUEST, "Invalid Request: a JSON-RPC message is a JSON object")
    echo = message.get("id") if valid_id(message.get("id")) else None
    if message.get("jsonrpc") != "2.0":
        return Problem(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', echo)
    if "method" in message:
        return _check_call(message, echo)
    if "id" not in message:
        return Problem(INVALID_REQUEST, 'Invalid Request: a message needs "method" (a request or notification) '
                                        'or "id" with "result" or "error" (a response)')
    return _check_response(message, echo)


def _check_call(message: Message, echo: RequestId | None) -> Problem | None:
    method = message["method"]
    if not isinstance(method, str):
        return Problem(INVALID_REQUEST, 'Invalid Request: "method" must be a string', echo)
    if "id" in message and not valid_id(message["id"]):
        return Problem(INVALID_REQUEST, f'Invalid Request: "id" must be a string or an integer, not '
                                        f'{_json_type(message["id"])} (MCP forbids null)')
    if "params" not in message:
        why = f"{method} needs params with {GATEWAY_PARAMS[method]!r}" if method in GATEWAY_PARAMS else ""
        return Problem(INVALID_PARAMS, f"Invalid params: {why}", echo) if why else None
    params = message["params"]
    if not isinstance(params, dict):
        return Problem(INVALID_PARAMS, f'Invalid params: "params" must be an object, not {_json_type(params)}', echo)
    why = _meta_problem(params, "params")
    if why is None and method in GATEWAY_PARAMS and not isinstance(params.get(GATEWAY_PARAMS[method]), str):
        why = f"{method} needs params.{GATEWAY_PARAMS[method]} as a string"
    return Problem(INVALID_PARAMS, f"Invalid params: {why}", echo) if why else None


def _check_response(message: Message, echo: RequestId | None) -> Problem | None:
    if echo is None:
        return Problem(INVALID_REQUEST, 'Invalid Request: a response "id" must be the string or integer id of '
                                        f'the request it answers, not {_json_type(message["id"])}')
    if ("result" in message) == ("error" in message):
        return Problem(INVALID_REQUEST, 'Invalid Request: a response carries exactly one of "result" and "error"',
                       echo)
    if "result" in message:
        value = message["result"]
        if not isinstance(value, dict):
            return Problem(INVALID_REQUEST, f'Invalid Request: "result" must be an object, not {_json_type(value)}',
                           echo)
        why = _meta_problem(value, "result")
        return Problem(INVALID_REQUEST, f"Invalid Request: {why}", echo) if why else None
    body = message["error"]
    if not isinstance(body, dict) or not is_integer(body.get("code")) or not isinstance(body.get("message"), str):
        return Problem(INVALID_REQUEST, 'Invalid Request: "error" must be an object with an integer "code" and '
                                        'a string "message"', echo)
    return None


def _meta_problem(container: dict[str, Any], where: str) -> str | None:
    if "_meta" not in container:
        return None
    meta = container["_meta"]
    if not isinstance(meta, dict):
        return f"{where}._meta must be an object, not {_json_type(meta)}"
    if "progressToken" in meta and not valid_id(meta["progressToken"]):
        return f"{where}._meta.progressToken must be a string or an integer"
    task = meta.get(META_KEYS_WITH_RULES[1], {})
    if not isinstance(task, dict) or not isinstance(task.get("taskId", ""), str):
        return f"{where}._meta[{META_KEYS_WITH_RULES[1]!r}] must be an object with a string taskId"
    return None


def check_batch(messages: list[Any]) -> Problem | None:
    """A JSON-RPC batch (legacy SSE only): empty, or with any invalid member, it is refused whole,
    nothing in it acted on, the problem of every bad member listed."""
    if not messages:
        return Problem(INVALID_REQUEST, "Invalid Request: an empty batch")
    problems = [(index, problem) for index, problem in enumerate(validate(m) for m in messages) if problem]
    if not problems:
        return None
    first_index, first = problems[0]
    details = [{"index": index, "id": p.id, "code": p.code, "message": p.message} for index, p in problems]
    return Problem(first.code, f"batch member {first_index}: {first.message}; nothing in the batch was processed",
                   None, details)


_MEMBERS = {"request": ("jsonrpc", "id", "method", "params"), "notification": ("jsonrpc", "method", "params"),
            "response": ("jsonrpc", "id", "result", "error")}


def clean(message: Message) -> Message:
    """A valid message with only the members JSON-RPC defines (what the gateway sends upstream)."""
    members = _MEMBERS.get(kind(message), ())
    return {key: message[key] for key in members if key in message}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a number"
