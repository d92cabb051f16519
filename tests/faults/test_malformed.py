"""Malformed upstream answers: bad JSON, bad SSE, oversized events, stalls and streams cut short.

Documented answers: a malformed upstream answer is 502 ("The upstream service sent a malformed
..."); before a stream starts that is a real HTTP error, after it an in-band error and no `[DONE]`
(design §6). An SSE event is accepted up to `proxy.sse.DEFAULT_MAX_EVENT_BYTES` (16 MiB) and relayed
intact; a larger one is an in-band 502 and the upstream call is dropped. A stream cut without its
terminator is an error, never a clean end.
"""

from __future__ import annotations

import asyncio
import json
import random
import string

import aiohttp
import pytest

from proxy.sse import DEFAULT_MAX_EVENT_BYTES
from tests.sse import openai_events, parse_sse

from .helpers import (CHAT, assert_es_envelope, assert_openai_error, es_chat_stream_error, es_completion_text,
                      es_stream_error, openai_chat_text, openai_stream_error, still_serving)
from .raw_upstream import DONE, chunk, event, good_stream_events

pytestmark = pytest.mark.usefixtures("endpoints")

MALFORMED = "The upstream service sent a malformed"


def answer(body: bytes, content_type: str = "application/json", status: int = 200, headers: dict | None = None):
    async def behaviour(conn):
        await conn.respond(status, body, headers, content_type=content_type)
    return behaviour


# ---------------------------------------------------------------------- malformed JSON (non-streaming)


BAD_BODIES = {
    "truncated": b'{"object": "list", "data": [{"embedding": [0.1,',
    "not-json": b"this is not json",
    "html": b"<html><body>Welcome to nginx!</body></html>",
    "empty": b"",
    "wrong-shape": b'{"data": "nope"}',
    "array": b"[1, 2, 3]",
    "null": b"null",
}


@pytest.mark.parametrize("kind", BAD_BODIES)
async def test_malformed_embeddings_answer_on_both_surfaces(http, raw, kind):
    raw.plan(answer(BAD_BODIES[kind]), times=2)
    async with http.post("/_inference/text_embedding/emb", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 502, body
    assert assert_es_envelope(body, 502)["reason"].startswith(MALFORMED)
    async with http.post("/v1/embeddings", json={"model": "emb", "input": "x"}) as resp:
        assert resp.status == 502
        err = assert_openai_error(await resp.json())
    assert err["type"] == "upstream_error" and err["message"].startswith(MALFORMED)
    assert raw.requests == 2  # not retried: the same request would get the same answer
    await still_serving(http, raw)


@pytest.mark.parametrize("kind", ["truncated", "wrong-shape", "empty"])
async def test_malformed_chat_answer(http, raw, kind):
    bodies = {"truncated": b'{"choices": [{"message": {"content": "hel', "wrong-shape": b'{"choices": {}}',
              "empty": b""}
    raw.plan(answer(bodies[kind]), times=2)
    async with http.post("/_inference/chat_completion/chat", json=CHAT) as resp:
        assert resp.status == 502
        body = await resp.json()
    assert set(body) == {"error"} and body["error"]["message"].startswith(MALFORMED)
    async with http.post("/v1/chat/completions", json={"model": "chat", **CHAT}) as resp:
        assert resp.status == 502
        assert assert_openai_error(await resp.json())["message"].startswith(MALFORMED)
    await still_serving(http, raw)


async def test_gzip_header_on_a_body_that_is_not_gzip(http, raw):
    raw.plan(answer(b'{"data": []}', headers={"Content-Encoding": "gzip"}), times=100)
    async with http.post("/_inference/text_embedding/emb?timeout=1s", json={"input": "x"}) as resp:
        assert resp.status == 502
        assert_es_envelope(await resp.json(), 502)
    await still_serving(http, raw)


BAD_VECTORS = {
    "string": b'{"data": [{"index": 0, "embedding": "oops"}]}',
    "object": b'{"data": [{"index": 0, "embedding": {"a": 1}}]}',
    "strings-in-list": b'{"data": [{"index": 0, "embedding": ["a", "b"]}]}',
}


@pytest.mark.parametrize("kind", BAD_VECTORS)
async def test_embedding_that_is_not_a_vector_is_502_on_inference(http, raw, kind):
    raw.plan(answer(BAD_VECTORS[kind]))
    async with http.post("/_inference/text_embedding/emb", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 502, body


@pytest.mark.parametrize("kind", BAD_VECTORS)
async def test_embedding_that_is_not_a_vector_is_502_on_v1_base64(http, raw, kind):
    raw.plan(answer(BAD_VECTORS[kind]))
    async with http.post("/v1/embeddings", json={"model": "emb", "input": "x", "encoding_format": "base64"}) as resp:
        body = await resp.json()
    assert resp.status == 502, body
    assert_openai_error(body)


@pytest.mark.parametrize("data", [
    [{"index": 0, "embedding": [0.1]}],
    [{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}],
    [{"index": 0, "embedding": [0.1]}, {"index": 5, "embedding": [0.2]}],
], ids=["missing", "duplicate-index", "index-out-of-range"])
async def test_embedding_count_must_match_the_inputs(http, raw, data):
    raw.plan(answer(json.dumps({"data": data}).encode()))
    async with http.post("/_inference/text_embedding/emb", json={"input": ["a", "b"]}) as resp:
        body = await resp.json()
    assert resp.status == 502, body


# ---------------------------------------------------------------------- malformed SSE


def stream_of(*frames: bytes, end: bool = True):
    async def behaviour(conn):
        await conn.start()
        for frame in frames:
            await conn.write(frame)
        if end:
            await conn.end()
        else:
            await conn.close()
    return behaviour


HEAD = event(chunk("", role="assistant"))
ONE = event(chunk("one"))


async def test_first_event_not_json_is_a_502_before_the_stream(http, raw):
    raw.plan(stream_of(event("{not json"), DONE))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 502
        events = parse_sse(await resp.read())
    assert [e for e, _ in events] == ["error"]
    assert assert_es_envelope(json.loads(events[0][1]), 502)["reason"].startswith(MALFORMED)
    raw.plan(stream_of(event("{not json"), DONE))
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 502
        assert assert_openai_error(await resp.json())["message"].startswith(MALFORMED)
    await still_serving(http, raw)


@pytest.mark.parametrize("bad", [
    event("not json at all"),
    event('{"choices": [{"delta": {"content": 5}}]}'),  # JSON, wrong types
    b"data: \xff\xfe\x00\x01garbage\n\n",  # binary in a data line
    event("[1, 2]"),
], ids=["text", "wrong-types", "binary", "array"])
async def test_bad_event_mid_stream_is_an_in_band_error(http, raw, bad):
    raw.plan(stream_of(HEAD, ONE, bad, event(chunk("never")), DONE))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 200
        raw_body = await resp.read()
    assert es_stream_error(raw_body, 502)["reason"].startswith(MALFORMED)
    assert b"never" not in raw_body and b"one" in raw_body
    raw.plan(stream_of(HEAD, ONE, bad, event(chunk("never")), DONE))
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 200
        err = openai_stream_error(await resp.read())
    assert err["type"] == "upstream_error" and err["message"].startswith(MALFORMED)
    raw.plan(stream_of(HEAD, ONE, bad, DONE))
    async with http.post("/_inference/chat_completion/chat/_stream", json=CHAT) as resp:
        assert resp.status == 200
        assert es_chat_stream_error(await resp.read())["message"].startswith(MALFORMED)
    await still_serving(http, raw)


async def test_garbage_lines_that_are_not_fields_are_ignored(http, raw):
    """WHATWG SSE: a line without a known field name is ignored; comments too. The answer is intact."""
    garbage = b"\x00\x01\xff garbage without a colon\n: a comment\nretry: 10\nfoo: bar\n\n"
    raw.plan(stream_of(HEAD, garbage, ONE, garbage, event(chunk("two")), event(chunk(finish="stop")), DONE))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 200
        assert es_completion_text(await resp.read()) == "onetwo"
    await still_serving(http, raw)


async def test_upstream_error_event_mid_stream(http, raw):
    err_event = b'event: error\ndata: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    raw.plan(stream_of(HEAD, ONE, err_event))
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 200
        err = openai_stream_error(await resp.read())
    assert "overloaded" in err["message"] and err["type"] == "upstream_error"
    raw.plan(stream_of(HEAD, ONE, event('{"error": {"message": "quota", "type": "x"}}')))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        # no upstream HTTP status here: the envelope's status follows the ES 5xx rule (400) or is 502
        assert "quota" in es_stream_error(await resp.read())["reason"]
    await still_serving(http, raw)


@pytest.mark.parametrize("then", ["close", "hang"])
async def test_broken_chunked_framing_mid_stream(http, raw, short_idle, then):
    async def behaviour(conn):
        await conn.start()
        await conn.write(HEAD)
        await conn.write(ONE)
        await conn.flushed()
        await asyncio.sleep(0.1)  # the gateway has relayed "one": the error must go in-band
        await conn.send(b"zz-not-hex\r\ndata: x\r\n")
        if then == "close":
            await conn.close()
        else:
            await conn.hang()
    raw.plan(behaviour)
    try:
        async with http.post("/_inference/completion/comp/_stream", json={"input": "x"},
                             timeout=aiohttp.ClientTimeout(total=2)) as resp:
            assert resp.status == 200
            es_stream_error(await resp.read(), 502)
    except asyncio.TimeoutError:
        pytest.fail("the stream hung after a broken chunk: no in-band error within 2 s (idle timeout 0.3 s)")
    await still_serving(http, raw)


# ---------------------------------------------------------------------- large events


def text_of(size: int, seed: int) -> str:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " éß€😀"
    return "".join(rng.choice(alphabet) for _ in range(1024)) * (size // 1024)


async def test_a_2_mib_event_is_relayed_intact(http, raw):
    big = text_of(2 * 1024 * 1024, 1)
    frames = [HEAD, ONE, event(chunk(big)), event(chunk("end")), event(chunk(finish="stop")), DONE]
    raw.plan(stream_of(*frames))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 200
        assert es_completion_text(await resp.read()) == "one" + big + "end"
    raw.plan(stream_of(*frames))
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 200
        assert openai_chat_text(await resp.read()) == "one" + big + "end"
    # a 2 MiB first event, across many network reads, also arrives whole
    raw.plan(stream_of(HEAD.replace(b'"content":""', b'"content":' + json.dumps(big).encode()),
                       event(chunk(finish="stop")), DONE))
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert openai_chat_text(await resp.read()) == big
    await still_serving(http, raw)


def oversized_after(frames: list[bytes]):
    async def behaviour(conn):
        await conn.start()
        for frame in frames:
            await conn.write(frame)
        await conn.write(b'data: {"choices": [{"index": 0, "delta": {"content": "')
        piece = b"x" * (256 * 1024)
        for _ in range(DEFAULT_MAX_EVENT_BYTES // len(piece) + 8):  # past the limit, never a newline
            await conn.write(piece)
        await conn.hang()
    return behaviour


async def test_an_event_over_the_limit_is_an_in_band_error_and_drops_the_upstream(http, raw):
    raw.plan(oversized_after([HEAD, ONE]))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 200
        raw_body = await resp.read()
    err = es_stream_error(raw_body, 502)
    assert err["reason"] == f"An upstream stream event exceeded {DEFAULT_MAX_EVENT_BYTES} bytes"
    assert len(raw_body) < 4096  # nothing of the oversized event reached the client
    await asyncio.wait_for(raw.conns[-1].closed.wait(), 1.0)
    raw.plan(oversized_after([HEAD, ONE]))
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 200
        assert "exceeded" in openai_stream_error(await resp.read())["message"]
    await asyncio.wait_for(raw.conns[-1].closed.wait(), 1.0)
    await still_serving(http, raw)


async def test_an_oversized_first_event_is_a_502_before_the_stream(http, raw):
    raw.plan(oversized_after([]))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 502
        events = parse_sse(await resp.read())
    assert [e for e, _ in events] == ["error"]
    assert "exceeded" in assert_es_envelope(json.loads(events[0][1]), 502)["reason"]
    await asyncio.wait_for(raw.conns[-1].closed.wait(), 1.0)
    await still_serving(http, raw)


# ---------------------------------------------------------------------- stalls


def stall_after(frames: list[bytes]):
    async def behaviour(conn):
        await conn.start()
        for frame in frames:
            await conn.write(frame)
        await conn.hang()
    return behaviour


async def test_a_stalled_stream_is_an_in_band_error(http, raw, short_idle):
    raw.plan(stall_after([HEAD, ONE]))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 200
        err = es_stream_error(await resp.read(), 408)
    assert err["reason"].startswith("The upstream stream stalled for more than [0.3s]")
    await asyncio.wait_for(raw.conns[-1].closed.wait(), 1.0)
    raw.plan(stall_after([HEAD, ONE]))
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 200
        assert "stalled" in openai_stream_error(await resp.read())["message"]
    await asyncio.wait_for(raw.conns[-1].closed.wait(), 1.0)
    await still_serving(http, raw)


async def test_keepalive_comments_keep_a_slow_stream_alive(http, raw, short_idle):
    """Comments keep the socket busy, so the idle timeout (a socket read timeout) does not fire:
    the stream goes on as long as the upstream keeps it alive."""
    async def behaviour(conn):
        await conn.start()
        await conn.write(HEAD)
        await conn.write(ONE)
        for _ in range(5):  # 0.75 s of comments, longer than the 0.3 s idle timeout
            await asyncio.sleep(0.15)
            await conn.write(b": keep-alive\n\n")
        for frame in (event(chunk("two")), event(chunk(finish="stop")), DONE):
            await conn.write(frame)
        await conn.end()
    raw.plan(behaviour)
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert es_completion_text(await resp.read()) == "onetwo"
    await still_serving(http, raw)


async def test_a_stall_before_the_first_event_is_a_408_before_the_stream(http, raw, short_idle):
    raw.plan(stall_after([]))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 408
        events = parse_sse(await resp.read())
    assert [e for e, _ in events] == ["error"] and "stalled" in json.loads(events[0][1])["error"]["reason"]
    await asyncio.wait_for(raw.conns[-1].closed.wait(), 1.0)
    await still_serving(http, raw)


# ---------------------------------------------------------------------- cut without terminator


async def test_eof_delimited_stream_closed_without_done(http, raw):
    """No Content-Length, no chunking: the body ends at the close, which looks clean to HTTP."""
    async def behaviour(conn):
        await conn.start(chunked=False)
        for frame in (HEAD, ONE, event(chunk(finish="stop"))):
            await conn.send(frame)
        await conn.close()
    raw.plan(behaviour)
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 200
        err = es_stream_error(await resp.read(), 502)
    assert err["reason"].startswith("The upstream stream ended before it was complete")
    raw.plan(behaviour)
    async with http.post("/_inference/chat_completion/chat/_stream", json=CHAT) as resp:
        assert "ended before it was complete" in es_chat_stream_error(await resp.read())["message"]
    await still_serving(http, raw)


@pytest.mark.parametrize("tail", [
    b"",  # between events
    b'data: {"choices": [{"index": 0, "delta": {"content": "par',  # inside an event
    event(chunk("last"))[:-1],  # a whole event without its blank line
], ids=["between-events", "inside-an-event", "no-blank-line"])
async def test_chunked_stream_ended_cleanly_without_done(http, raw, tail):
    raw.plan(stream_of(HEAD, ONE, *([tail] if tail else [])))
    async with http.post("/v1/completions", json={"model": "comp", "prompt": "x", "stream": True}) as resp:
        assert resp.status == 200
        raw_body = await resp.read()
    events = openai_events(raw_body)
    assert "[DONE]" not in events
    assert_openai_error(json.loads(events[-1]))
    raw.plan(stream_of(HEAD, ONE, *([tail] if tail else [])))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        es_stream_error(await resp.read(), 502)
    await still_serving(http, raw)


async def test_connection_closed_inside_a_chunk(http, raw):
    async def behaviour(conn):
        await conn.start()
        await conn.write(HEAD)
        await conn.write(ONE)
        await conn.send(b"100\r\ndata: {\"cho")  # promises 256 bytes, sends 15, then FIN
        await conn.close()
    raw.plan(behaviour)
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 200
        assert openai_stream_error(await resp.read())["type"] == "upstream_error"
    await still_serving(http, raw)


async def test_stream_with_no_event_at_all(http, raw):
    raw.plan(stream_of())
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 502
        events = parse_sse(await resp.read())
    assert [e for e, _ in events] == ["error"]
    raw.plan(stream_of())
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 502
        assert_openai_error(await resp.json())
    await still_serving(http, raw)


async def test_good_stream_split_at_odd_points_still_relays(http, raw):
    """Control: the framing of the fake is not the problem: the same events one byte per write work."""
    async def behaviour(conn):
        await conn.start(chunked=False)
        for byte in b"".join(good_stream_events(["é€", "😀"])):
            await conn.send(bytes([byte]))
        await conn.close()
    raw.plan(behaviour)
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert es_completion_text(await resp.read()) == "é€😀"
    await still_serving(http, raw)
