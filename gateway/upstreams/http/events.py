"""Server-sent events as an HTTP upstream reads them: the incremental parser, and where a stream
stopped (what resuming it needs)."""

from __future__ import annotations

from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"


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
class Resumable:
    """Where an event stream stopped: what reopening it needs."""

    last_id: str | None = None
    retry: float | None = None  # seconds, as the server asked with `retry`

    def see(self, event: SseEvent) -> None:
        if event.id is not None:
            self.last_id = event.id
        if event.retry is not None:
            self.retry = event.retry / 1000
