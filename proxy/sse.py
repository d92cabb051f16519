"""Pure framing codecs for upstream streams: an incremental SSE decoder and an NDJSON decoder.

Bytes go in as they arrive from the socket, in pieces of any size; complete frames come out. Lines
are split on bytes (CR, LF or CRLF are all ASCII), so a multi-byte UTF-8 character cut between two
reads is only decoded once its line is whole. No line-length cap from the HTTP library applies;
our own bound (`max_event_bytes`) turns a runaway event into an error instead of unbounded memory.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from .errors import UpstreamError

DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEEvent(msgspec.Struct, frozen=True):
    data: str
    event: str = "message"
    id: str | None = None


class FrameDecoder(Protocol):
    """Bytes in as they arrive, complete frames out; `close` at the end of input."""

    def feed(self, chunk: bytes) -> list[Any]: ...
    def close(self) -> list[Any]: ...


class FrameTooLarge(UpstreamError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"An upstream stream event exceeded {limit} bytes", upstream_status=502, status=502)


class SSEDecoder:
    """Incremental `text/event-stream` decoder (WHATWG rules: data lines joined by LF, comments skipped)."""

    __slots__ = ("_buf", "_data", "_event", "_id", "_has_data", "_pending_cr", "_size", "limit")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._has_data = False
        self._pending_cr = False
        self._size = 0
        self.limit = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        buf = self._buf
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF split across two reads
        self._pending_cr = False
        buf += chunk
        if b"\r" not in buf:  # LF line ends, as providers send them: split in C, not line by line
            data = bytes(buf)
            if not self._has_data and not self._event:
                # at an event boundary: whole events are cut at their blank lines, and the usual one, a
                # single `data: ` line, needs no line-by-line pass
                whole, sep, data = data.rpartition(b"\n\n")
                if sep:
                    self._events(whole, events)
            *lines, rest = data.split(b"\n")
            for line in lines:
                self._line(line, events)
            if lines or len(rest) != len(buf):
                buf.clear()
                buf += rest
            if len(buf) + self._size > self.limit:
                raise FrameTooLarge(self.limit)
            return events
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else n)
            if cr >= 0:
                end, nxt = cr, cr + 1
                if nxt < n and buf[nxt] == 10:
                    nxt += 1
                elif nxt == n:
                    self._pending_cr = True
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            self._line(bytes(buf[start:end]), events)
            start = nxt
        del buf[:start]
        if len(buf) + self._size > self.limit:
            raise FrameTooLarge(self.limit)
        return events

    def _events(self, whole: bytes, events: list[SSEEvent]) -> None:
        """Whole events, the last one's blank line excluded, seen from an event boundary."""
        if len(whole) > self.limit:  # then one of them may be too large: each is checked
            for block in whole.split(b"\n\n"):
                if len(block) > self.limit:
                    raise FrameTooLarge(self.limit)
        event_id = self._id
        for block in whole.split(b"\n\n"):
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append(SSEEvent(block[6:].decode("utf-8", "replace"), "message", event_id))
            else:
                for line in block.split(b"\n"):
                    self._line(line, events)
                self._line(b"", events)

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        if not raw:
            if self._has_data:
                events.append(SSEEvent("\n".join(self._data), self._event or "message", self._id))
            self._data, self._event, self._has_data, self._size = [], "", False, 0
            return
        if raw[0] == 58:  # ':' comment / keep-alive
            return
        if raw.startswith(b"data:"):  # the common line, without decoding its name
            self._data.append(raw[6 if raw[5:6] == b" " else 5:].decode("utf-8", "replace"))
            self._has_data = True
            self._size += len(raw)
            if self._size > self.limit:
                raise FrameTooLarge(self.limit)
            return
        line = raw.decode("utf-8", "replace")
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
            self._size += len(raw)
            if self._size > self.limit:
                raise FrameTooLarge(self.limit)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value

    def close(self) -> list[SSEEvent]:
        """End of input: a final event without its blank line still counts (as browsers do not)."""
        events: list[SSEEvent] = []
        if self._buf:
            self._line(bytes(self._buf), events)
            self._buf.clear()
        if self._has_data:
            events.append(SSEEvent("\n".join(self._data), self._event or "message", self._id))
            self._data, self._has_data = [], False
        return events


class NDJSONDecoder:
    """Newline-delimited JSON: one complete line (bytes, without its newline) per frame."""

    __slots__ = ("_buf", "limit")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self.limit = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        lines = self._buf.split(b"\n")
        self._buf = bytearray(lines.pop())
        if len(self._buf) > self.limit:
            raise FrameTooLarge(self.limit)
        return [line.strip() for line in lines if line.strip()]

    def close(self) -> list[bytes]:
        rest = bytes(self._buf).strip()
        self._buf.clear()
        return [rest] if rest else []


def whole_events(pending: bytearray, chunk: bytes) -> bytes:
    """The LF-framed events that `chunk` completes (each ends with a blank line), as one bytes; what
    follows the last of them stays in `pending`, which grows with the next reads instead of being
    copied whole each time."""
    if not pending:  # the usual read: whole events, or whole events and the start of one
        end = chunk.rfind(b"\n\n")
        if end < 0:
            pending += chunk
            return b""
        pending += chunk[end + 2:]
        return chunk[:end + 2] if end + 2 < len(chunk) else chunk
    start = len(pending)
    pending += chunk
    end = pending.rfind(b"\n\n", max(0, start - 1))
    if end < 0:
        return b""
    whole = bytes(pending[:end + 2])
    del pending[:end + 2]
    return whole
