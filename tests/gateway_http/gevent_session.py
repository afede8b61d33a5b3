"""One HTTP upstream session driven the way the gateway's gevent worker runs it, in a subprocess
(gevent must never be imported into the pytest process).

`python gevent_session.py URL TRANSPORT` prints one JSON summary line: what came back, and how
many sockets were left open after close().
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.queue  # noqa: E402

from gateway.runtime import HttpEndpoint  # noqa: E402
from gateway.upstreams.http import open_http_upstream  # noqa: E402


def sockets() -> set[str]:
    links = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:"):
            links.add(link)
    return links


def main() -> None:
    url, transport = sys.argv[1], sys.argv[2]
    before = sockets()
    inbox: gevent.queue.Queue = gevent.queue.Queue()
    waiting: dict[int, gevent.event.AsyncResult] = {}
    progress: list[float] = []

    def on_message(message: dict) -> None:
        if message.get("method") == "sampling/createMessage":
            # Answered as it arrives, while the tool call that caused it is still open.
            conn.send({"jsonrpc": "2.0", "id": message["id"], "result": {
                "role": "assistant", "model": "m", "content": {"type": "text", "text": "from gevent"}}})
        elif message.get("method") == "notifications/progress":
            progress.append(message["params"]["progress"])
        elif "id" in message and message["id"] in waiting:
            waiting.pop(message["id"]).set(message)

    conn = open_http_upstream(HttpEndpoint(url, transport), None, on_message, lambda _: inbox.put("ended"))

    def call(request_id: int, method: str, params: dict) -> dict:
        waiting[request_id] = gevent.event.AsyncResult()
        result = waiting[request_id]
        conn.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return result.get(timeout=30)["result"]

    call(1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
                           "clientInfo": {"name": "gevent", "version": "0"}})
    conn.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    # Three calls at once on one session, one of which needs a server-to-client request answered.
    jobs = [
        gevent.spawn(call, 2, "tools/call", {"name": "trigger-long-running-operation",
                                             "arguments": {"duration": 1, "steps": 2}, "_meta": {"progressToken": 1}}),
        gevent.spawn(call, 3, "tools/call", {"name": "trigger-sampling-request",
                                             "arguments": {"prompt": "p", "maxTokens": 5}}),
        gevent.spawn(call, 4, "tools/call", {"name": "echo", "arguments": {"message": "green"}}),
    ]
    gevent.joinall(jobs, timeout=60, raise_error=True)
    texts = [job.value["content"][0]["text"] for job in jobs]
    conn.close()
    ended = inbox.get(timeout=10)
    print(json.dumps({"texts": texts, "progress": progress, "ended": ended, "leaked": len(sockets() - before)}))


if __name__ == "__main__":
    main()
