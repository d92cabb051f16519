"""The one reader of the gateway's SSE answers in the tests: ES `_stream` framing and OpenAI's."""

from __future__ import annotations

BOM = "\ufeff"  # ES writes a byte-order mark before every event (`ServerSentEventSpec.BOM`)


def parse_sse(raw: str | bytes) -> list[tuple[str, str]]:
    """(event, data) pairs of an ES stream: every event starts with a BOM and has one data line."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        assert block.startswith(BOM), repr(block[:200])
        lines = block[len(BOM):].split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block[:200]
        events.append((lines[0][7:], lines[1][6:]))
    return events


def openai_events(raw: bytes) -> list[str]:
    """The data payloads of an OpenAI stream."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: ") and "\n" not in block, block[:200]
        out.append(block[6:])
    return out
