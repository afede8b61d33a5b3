"""Upstream connections to MCP servers that speak HTTP themselves (HTTP+SSE and Streamable HTTP).

The session bridge talks to every upstream through one small interface, `StdioConnection`: send
one whole JSON-RPC message, receive the next one, close. For a stdio server that is a pair of
pipes. Here the same interface wraps ONE MCP client session to a server reached over HTTP:

* `sse` (2024-11-05): a GET opens the event stream; its first event, `endpoint`, names the URL
  every client message is POSTed to (answered 202); everything the server says arrives as
  `message` events on that one stream.
* `streamable-http` (2025-03-26, 2025-06-18, 2025-11-25): every client message is POSTed to the
  one endpoint. A request is answered with JSON or with an SSE stream carrying the response and
  whatever the server sends while working on it (progress, server-to-client requests);
  notifications and responses get 202. The initialize response issues `Mcp-Session-Id`, sent back
  on every later request together with the negotiated `MCP-Protocol-Version`; a GET opens a stream
  for messages tied to no request. A response stream the server closes early (2025-11-25 polling)
  or that drops is resumed with `Last-Event-ID`.

Whatever channel a message arrives on, it lands in one queue that `receive()` drains, so the bridge
sees what a stdio server would have printed. The end of the upstream (its session gone: 404; its
connection dropped) is `receive() -> None`, as EOF is for a pipe; the bridge then starts over.

Blocking `requests` calls run on threads: real threads under pytest, greenlets in the gevent worker
(where `threading`, `queue` and sockets are monkey-patched), so this module never imports gevent.
`close()` shuts down every socket the session opened, which wakes every thread blocked on one.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import json
import logging
import queue
import socket
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager

from gateway.jsonrpc import kind
from gateway.runtime import HttpEndpoint, StartFailed, StdioConnection

log = logging.getLogger(__name__)

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
# The JSON-RPC error code of the errors this module answers in the server's place.
UPSTREAM_ERROR = -32000

_READ_SIZE = 1 << 16
_BOM = b"\xef\xbb\xbf"
# Errors that mean "this HTTP exchange broke" once a response is being read.
_STREAM_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


# --- settings -----------------------------------------------------------------------------------


SETTINGS_ENV = {
    "connect_timeout": "NMCP_UPSTREAM_CONNECT_TIMEOUT",
    "request_timeout": "NMCP_UPSTREAM_REQUEST_TIMEOUT",
    "close_timeout": "NMCP_UPSTREAM_CLOSE_TIMEOUT",
    "reconnect_delay": "NMCP_UPSTREAM_RECONNECT_DELAY",
}


@dataclass(frozen=True)
class UpstreamSettings:
    """Timeouts of HTTP upstream sessions, in seconds."""

    connect_timeout: float = 10.0
    # How long a POST may wait for its answer (JSON body, or the next bytes of its SSE stream);
    # long enough for slow tools, short enough that a hung server does not hold a request forever.
    request_timeout: float = 300.0
    # How long close() waits for the DELETE and for its reader threads. (SSE's endpoint event and
    # Streamable HTTP's GET stream must come within connect_timeout.)
    close_timeout: float = 5.0
    # Pause before reopening a GET stream the server ended cleanly, unless the server sent `retry`.
    reconnect_delay: float = 1.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> UpstreamSettings:
        """Defaults overridden by `NMCP_UPSTREAM_*` variables; ValueError naming a bad one."""
        values: dict[str, float] = {}
        for name, var in SETTINGS_ENV.items():
            raw = environ.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a number of seconds") from None
            if not value > 0 or value == float("inf"):
                raise ValueError(f"{var}={raw!r} must be a positive, finite number of seconds")
            values[name] = value
        return cls(**values)


# --- server-sent events -------------------------------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: bytes
    id: str | None = None
    retry: int | None = None  # milliseconds


class SseParser:
    """Incremental parser of a `text/event-stream` (the WHATWG event-stream interpretation rules).

    Lines end in CRLF, LF or CR; `data` lines join with LF; an event is dispatched at a blank line;
    comments (`:` keep-alives) are dropped. Scans only new bytes, so a 16 MB data line costs O(n).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0
        self._started = False
        self._event = ""
        self._data: list[bytes] = []
        self._id: str | None = None
        self._retry: int | None = None
        self._id_seen = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by `chunk`."""
        buffer = self._buffer
        buffer += chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                return []  # too short to tell whether the stream starts with a byte order mark
            self._started = True
            if buffer.startswith(_BOM):
                del buffer[: len(_BOM)]
        events: list[SseEvent] = []
        start, pos = 0, self._scanned
        while True:
            lf = buffer.find(b"\n", pos)
            cr = buffer.find(b"\r", pos, lf if lf >= 0 else len(buffer))
            if cr >= 0:
                if cr + 1 == len(buffer):
                    pos = cr  # a CR that ends the chunk may be the first half of a CRLF
                    break
                line_end, next_start = cr, cr + 2 if buffer[cr + 1] == 0x0A else cr + 1
            elif lf >= 0:
                line_end, next_start = lf, lf + 1
            else:
                pos = len(buffer)
                break
            event = self._line(bytes(buffer[start:line_end]))
            if event is not None:
                events.append(event)
            start = pos = next_start
        del buffer[:start]
        self._scanned = pos - start
        return events

    def _line(self, line: bytes) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
                self._id_seen = True
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        event = None
        if self._data:
            event = SseEvent(self._event or "message", b"\n".join(self._data), self._id, self._retry)
        elif self._retry is not None or self._id_seen:
            event = SseEvent("", b"", self._id, self._retry)  # no message, but where to resume from
        self._event, self._data, self._retry, self._id_seen = "", [], None, False
        return event


@dataclass
class _Resumable:
    """Where an event stream stopped: what reopening it needs."""

    last_id: str | None = None
    retry: float | None = None  # seconds, as the server asked with `retry`

    def see(self, event: SseEvent) -> None:
        if event.id is not None:
            self.last_id = event.id
        if event.retry is not None:
            self.retry = event.retry / 1000


# --- JSON-RPC -----------------------------------------------------------------------------------


def parse_message(message: bytes) -> dict[str, Any]:
    """One outgoing JSON-RPC message as a dict; ValueError when it is not one."""
    try:
        doc = json.loads(message)
    except ValueError as exc:
        raise ValueError(f"not a JSON-RPC message: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON-RPC message: expected a JSON object")
    return doc


def answers(message: Mapping[str, Any], request_id: Any) -> bool:
    """Whether `message` is the response to the request with `request_id`."""
    return kind(message) == "response" and message.get("id") == request_id


def error_response(request_id: Any, message: str, status: int | None = None) -> dict[str, Any]:
    """The JSON-RPC error the bridge gets when the upstream cannot answer a request itself."""
    error: dict[str, Any] = {"code": UPSTREAM_ERROR, "message": message}
    if status is not None:
        error["data"] = {"httpStatus": status}
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def split_messages(data: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Each JSON-RPC message in one payload, with its single-line encoding; ValueError if not JSON."""
    doc = json.loads(data)
    if isinstance(doc, dict):
        # Pass the server's bytes through untouched unless they break the one-message-per-line contract.
        data = data.strip()
        yield doc, data if b"\n" not in data and b"\r" not in data else _encode(doc)
        return
    if not isinstance(doc, list):
        raise ValueError("expected a JSON-RPC object or batch")
    for item in doc:  # a 2025-03-26 batch: the bridge handles one message at a time
        if not isinstance(item, dict):
            raise ValueError("a batch entry is not a JSON-RPC object")
        yield item, _encode(item)


def _encode(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _snippet(response: requests.Response) -> str:
    try:
        text = response.text
    except _STREAM_ERRORS:
        return ""
    try:
        doc = json.loads(text)
        text = doc["error"]["message"]
    except (ValueError, KeyError, TypeError):
        pass
    return " ".join(text.split())[:200]


class StreamEnd(enum.Enum):
    CLEAN = "the server ended it"
    BROKEN = "the connection dropped"
    IDLE = "nothing came within the request timeout"


# --- sockets we can shut down -------------------------------------------------------------------


class _Sockets:
    """Every connection one upstream session opened, so close() can wake whoever blocks on one."""

    def __init__(self) -> None:
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, connection: Any) -> None:
        with self._lock:
            self._connections.add(connection)

    def shutdown(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if sock is None:
                continue
            with contextlib.suppress(OSError):  # already closed by its reader
                sock.shutdown(socket.SHUT_RDWR)


# TCP keep-alive: an event stream may rightly stay silent for hours, so no read timeout guards it;
# these find a peer that vanished without a word (a deleted pod, a dead node) within about a minute.
_KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}
_SOCKET_OPTIONS = [
    *HTTPConnection.default_socket_options,
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    *[(socket.IPPROTO_TCP, getattr(socket, name), value) for name, value in _KEEPALIVE.items()
      if hasattr(socket, name)],
]


class _TrackingAdapter(HTTPAdapter):
    """An HTTPAdapter whose connection pools register each new connection with `_Sockets`."""

    def __init__(self, sockets: _Sockets) -> None:
        self._sockets = sockets
        super().__init__(pool_connections=4, pool_maxsize=64)

    def _track(self, manager: PoolManager) -> None:
        sockets = self._sockets

        class Pool(HTTPConnectionPool):
            def _new_conn(self) -> Any:
                connection = super()._new_conn()
                sockets.add(connection)
                return connection

        class TlsPool(HTTPSConnectionPool):
            def _new_conn(self) -> Any:
                connection = super()._new_conn()
                sockets.add(connection)
                return connection

        manager.pool_classes_by_scheme = {"http": Pool, "https": TlsPool}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("socket_options", _SOCKET_OPTIONS)
        super().init_poolmanager(*args, **kwargs)
        self._track(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        self._track(manager)
        return manager


# --- the common part ----------------------------------------------------------------------------


class _HttpUpstream:
    """The queue, threads, sockets and end-of-stream handling both transports share."""

    def __init__(self, url: str, settings: UpstreamSettings) -> None:
        self.url = url
        self.settings = settings
        self._sockets = _Sockets()
        self._http = requests.Session()
        adapter = _TrackingAdapter(self._sockets)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        # Compression would make a proxy or server buffer event streams; these are loopback or
        # in-cluster hops anyway.
        self._http.headers["Accept-Encoding"] = "identity"
        self._inbox: queue.Queue[bytes | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._closing = threading.Event()
        self._ended = threading.Event()

    # StdioConnection

    def receive(self) -> bytes | None:
        """The next message from the server; None once the upstream has ended (and from then on)."""
        message = self._inbox.get()
        if message is None:
            self._inbox.put(None)
        return message

    def close(self) -> None:
        """End the session and release every socket; idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._goodbye()
        self._sockets.shutdown()
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(self.settings.close_timeout)
        self._http.close()
        self._end()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    # for the transports

    def _goodbye(self) -> None:
        """Tell the server the session is over (close(), before the sockets go)."""

    def _check_open(self) -> None:
        if self._ended.is_set() or self._closing.is_set():
            raise BrokenPipeError(f"upstream {self.url} has ended")

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"upstream {self.url}", daemon=True)
        with self._threads_lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _end(self) -> None:
        if not self._ended.is_set():
            self._ended.set()
            self._inbox.put(None)

    def _lost(self, why: str) -> None:
        """The upstream is gone: receive() ends, so the bridge fails in-flight calls and starts over."""
        if not self._closing.is_set() and not self._ended.is_set():
            log.warning("upstream %s ended: %s", self.url, why)
        self._end()

    def _fail(self, request_id: Any, why: str, status: int | None = None) -> None:
        """Answer one request in the server's place: the session goes on, the caller is not left waiting."""
        if self._closing.is_set() or self._ended.is_set():
            return
        log.warning("upstream %s: request %r failed: %s", self.url, request_id, why)
        self._inbox.put(_encode(error_response(request_id, f"upstream {self.url}: {why}", status)))

    def _deliver(self, data: bytes) -> list[dict[str, Any]]:
        """Queue every message of one payload for receive(); a payload that is not JSON-RPC is skipped."""
        if not data.strip():
            return []  # a priming event: an id to resume from, no message
        try:
            messages = list(split_messages(data))
        except ValueError as exc:
            log.warning("upstream %s sent a payload that is not JSON-RPC (%s), skipped: %.200r", self.url, exc, data)
            return []
        for doc, encoded in messages:
            self._on_message(doc)
            self._inbox.put(encoded)
        return [doc for doc, _ in messages]

    def _on_message(self, message: dict[str, Any]) -> None:
        """Look at a server message before the bridge sees it."""

    def _pump(self, response: requests.Response, on_event: Callable[[SseEvent], None]) -> StreamEnd:
        """Read an event stream to its end, handing each event to `on_event`; how it ended."""
        parser = SseParser()
        try:
            while True:
                chunk = response.raw.read1(_READ_SIZE, decode_content=True)
                if not chunk:
                    return StreamEnd.CLEAN
                for event in parser.feed(chunk):
                    on_event(event)
        except urllib3.exceptions.ReadTimeoutError:
            return StreamEnd.IDLE
        except _STREAM_ERRORS as exc:
            if not self._closing.is_set():
                log.info("upstream %s: stream broke: %s", self.url, exc)
            return StreamEnd.BROKEN


# --- 2024-11-05 HTTP+SSE ------------------------------------------------------------------------


class SseUpstream(_HttpUpstream):
    """One session over the legacy HTTP+SSE transport: GET the stream, POST to its `endpoint`."""

    def __init__(self, url: str, settings: UpstreamSettings | None = None) -> None:
        super().__init__(url, settings or UpstreamSettings())
        self._endpoint: str | None = None
        self._ready = threading.Event()
        self._error = ""
        self._spawn(self._listen)
        # The bridge's first send needs the endpoint: wait for it here, where a failure is clearest.
        if not self._ready.wait(self.settings.connect_timeout):
            self._error = self._error or "no endpoint event in time"
        if self._endpoint is None:
            self.close()
            raise StartFailed(f"upstream {url}: {self._error}", reason="UpstreamUnreachable")

    def send(self, message: bytes) -> None:
        """POST one message to the session's endpoint (the answer comes on the stream)."""
        self._check_open()
        doc = parse_message(message)
        request_id = doc.get("id") if kind(doc) == "request" else None
        try:
            response = self._http.post(
                self._endpoint, data=message, headers={"Content-Type": "application/json"},
                timeout=(self.settings.connect_timeout, self.settings.request_timeout))
        except requests.Timeout:
            if request_id is not None:
                self._fail(request_id, f"no answer to the POST within {self.settings.request_timeout:g}s")
            return
        except requests.RequestException as exc:
            self._lost(f"POST failed: {exc}")
            return
        with response:
            if response.status_code == 404:
                self._lost("the server no longer knows this session (404)")
            elif not response.ok:
                why = f"HTTP {response.status_code}: {_snippet(response)}"
                if request_id is not None:
                    self._fail(request_id, why, response.status_code)
                else:
                    log.warning("upstream %s refused a message: %s", self.url, why)

    def _listen(self) -> None:
        try:
            response = self._http.get(self.url, headers={"Accept": "text/event-stream"}, stream=True,
                                      timeout=(self.settings.connect_timeout, None))
        except requests.RequestException as exc:
            self._error = f"cannot open the event stream: {exc}"
            self._ready.set()
            self._end()
            return
        with response:
            if not response.ok or _media_type(response) != "text/event-stream":
                self._error = (f"GET answered HTTP {response.status_code} {_media_type(response) or '(no type)'}:"
                               f" {_snippet(response)}")
                self._ready.set()
                self._end()
                return
            self._pump(response, self._on_event)
        self._ready.set()
        self._error = self._error or "the event stream ended before its endpoint event"
        self._lost("the event stream ended")

    def _on_event(self, event: SseEvent) -> None:
        if event.event == "endpoint":
            self._endpoint = urljoin(self.url, event.data.decode("utf-8", "replace").strip())
            self._ready.set()
        elif event.event == "message":
            self._deliver(event.data)
        else:
            log.debug("upstream %s: ignored %r event", self.url, event.event)


# --- 2025 Streamable HTTP -----------------------------------------------------------------------


class StreamableHttpUpstream(_HttpUpstream):
    """One session over Streamable HTTP: POST each message, read JSON or SSE answers, GET the rest."""

    def __init__(self, url: str, settings: UpstreamSettings | None = None) -> None:
        super().__init__(url, settings or UpstreamSettings())
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._initialize_id: Any = None
        self._listening = threading.Event()

    def send(self, message: bytes) -> None:
        """POST one message. Requests are answered on their own thread (an answer may take as long
        as the tool, and may need another send first, e.g. a sampling result); others are POSTed
        here, in order."""
        self._check_open()
        doc = parse_message(message)
        if kind(doc) == "request":
            if doc["method"] == "initialize":
                self._initialize_id = doc["id"]
            self._spawn(self._request, doc["id"], doc["method"] == "initialize", message)
            return
        response = self._post(message, None)
        if response is None:
            return
        with response:
            if response.status_code == 404 and self.session_id:
                self._lost("the server no longer knows this session (404)")
                return
            if not response.ok:
                log.warning("upstream %s refused a message: HTTP %s: %s", self.url, response.status_code,
                            _snippet(response))
                return
            if _media_type(response) == "application/json":
                self._deliver(response.content)
        if doc.get("method") == "notifications/initialized" and not self._listening.is_set():
            # Wait until the GET stream is open (or refused): a server drops what it sends outside
            # any request while no GET stream is open, and the bridge's next request may trigger that.
            self._spawn(self._listen)
            self._listening.wait(self.settings.connect_timeout)

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if self.session_id:
            headers[SESSION_HEADER] = self.session_id
        if self.protocol_version:
            headers[VERSION_HEADER] = self.protocol_version
        return headers

    def _post(self, message: bytes, request_id: Any, stream: bool = False) -> requests.Response | None:
        """POST one message; None (after failing the request or ending the upstream) if no answer came."""
        headers = {**self._headers("application/json, text/event-stream"), "Content-Type": "application/json"}
        try:
            return self._http.post(self.url, data=message, headers=headers, stream=stream,
                                   timeout=(self.settings.connect_timeout, self.settings.request_timeout))
        except requests.Timeout:
            if request_id is not None:
                self._fail(request_id, f"no answer within {self.settings.request_timeout:g}s")
            else:
                log.warning("upstream %s: no answer to a POST within %gs", self.url, self.settings.request_timeout)
        except requests.RequestException as exc:
            self._lost(f"POST failed: {exc}")
        return None

    def _on_message(self, message: dict[str, Any]) -> None:
        # Later requests carry the negotiated version; it must be known before the bridge sees the
        # initialize result, since the bridge's next send may follow at once.
        if self._initialize_id is not None and answers(message, self._initialize_id):
            version = (message.get("result") or {}).get("protocolVersion")
            if isinstance(version, str):
                self.protocol_version = version

    def _request(self, request_id: Any, initialize: bool, message: bytes) -> None:
        response = self._post(message, request_id, stream=True)
        if response is None:
            return
        with response:
            if initialize and response.ok and response.headers.get(SESSION_HEADER):
                self.session_id = response.headers[SESSION_HEADER]
            kind = _media_type(response)
            if response.status_code == 404 and self.session_id and not initialize:
                self._lost("the server no longer knows this session (404)")
            elif response.ok and kind == "text/event-stream":
                self._answer_stream(response, request_id)
            elif response.ok and kind == "application/json":
                try:
                    body = response.content
                except _STREAM_ERRORS as exc:
                    self._lost(f"the answer broke off: {exc}")
                    return
                if not any(answers(m, request_id) for m in self._deliver(body)):
                    self._fail(request_id, f"HTTP {response.status_code} without an answer", response.status_code)
            else:  # an HTTP error; its JSON-RPC body (often with a null id) becomes the error's message
                self._fail(request_id, f"HTTP {response.status_code} {kind or '(no type)'}: {_snippet(response)}",
                           response.status_code)

    def _answer_stream(self, response: requests.Response, request_id: Any) -> None:
        """Read a request's SSE answer; resume it with GET + Last-Event-ID until the response came."""
        where = _Resumable()
        answered = False

        def on_event(event: SseEvent) -> None:
            nonlocal answered
            where.see(event)
            if event.event == "message" and any(answers(m, request_id) for m in self._deliver(event.data)):
                answered = True

        end = self._pump(response, on_event)
        response.close()
        while not answered and not self._closing.is_set() and not self._ended.is_set():
            if end is StreamEnd.IDLE:
                self._fail(request_id, f"no answer within {self.settings.request_timeout:g}s")
                return
            if where.last_id is None:
                if end is StreamEnd.BROKEN:
                    self._lost("an answer stream broke off")
                else:
                    self._fail(request_id, "the server closed the answer stream without answering")
                return
            # The server ended the connection, not the stream (2025-11-25 polling), or the connection
            # dropped: either way the rest is replayed after the last event id we saw.
            if end is StreamEnd.CLEAN and self._closing.wait(self._retry_delay(where)):
                return
            resumed = self._resume(where.last_id)
            if resumed is None:
                return
            with resumed:
                end = self._pump(resumed, on_event)

    def _retry_delay(self, where: _Resumable) -> float:
        return self.settings.reconnect_delay if where.retry is None else where.retry

    def _resume(self, last_id: str) -> requests.Response | None:
        headers = {**self._headers("text/event-stream"), "Last-Event-ID": last_id}
        try:
            response = self._http.get(self.url, headers=headers, stream=True,
                                      timeout=(self.settings.connect_timeout, self.settings.request_timeout))
        except requests.RequestException as exc:
            self._lost(f"cannot resume a stream: {exc}")
            return None
        if response.ok and _media_type(response) == "text/event-stream":
            return response
        with response:
            self._lost(f"cannot resume a stream: HTTP {response.status_code}: {_snippet(response)}")
        return None

    def _listen(self) -> None:
        """Hold the GET stream open for messages tied to no request, reopening it when it ends."""
        where = _Resumable()
        previous: StreamEnd | None = None

        def on_event(event: SseEvent) -> None:
            where.see(event)
            if event.event == "message":
                self._deliver(event.data)

        try:
            while not self._closing.is_set() and not self._ended.is_set():
                headers = self._headers("text/event-stream")
                if where.last_id is not None:
                    headers["Last-Event-ID"] = where.last_id
                try:
                    response = self._http.get(self.url, headers=headers, stream=True,
                                              timeout=(self.settings.connect_timeout, None))
                except requests.RequestException as exc:
                    self._lost(f"the GET stream cannot reconnect: {exc}")
                    return
                self._listening.set()
                with response:
                    if response.status_code == 405:
                        log.debug("upstream %s offers no GET stream", self.url)
                        return
                    if response.status_code == 404:
                        self._lost("the server no longer knows this session (404)")
                        return
                    if not response.ok or _media_type(response) != "text/event-stream":
                        log.warning("upstream %s: no GET stream: HTTP %s: %s", self.url, response.status_code,
                                    _snippet(response))
                        return
                    end = self._pump(response, on_event)
                # A clean end is the server's choice (polling): come back after its retry delay. A broken
                # stream is retried at once (if the server died, the reconnect fails and ends the
                # upstream), but not twice in a row, so a server that keeps breaking it is not hammered.
                if (end is StreamEnd.CLEAN or end is previous) and self._closing.wait(self._retry_delay(where)):
                    return
                previous = end
        finally:
            self._listening.set()

    def _goodbye(self) -> None:
        if self.session_id is None or self._ended.is_set():
            return
        try:
            self._http.delete(self.url, headers=self._headers("application/json, text/event-stream"),
                              timeout=(self.settings.connect_timeout, self.settings.close_timeout)).close()
        except requests.RequestException as exc:
            log.info("upstream %s: DELETE of the session failed: %s", self.url, exc)


def open_http_upstream(endpoint: HttpEndpoint, settings: UpstreamSettings | None = None) -> StdioConnection:
    """One MCP client session to an HTTP server, behind the interface of a stdio connection.

    For `sse` this connects at once (StartFailed, reason UpstreamUnreachable, if the stream or its
    endpoint event does not come); for `streamable-http` the first POST is the bridge's `initialize`,
    and an unreachable server ends `receive()`.
    """
    if endpoint.transport == "sse":
        return SseUpstream(endpoint.url, settings)
    if endpoint.transport == "streamable-http":
        return StreamableHttpUpstream(endpoint.url, settings)
    raise ValueError(f"unknown HTTP transport {endpoint.transport!r} (expected 'sse' or 'streamable-http')")
