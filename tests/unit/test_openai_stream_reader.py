"""The fused OpenAI stream reader (`OpenAIStreamReader`) against the general path it shortcuts (the SSE
decoder's events through `OpenAIStreamParser`, as `FramedReader` reads them): on the same bytes, cut
into the same reads, each read gives the same deltas and the same error."""

from __future__ import annotations

import random

import pytest

from adapters.base import FramedReader
from adapters.openai_compat import OpenAIStreamParser, OpenAIStreamReader
from proxy.errors import GatewayError
from proxy.sse import SSEDecoder


def chunk(content: str = "hi", extra: str = "", delta_extra: str = "") -> bytes:
    return (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
            b'"delta":{"content":"' + content.encode() + b'"' + delta_extra.encode() + b'},"finish_reason":null}]'
            + extra.encode() + b"}\n\n")


FIRST = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
         b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}\n\n')
FINISH = b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
USAGE = (b'data: {"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,'
         b'"total_tokens":5,"prompt_tokens_details":{"cached_tokens":1}}}\n\n')
DONE = b"data: [DONE]\n\n"
TEXT = b"".join(chunk(f"tok{i} ") for i in range(6))
TOOLS = (b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1",'
         b'"type":"function","function":{"name":"f","arguments":""}}]}}]}\n\n'
         b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,'
         b'"function":{"arguments":"{\\"a\\": 1}"}}]}}]}\n\n')

STREAMS = {
    "plain": FIRST + TEXT + FINISH + USAGE + DONE,
    "no [DONE]": FIRST + TEXT + FINISH,
    "unicode and escapes": chunk("caf\u00e9 \u65e5\u672c \U0001f642") + chunk('a \\"q\\" \\n \\u00e9 \\/') + DONE,
    "tools, reasoning, logprobs, other choices": (
        FIRST + TOOLS + chunk("", delta_extra=',"reasoning_content":"think"') + chunk("r", delta_extra=',"reasoning":"x"')
        + b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"l"},"logprobs":{"content":[]}}]}\n\n'
        + b'data: {"id":"c1","model":"m","choices":[{"index":1,"delta":{"content":"n1"}}]}\n\n' + FINISH + DONE),
    "comments and named events": b": keep-alive\n\n" + TEXT + b": ping\n" + chunk() + b"event: message\n" + chunk()
                                 + DONE,
    "id and retry lines": b"retry: 100\n" + chunk() + b"id: 7\n" + chunk() + DONE,
    "CRLF from the middle on": TEXT + chunk().replace(b"\n", b"\r\n") + chunk() + DONE,
    "CR only": (TEXT + DONE).replace(b"\n", b"\r"),
    "data without its space": TEXT + b'data:{"id":"c1","model":"m","choices":[]}\n\n' + DONE,
    "multi-line data": TEXT + b'data: {"id":"c1","model":"m",\ndata: "choices":[]}\n\n' + DONE,
    "a field line that would end the JSON": TEXT + b'data: {"id":"c1","model":\n"m","choices":[]}\n\n' + chunk() + DONE,
    "extra blank lines": TEXT + b"\n\n" + chunk() + b"\n\n\n" + chunk() + DONE,
    "trailing space": chunk()[:-2] + b" \n\n" + chunk() + DONE,
    "[DONE] not last": TEXT + DONE + chunk() + DONE,
    "[DONE] variants": TEXT + b"data: [done]\n\n" + chunk() + b"data:[DONE]\n\n",
    "[DONE] without its blank line": TEXT + b"data: [DONE]",
    "last event without its blank line": TEXT + chunk()[:-2],
    "error event": TEXT + b'event: error\ndata: {"error":{"message":"overloaded"}}\n\n' + chunk() + DONE,
    "error chunk": TEXT + b'data: {"error":{"message":"quota","type":"rate_limit"}}\n\n' + chunk() + DONE,
    "malformed event": TEXT + b'data: {"id":"c1","choices":[}\n\n' + chunk() + DONE,
    "not an object": TEXT + b"data: [1, 2]\n\n" + chunk() + DONE,
    "wrong type": TEXT + b'data: {"id":"c1","choices":{"index":0}}\n\n' + chunk() + DONE,
    "two objects in one event": TEXT + b'data: {"choices":[]} {"choices":[]}\n\n' + chunk() + DONE,
    "objects across events": (TEXT + b'data: {"a":[{}\n\ndata: {}]}\n\ndata: {"choices":[]} {"choices":[]}\n\n'
                              + chunk() + DONE),
    "an object over two events": (TEXT + b'data: {"a":\n\ndata: {}}\n\ndata: {"choices":[]} {"choices":[]}\n\n'
                                  + chunk() + DONE),
    "object split at a comma": TEXT + b'data: {},{"a":[{}\n\ndata: {}]}\n\n' + DONE,
    "invalid UTF-8": TEXT + chunk("x").replace(b'"x"', b'"\xff\xfe"') + chunk() + DONE,
    "empty data": TEXT + b"data: \n\ndata:\n\n" + chunk() + DONE,
}


def read(reader, pieces: list[bytes]) -> list[tuple[list, str | None]]:
    """Each read's deltas and error, then the close's: the stream stops at the first error, as `_deltas` does."""
    out: list[tuple[list, str | None]] = []
    for piece in pieces:
        batch: list = []
        try:
            reader.feed(piece, batch)
        except GatewayError as err:
            out.append((batch, f"{type(err).__name__}: {err}"))
            return out
        out.append((batch, None))
    batch = []
    try:
        reader.close(batch)
    except GatewayError as err:
        out.append((batch, f"{type(err).__name__}: {err}"))
        return out
    out.append((batch, None))
    return out


def both(pieces: list[bytes], limit: int | None = None, requires_done: bool = True) -> None:
    def decoder() -> SSEDecoder:
        return SSEDecoder() if limit is None else SSEDecoder(limit)

    general = read(FramedReader(decoder(), OpenAIStreamParser(requires_done)), pieces)
    fused = read(OpenAIStreamReader(OpenAIStreamParser(requires_done), decoder()), pieces)
    assert fused == general


def cuts(body: bytes, seed: int, n: int) -> list[bytes]:
    rnd = random.Random(seed)
    points = sorted(rnd.sample(range(1, len(body)), min(n, len(body) - 1)))
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)])]


@pytest.mark.parametrize("name", STREAMS)
def test_whole_and_at_every_byte_the_same_as_the_general_path(name):
    body = STREAMS[name]
    both([body])
    both([body], requires_done=False)
    for cut in range(1, len(body)):
        both([body[:cut], body[cut:]])


@pytest.mark.parametrize("name", STREAMS)
def test_in_many_reads_the_same_as_the_general_path(name):
    body = STREAMS[name]
    for seed in range(40):
        both(cuts(body, seed, 1 + seed % 12))
    both([body[i:i + 1] for i in range(len(body))])


def test_the_plain_stream_takes_the_fast_path(monkeypatch):
    """The bench's and providers' usual stream never reaches the SSE decoder."""
    def refuse(self, chunk):
        raise AssertionError("decoded event by event")

    monkeypatch.setattr(SSEDecoder, "feed", refuse)
    reader = OpenAIStreamReader(OpenAIStreamParser(), SSEDecoder())
    batch: list = []
    body = STREAMS["plain"]
    reader.feed(body[:len(body) // 2], batch)
    reader.feed(body[len(body) // 2:], batch)
    monkeypatch.undo()
    reader.close(batch)
    assert "".join(d.content or "" for d in batch) == "tok0 tok1 tok2 tok3 tok4 tok5 "
    assert batch[-1].usage is not None and batch[-1].usage.cached_tokens == 1


@pytest.mark.parametrize("limit", [60, 200, 300, 1000])
def test_an_event_over_the_limit_fails_at_the_same_read(limit):
    body = FIRST + TEXT + chunk("x" * 400) + b": " + b"c" * 400 + b"\n" + chunk() + DONE
    both([body], limit)
    for seed in range(30):
        both(cuts(body, seed, 2 + seed % 10), limit)
