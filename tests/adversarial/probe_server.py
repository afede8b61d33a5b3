"""A stdio MCP server that shows what it was given, and crashes on request.

Plain newline-delimited JSON-RPC with the standard library only (it starts in milliseconds):
`initialize`, `ping`, `tools/list`, and `tools/call` of
* `environment`: its whole environment, as a JSON object;
* `echo`: its `text` argument;
* `crash`: exits with status 3 at once, without answering.
At start it writes to stderr each variable named in PROBE_PRINT (comma-separated) as
`NAME=value`, as a careless server logs its configuration. `python probe_server.py`.
"""

from __future__ import annotations

import json
import os
import sys

TOOLS = [
    {"name": "environment", "description": "The process environment.", "inputSchema": {"type": "object"}},
    {"name": "echo", "description": "Return text.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "crash", "description": "Exit at once.", "inputSchema": {"type": "object"}},
]


def answer(request: dict, result: dict) -> None:
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}) + "\n")
    sys.stdout.flush()


def text(value: str) -> dict:
    return {"content": [{"type": "text", "text": value}], "isError": False}


def main() -> None:
    for name in filter(None, os.environ.get("PROBE_PRINT", "").split(",")):
        print(f"{name}={os.environ.get(name, '')}", file=sys.stderr, flush=True)
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if "id" not in request:
            continue  # a notification
        method = request.get("method")
        if method == "initialize":
            answer(request, {"protocolVersion": request["params"]["protocolVersion"],
                             "capabilities": {"tools": {}}, "serverInfo": {"name": "probe", "version": "1"}})
        elif method == "ping":
            answer(request, {})
        elif method == "tools/list":
            answer(request, {"tools": TOOLS})
        elif method == "tools/call":
            params = request.get("params") or {}
            tool = params.get("name")
            if tool == "crash":
                print("probe: crashing as asked", file=sys.stderr, flush=True)
                os._exit(3)
            elif tool == "environment":
                answer(request, text(json.dumps(dict(os.environ))))
            else:
                answer(request, text(str((params.get("arguments") or {}).get("text", ""))))
        else:
            sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request["id"],
                                         "error": {"code": -32601, "message": f"no method {method}"}}) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
