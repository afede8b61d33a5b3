"""One MCP client session over Streamable HTTP (2025-03-26, 2025-06-18, 2025-11-25).

Every client message is POSTed to the one endpoint. A request is answered with JSON or with an
SSE stream carrying the response and whatever the server sends while working on it (progress,
server-to-client requests); notifications and responses get 202. The initialize response issues
`Mcp-Session-Id`, sent back on every later request together with the negotiated
`MCP-Protocol-Version`; a GET opens a stream for messages tied to no request. A response stream
the server closes early (2025-11-25 polling) or that drops is resumed with `Last-Event-ID`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests

from gateway.protocol.jsonrpc import Message, kind
from gateway.protocol.versions import SESSION_HEADER, VERSION_HEADER
from gateway.upstreams.http.events import Resumable, SseEvent
from gateway.upstreams.http.session import STREAM_ERRORS, HttpSession, StreamEnd, answers, media_type, snippet
from gateway.upstreams.http.settings import UpstreamSettings
from gateway.upstreams.port import OnClose, OnMessage

log = logging.getLogger(__name__)


class StreamableHttpUpstream(HttpSession):
    """One session over Streamable HTTP: POST each message, read JSON or SSE answers, GET the rest."""

    def __init__(self, url: str, settings: UpstreamSettings, on_message: OnMessage, on_close: OnClose,
                 max_message: int | None = None) -> None:
        super().__init__(url, settings, on_message, on_close, max_message)
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._initialize_id: Any = None
        self._listening = threading.Event()

    def send(self, message: Message) -> None:
        """POST one message. Requests are answered on their own thread (an answer may take as long
        as the tool, and may need another send first, e.g. a sampling result); others are POSTed
        here, in order."""
        data = self._encode(message)
        if kind(message) == "request":
            if message["method"] == "initialize":
                self._initialize_id = message["id"]
            self._spawn(self._request, message["id"], message["method"] == "initialize", data)
            return
        response = self._post(data, None)
        if response is None:
            return
        with response:
            if response.status_code == 404 and self.session_id:
                self._lost("the server no longer knows this session (404)")
                return
            if not response.ok:
                log.warning("upstream %s refused a message: HTTP %s: %s", self.url, response.status_code,
                            snippet(response))
                return
            if media_type(response) == "application/json":
                self._deliver(response.content)
        if message.get("method") == "notifications/initialized" and not self._listening.is_set():
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

    def _inspect(self, message: Message) -> None:
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
            answer_type = media_type(response)
            if response.status_code == 404 and self.session_id and not initialize:
                self._lost("the server no longer knows this session (404)")
            elif response.ok and answer_type == "text/event-stream":
                self._answer_stream(response, request_id)
            elif response.ok and answer_type == "application/json":
                try:
                    body = response.content
                except STREAM_ERRORS as exc:
                    self._lost(f"the answer broke off: {exc}")
                    return
                if not any(answers(m, request_id) for m in self._deliver(body)):
                    self._fail(request_id, f"HTTP {response.status_code} without an answer", response.status_code)
            else:  # an HTTP error; its JSON-RPC body (often with a null id) becomes the error's message
                self._fail(request_id, f"HTTP {response.status_code} {answer_type or '(no type)'}: {snippet(response)}",
                           response.status_code)

    def _answer_stream(self, response: requests.Response, request_id: Any) -> None:
        """Read a request's SSE answer; resume it with GET + Last-Event-ID until the response came."""
        where = Resumable()
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

    def _retry_delay(self, where: Resumable) -> float:
        return self.settings.reconnect_delay if where.retry is None else where.retry

    def _resume(self, last_id: str) -> requests.Response | None:
        headers = {**self._headers("text/event-stream"), "Last-Event-ID": last_id}
        try:
            response = self._http.get(self.url, headers=headers, stream=True,
                                      timeout=(self.settings.connect_timeout, self.settings.request_timeout))
        except requests.RequestException as exc:
            self._lost(f"cannot resume a stream: {exc}")
            return None
        if response.ok and media_type(response) == "text/event-stream":
            return response
        with response:
            self._lost(f"cannot resume a stream: HTTP {response.status_code}: {snippet(response)}")
        return None

    def _listen(self) -> None:
        """Hold the GET stream open for messages tied to no request, reopening it when it ends."""
        where = Resumable()
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
                    if not response.ok or media_type(response) != "text/event-stream":
                        log.warning("upstream %s: no GET stream: HTTP %s: %s", self.url, response.status_code,
                                    snippet(response))
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
