"""stdio of a container over `pods/attach`: the Kubernetes channel framing on a WebSocket.

The API server (and the kubelet behind it) multiplexes the container's streams on one WebSocket
(subprotocols `v5.channel.k8s.io`, else `v4.channel.k8s.io`): every binary message starts with
one byte naming its channel — 0 stdin, 1 stdout, 2 stderr, 3 error (a `metav1.Status` when
the stream ends), 4 terminal resize — and the rest is data. v5 adds channel 255, "close": its
one data byte names a channel the peer will not write again.

`AttachConnection` is a `gateway.runtime.StdioConnection` on top: stdout is split into lines,
stderr lines go to a log callback, and the end of the stream is always seen — by the reader,
or by the keep-alive pings when the connection dies silently — and reported (`on_end`), so
a dead attach never leaves a zombie session. When only the connection dropped (API server
restart, network) and the same container is still running, it reattaches to the same process:
the server keeps its state, output written while detached is lost. When the container restarted,
the stream ends: the bridge then requests, waits and connects again, which attaches to the new
container and initializes it.

The process is shared by every client session, so `close()` detaches without closing stdin
(our Pods set `stdin: true` and leave `stdinOnce` false: the container's stdin outlives an attach).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import websocket

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255
SUBPROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
MAX_LINE = 64 * 1024 * 1024  # MCP messages of 16 MB must pass; a runaway line must not eat memory


def frame(channel: int, data: bytes) -> bytes:
    """One channel message."""
    return bytes([channel]) + data


def close_frame(channel: int) -> bytes:
    """v5: "I will not write on `channel` again"."""
    return bytes([CLOSE, channel])


def parse(message: bytes) -> tuple[int, bytes]:
    """(channel, data) of one message; an empty message is (-1, b"")."""
    if not message:
        return -1, b""
    return message[0], message[1:]


class LineSplitter:
    """Newline-delimited lines out of a byte stream arriving in arbitrary pieces."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._limit = limit
        self.dropped = 0  # lines longer than the limit, discarded

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        lines: list[bytes] = []
        while (end := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            lines.append(line)
        if len(self._buf) > self._limit:
            self._buf.clear()
            self.dropped += 1
        return lines

    def reset(self) -> None:
        self._buf.clear()


def exit_reason(status: bytes) -> str:
    """What an error-channel `metav1.Status` says, in one line."""
    try:
        body: Any = json.loads(status)
    except ValueError:
        return status.decode("utf-8", "replace")[:300]
    if not isinstance(body, dict):
        return str(body)[:300]
    if body.get("status") == "Success":
        return "the container's streams ended"
    causes = body.get("details", {}).get("causes") or []
    code = next((c.get("message") for c in causes if c.get("reason") == "ExitCode"), None)
    message = str(body.get("message") or body.get("reason") or "failed")
    return f"{message} (exit code {code})" if code else message


class AttachConnection:
    """A StdioConnection over `pods/attach`; see the module docstring."""

    def __init__(self, name: str, open_socket: Callable[[], websocket.WebSocket], *,
                 on_stderr: Callable[[str], None] | None = None,
                 can_reattach: Callable[[], bool] | None = None,
                 on_end: Callable[[AttachConnection, str], None] | None = None,
                 ping_interval: float = 20.0, reattach_for: float = 30.0) -> None:
        self.name = name
        self._open = open_socket
        self._on_stderr = on_stderr or (lambda line: log.info("%s stderr: %s", name, line))
        self._can_reattach = can_reattach or (lambda: False)
        self._on_end = on_end
        self._ping_interval = ping_interval
        self._reattach_for = reattach_for
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stdout = LineSplitter()
        self._stderr = LineSplitter()
        self._send_lock = threading.Lock()
        self._connected = threading.Event()
        self._closed = False
        self.ended: str | None = None  # why the stream ended, once it has
        self.reattached = 0
        self._last_seen = time.monotonic()
        self._ws = self._connect()
        self._connected.set()
        self.protocol = self._ws.subprotocol or ""
        threading.Thread(target=self._read, name=f"attach {name}", daemon=True).start()
        if ping_interval > 0:
            threading.Thread(target=self._keepalive, name=f"attach ping {name}", daemon=True).start()

    def _connect(self) -> websocket.WebSocket:
        ws = self._open()
        if ws.subprotocol not in SUBPROTOCOLS:
            ws.close()
            raise websocket.WebSocketException(f"attach to {self.name}: the server chose subprotocol "
                                               f"{ws.subprotocol!r}, not one of {', '.join(SUBPROTOCOLS)}")
        ws.settimeout(None)  # reads block; liveness comes from the keep-alive pings
        self._last_seen = time.monotonic()
        return ws

    # ---- StdioConnection ----------------------------------------------------------------

    def send(self, message: bytes) -> None:
        if not self._connected.wait(self._reattach_for + 5) or self.ended:
            raise ConnectionError(f"attach to {self.name} ended: {self.ended or 'not connected'}")
        with self._send_lock:
            try:
                self._ws.send_binary(frame(STDIN, message + b"\n"))
            except (OSError, websocket.WebSocketException) as err:
                self._ws.abort()  # the reader sees the end and decides: reattach or report
                raise ConnectionError(f"attach to {self.name}: {err}") from err

    def receive(self, timeout: float | None = None) -> bytes | None:
        """As `StdioConnection.receive`; with a timeout, `queue.Empty` when no line came in time."""
        line = self._lines.get(timeout=timeout)
        if line is None:
            self._lines.put(None)  # the end stays the end for every later call
        return line

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._send_lock:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self._ws.send_close()
            self._ws.abort()

    @property
    def alive(self) -> bool:
        return self.ended is None

    # ---- reading ------------------------------------------------------------------------

    def _read(self) -> None:
        while True:
            reason = self._pump(self._ws)
            self._connected.clear()
            self._ws.shutdown()
            if self._closed:
                self._finish("closed by the gateway")
                return
            if reason is None and self._reattach():
                continue
            self._finish(reason or "the attach connection dropped and the container did not stay the same")
            return

    def _pump(self, ws: websocket.WebSocket) -> str | None:
        """Read one WebSocket until it ends: a reason when the container's streams ended, None on a drop."""
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except (OSError, websocket.WebSocketException) as err:
                log.info("%s: attach connection lost: %s", self.name, err)
                return None
            self._last_seen = time.monotonic()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return None  # the server may close for its own reasons (restart): try to reattach
            if opcode not in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT):
                continue  # ping / pong
            channel, payload = parse(data if isinstance(data, bytes) else data.encode())
            if channel == STDOUT:
                for line in self._stdout.feed(payload):
                    self._lines.put(line)
            elif channel == STDERR:
                for line in self._stderr.feed(payload):
                    self._on_stderr(line.decode("utf-8", "replace"))
            elif channel == ERROR and payload:
                return exit_reason(payload)
            elif channel == CLOSE and payload[:1] == bytes([STDOUT]):
                return "the container closed its stdout"

    def _reattach(self) -> bool:
        deadline = time.monotonic() + self._reattach_for
        delay = 0.5
        while not self._closed and time.monotonic() < deadline:
            try:
                if not self._can_reattach():
                    return False
                ws = self._connect()
            except Exception as err:  # the API server may still be restarting: retry until the deadline
                log.info("%s: reattach failed: %s", self.name, err)
                time.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            with self._send_lock:
                self._ws = ws
            self._connected.set()  # only now may senders write again: to the new socket
            self._stdout.reset()  # a line cut by the drop cannot be completed
            self._stderr.reset()
            self.reattached += 1
            log.info("%s: reattached to the same container", self.name)
            return True
        return False

    def _finish(self, reason: str) -> None:
        self.ended = reason
        self._connected.set()  # wake senders: they see `ended`
        if not self._closed:
            log.warning("%s: attach ended: %s", self.name, reason)
            if self._on_end is not None:
                self._on_end(self, reason)  # reported before the reader learns of the end
        self._lines.put(None)

    def _keepalive(self) -> None:
        """Ping; a connection that answers nothing for two intervals is dead: abort it."""
        while self.ended is None and not self._closed:
            time.sleep(self._ping_interval)
            if not self._connected.is_set():
                continue
            if time.monotonic() - self._last_seen > 2 * self._ping_interval:
                log.warning("%s: no answer to pings for %.0fs; dropping the attach", self.name,
                            time.monotonic() - self._last_seen)
                self._ws.abort()
                continue
            with self._send_lock:
                try:
                    self._ws.ping()
                except (OSError, websocket.WebSocketException):
                    self._ws.abort()
