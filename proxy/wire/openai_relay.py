"""`/v1/chat/completions` streams passed through: the upstream's own `chat.completion.chunk` events go to
the client as they arrived, with only the `model` rewritten to the name the client asked for.

Used when the upstream speaks this format itself (an adapter whose `stream_wire` is
`StreamWire.OPENAI_CHAT`); the pipeline decides (`proxy.pipeline.Call.stream`). A read whose events
are each one `data: {...}` line with the model and no usage or error passes with byte searches in C,
never decoded: JSON strings hold neither a raw line feed nor an unescaped `"`, so a `"model":` or
`"usage":` found in the bytes is always an object key. The other events (the usage chunk, errors,
`[DONE]`, anything unusual) go one by one through the adapter's stream parser, which raises for
errors and malformed events as on the translated stream. The fast path checks the events' framing,
not their JSON types: the client's SDK reads what the provider wrote.

What the client sees against the translated stream (`proxy.wire.openai.ChatStream`): the upstream's
`id`, `created` and extra fields (`system_fingerprint`, `service_tier`, a reasoner's
`reasoning_content`) instead of the gateway's own id and time, as the non-streaming answer keeps them,
and `"usage": null` on content chunks where the upstream writes it; the `openai` SDK reads both alike.
Usage is left out unless the client asked for it (`stream_options.include_usage`), as on the
translated stream; `[DONE]` is the renderer's, written once the parser has seen the stream end.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ..contract import Relayed, StreamWire
from ..errors import GatewayError
from ..sse import DEFAULT_MAX_EVENT_BYTES, FrameTooLarge, SSEDecoder, SSEEvent, whole_events
from ..types import Usage

# `"model": "..."` (or null) anywhere in the bytes: a key, since a string's own quotes are escaped
_MODEL = re.compile(rb'"model"\s*:\s*(?:"[^"\\]*(?:\\.[^"\\]*)*"|null)')
_VALUE = re.compile(rb'\s*:\s*(n?)')  # after a key: its value is null when the group matched
_DONE_EVENT = b"data: [DONE]\n\n"
_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()
_NOTHING = Relayed(b"")


class ChatRelay:
    """One pass-through stream. `feed` takes the upstream's bytes as they arrive and returns the client's."""

    wire = StreamWire.OPENAI_CHAT

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = msgspec.Raw(_encoder.encode(model))
        self._model_field = b'"model":' + bytes(self.model)
        self.include_usage = include_usage
        self._buf = bytearray()  # the start of an event whose end has not arrived
        self._upstream_model = b""  # the upstream's `"model":"..."`, as it wrote it in the last block
        self._decoder: SSEDecoder | None = None  # once the stream is not LF-framed, every event is decoded

    def feed(self, chunk: bytes, parser: Any) -> Relayed:
        if self._decoder is not None or b"\r" in chunk:
            if self._decoder is None:
                self._decoder = SSEDecoder()
                chunk = bytes(self._buf) + chunk
                self._buf.clear()
            return self._events(self._decoder.feed(chunk), parser)
        buf = self._buf
        whole = whole_events(buf, chunk)
        if len(buf) > DEFAULT_MAX_EVENT_BYTES:
            raise FrameTooLarge(DEFAULT_MAX_EVENT_BYTES)
        if not whole:
            return _NOTHING
        # the stream's last events, [DONE] and the usage chunk, go to the parser; those before pass as a block
        cut = len(whole) - len(_DONE_EVENT) if whole.endswith(_DONE_EVENT) else len(whole)
        before = whole.rfind(b"\n\n", 0, cut - 2)
        last = before + 2 if before >= 0 else 0
        if cut and _valued(whole[last:cut], b'"usage"') >= 0:
            cut = last
        head = whole[:cut] if cut < len(whole) else whole
        plain = self._plain(head) if head else b""
        if plain is None:
            return self._split(whole, parser)
        if cut == len(whole):
            return Relayed(plain)
        rest = self._split(whole[cut:], parser)
        return Relayed(plain + rest.data, rest.usage, rest.error) if plain else rest

    def close(self, parser: Any) -> Relayed:
        """The upstream ended: the last event, if it had no blank line, then the parser's end check."""
        if self._decoder is not None:
            out = self._events(self._decoder.close(), parser)
        else:
            rest = bytes(self._buf)
            self._buf.clear()
            out = self._events(SSEDecoder().feed(rest + b"\n\n"), parser) if rest.strip() else _NOTHING
        if out.error is None:
            try:
                parser.finish()
            except GatewayError as err:
                return Relayed(out.data, out.usage, err)
        return out

    # ---------------------------------------------------------------------------------------------

    def _plain(self, block: bytes) -> bytes | None:
        """A block of whole `data: {...}` events, each with one `model` key and no usage or error: the block
        with the model rewritten, in a few passes in C; None when the block is not like that (an event of
        another kind, or one without its model, makes the count differ). Lines that SSE readers skip
        (comments, `id:`, `retry:`) pass along with it."""
        if not block.startswith(b"data: {") or _valued(block, b'"usage"') >= 0 or _valued(block, b'"error"') >= 0:
            return None
        # events: `data: ` after a blank line; one that is not JSON, or a named one, has no model of its own
        n = block.count(b"\n\ndata: ") + 1
        old, new = self._upstream_model, self._model_field
        if not old or old not in block:
            m = _MODEL.search(block)
            if m is None:
                return None
            old = self._upstream_model = m.group()
        out = block.replace(old, new)
        found = (len(out) - len(block)) // (len(new) - len(old)) if len(new) != len(old) else block.count(old)
        if found == n:
            return out
        out, found = _MODEL.subn(new, block)  # not the same model bytes in every event
        return out if found == n else None

    def _split(self, block: bytes, parser: Any) -> Relayed:
        """Event by event, for a block of whole events."""
        return self._events(SSEDecoder().feed(block), parser)

    def _events(self, events: list[SSEEvent], parser: Any) -> Relayed:
        out: list[bytes] = []
        usage: list[Usage] = []
        for event in events:
            try:
                frame = self._event(event, parser, usage)
            except GatewayError as err:  # what came before it still reaches the client
                return Relayed(b"".join(out), tuple(usage), err)
            if frame:
                out.append(frame)
        return Relayed(b"".join(out), tuple(usage)) if out or usage else _NOTHING

    def _event(self, event: SSEEvent, parser: Any, usage: list[Usage]) -> bytes | None:
        """An event off the fast path: the parser reads it whole (it raises for an error or a malformed
        event, and notes the end at [DONE]), then its model is set."""
        counted = False
        for delta in parser.feed(event):
            if delta.usage is not None:
                usage.append(delta.usage)
                counted = True
        data = event.data.strip()
        if not data or data.upper() == "[DONE]":
            return None  # the renderer writes [DONE] once the stream has ended properly
        fields = _fields.decode(data)  # an object: the parser has read it
        fields["model"] = self.model
        if counted and not self.include_usage:
            del fields["usage"]
            choices = fields.get("choices")
            if choices is None or not bytes(choices).strip(b" \t\r\n[]"):
                return None  # the usage chunk, which the client did not ask for
        return b"data: " + _encoder.encode(fields) + b"\n\n"


def _valued(block: bytes, key: bytes) -> int:
    """Where the first `key` whose value is not null is in `block`, or -1 (OpenAI writes `"usage":null`
    in every chunk when usage is asked for)."""
    at = block.find(key)
    if at < 0 or block.count(key, at) == block.count(key + b":null", at):
        return -1
    while at >= 0:
        m = _VALUE.match(block, at + len(key))
        if m is not None and not m.group(1):
            return at
        at = block.find(key, at + len(key))
    return -1
