"""One MCP client session over the legacy HTTP+SSE transport (2024-11-05).

A GET opens the event stream; its first event, `endpoint`, names the URL every client message is
POSTed to (answered 202); everything the server says arrives as `message` events on that one
stream.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urljoin

import requests

from gateway.protocol.jsonrpc import Message, kind
from gateway.runtime import StartFailed
from gateway.upstreams.http.events import SseEvent
from gateway.upstreams.http.session import HttpSession, media_type, snippet
from gateway.upstreams.http.settings import UpstreamSettings
from gateway.upstreams.port import OnClose, OnMessage
from nmcp.model.vocabulary import Reason

log = logging.getLogger(__name__)


class SseUpstream(HttpSession):
    """One session over the legacy HTTP+SSE transport: GET the stream, POST to its `endpoint`."""

    def __init__(self, url: str, settings: UpstreamSettings, on_message: OnMessage, on_close: OnClose,
                 max_message: int | None = None) -> None:
        super().__init__(url, settings, on_message, on_close, max_message)
        self._endpoint: str | None = None
        self._ready = threading.Event()
        self._error = ""
        self._spawn(self._listen)
        # The bridge's first send needs the endpoint: wait for it here, where a failure is clearest.
        if not self._ready.wait(self.settings.connect_timeout):
            self._error = self._error or "no endpoint event in time"
        if self._endpoint is None:
            self.close()
            raise StartFailed(f"upstream {url}: {self._error}", reason=Reason.UPSTREAM_UNREACHABLE)

    def send(self, message: Message) -> None:
        """POST one message to the session's endpoint (the answer comes on the stream)."""
        data = self._encode(message)
        request_id = message.get("id") if kind(message) == "request" else None
        try:
            response = self._http.post(
                self._endpoint, data=data, headers={"Content-Type": "application/json"},
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
                why = f"HTTP {response.status_code}: {snippet(response)}"
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
            if not response.ok or media_type(response) != "text/event-stream":
                self._error = (f"GET answered HTTP {response.status_code} {media_type(response) or '(no type)'}:"
                               f" {snippet(response)}")
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
