"""Network faults between the gateway and its upstream: refused, connect timeout, no answer, reset.

Documented answers: an upstream that cannot be reached is 502 (`Failed to reach the upstream
service`); one that does not answer in time is 408 (es-inference-api §5.2, "Inference timeout");
both are retried inside the request's deadline. Before a stream starts these are real HTTP errors
(ES: one `error` event, §4.4); after it started they go in-band.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from .conftest import put_endpoint
from tests.sse import parse_sse

from .helpers import (CHAT, assert_chat_error, assert_es_envelope, assert_openai_error, es_stream_error,
                      openai_stream_error, still_serving)
from .raw_upstream import Blackhole, chunk, event, refused_port

pytestmark = pytest.mark.usefixtures("endpoints")


# ---------------------------------------------------------------------- connect refused


async def test_connect_refused_before_an_es_stream(http, raw):
    await put_endpoint(http, "completion", "gone", f"http://127.0.0.1:{refused_port()}/v1/chat/completions")
    started = time.monotonic()
    async with http.post("/_inference/completion/gone/_stream?timeout=500ms", json={"input": "x"}) as resp:
        assert resp.status == 502
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse(await resp.read())
    assert time.monotonic() - started < 2.5
    assert [e for e, _ in events] == ["error"]
    err = assert_es_envelope(json.loads(events[0][1]), 502)
    assert err["reason"].startswith("Failed to reach the upstream service")
    await still_serving(http, raw)


async def test_connect_refused_on_v1(http, raw, short_deadlines):
    await put_endpoint(http, "text_embedding", "gone", f"http://127.0.0.1:{refused_port()}/v1/embeddings")
    await put_endpoint(http, "chat_completion", "gone-chat", f"http://127.0.0.1:{refused_port()}/v1/chat")
    async with http.post("/v1/embeddings", json={"model": "gone", "input": "x"}) as resp:
        assert resp.status == 502
        err = assert_openai_error(await resp.json())
    assert err["type"] == "upstream_error" and err["message"].startswith("Failed to reach the upstream service")
    async with http.post("/v1/chat/completions", json={"model": "gone-chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 502
        assert assert_openai_error(await resp.json())["type"] == "upstream_error"
    await still_serving(http, raw)


# ---------------------------------------------------------------------- connect timeout


@pytest.fixture
def blackhole():
    hole = Blackhole()
    yield hole
    hole.close()


async def test_connect_timeout_is_408_on_inference(http, raw, blackhole):
    await put_endpoint(http, "text_embedding", "hole", f"{blackhole.url}/v1/embeddings")
    started = time.monotonic()
    async with http.post("/_inference/text_embedding/hole?timeout=500ms", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 408
    assert 0.45 <= time.monotonic() - started < 2.0
    err = assert_es_envelope(body, 408)
    assert err["type"] == "status_exception" and "Request timed out after [500ms]" in err["reason"]
    await still_serving(http, raw)


async def test_timeout_reason_names_the_requested_timeout(http, raw, blackhole):
    await put_endpoint(http, "text_embedding", "hole", f"{blackhole.url}/v1/embeddings")
    async with http.post("/_inference/text_embedding/hole?timeout=500ms", json={"input": "x"}) as resp:
        body = await resp.json()
    assert "Request timed out after [500ms]" in assert_es_envelope(body, 408)["reason"]


async def test_connect_timeout_before_streams(http, raw, blackhole):
    await put_endpoint(http, "completion", "hole", f"{blackhole.url}/v1/chat/completions")
    await put_endpoint(http, "chat_completion", "hole-chat", f"{blackhole.url}/v1/chat/completions")
    started = time.monotonic()
    async with http.post("/_inference/completion/hole/_stream?timeout=500ms", json={"input": "x"}) as resp:
        assert resp.status == 408
        events = parse_sse(await resp.read())
    assert time.monotonic() - started < 2.5
    assert [e for e, _ in events] == ["error"]
    assert_es_envelope(json.loads(events[0][1]), 408)
    async with http.post("/_inference/chat_completion/hole-chat/_stream?timeout=500ms", json=CHAT) as resp:
        assert resp.status == 408
        events = parse_sse(await resp.read())
    assert_chat_error(json.loads(events[0][1]))
    await still_serving(http, raw)


async def test_connect_timeout_on_v1(http, raw, blackhole, short_deadlines):
    await put_endpoint(http, "chat_completion", "hole", f"{blackhole.url}/v1/chat/completions")
    async with http.post("/v1/chat/completions", json={"model": "hole", **CHAT}) as resp:
        assert resp.status == 408
        assert_openai_error(await resp.json())
    await still_serving(http, raw)


# ---------------------------------------------------------------------- read timeout before headers


async def silent(conn):
    await conn.hang()


async def test_no_answer_before_headers_is_408_and_the_call_is_abandoned(http, raw):
    raw.plan(silent, times=10)
    started = time.monotonic()
    async with http.post("/_inference/text_embedding/emb?timeout=500ms", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 408
    assert time.monotonic() - started < 2.5
    assert "Request timed out after [500ms]" in assert_es_envelope(body, 408)["reason"]
    await asyncio.wait_for(raw.conns[0].closed.wait(), 1.0)
    await still_serving(http, raw)


async def test_no_answer_before_headers_on_v1(http, raw, short_deadlines):
    raw.plan(silent, times=10)
    async with http.post("/v1/chat/completions", json={"model": "chat", **CHAT}) as resp:
        assert resp.status == 408
        assert_openai_error(await resp.json())
    await asyncio.wait_for(raw.conns[0].closed.wait(), 1.0)
    await still_serving(http, raw)


async def test_no_answer_before_stream_headers_respects_the_request_timeout(http, raw):
    raw.plan(silent, times=10)
    started = time.monotonic()
    try:
        async with http.post("/_inference/completion/comp/_stream?timeout=500ms", json={"input": "x"},
                             timeout=aiohttp_timeout(2)) as resp:
            assert resp.status == 408
            events = parse_sse(await resp.read())
    except asyncio.TimeoutError:
        pytest.fail(f"no answer after {time.monotonic() - started:.1f}s for a 500ms timeout")
    assert [e for e, _ in events] == ["error"]
    assert_es_envelope(json.loads(events[0][1]), 408)
    await still_serving(http, raw)


async def test_no_answer_before_stream_headers_with_a_short_idle_timeout(http, raw, short_idle, short_deadlines):
    """Idle timeout 0.3 s, deadline 0.6 s: silence before the headers is retried once, then 408."""
    raw.plan(silent, times=20)
    started = time.monotonic()
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT},
                         timeout=aiohttp_timeout(5)) as resp:
        assert resp.status == 408
        assert_openai_error(await resp.json())
    assert time.monotonic() - started < 2.5 and raw.requests >= 2
    for conn in raw.conns:
        await asyncio.wait_for(conn.closed.wait(), 1.0)
    await still_serving(http, raw)


def aiohttp_timeout(seconds: float):
    import aiohttp
    return aiohttp.ClientTimeout(total=seconds)


# ---------------------------------------------------------------------- reset mid-body


def reset_after(prefix: bytes, length: int = 4096):
    async def behaviour(conn):
        await conn.start(200, "application/json", length=length)
        await conn.send(prefix)
        await conn.reset()
    return behaviour


async def test_reset_mid_body_once_is_retried(http, raw):
    raw.plan(reset_after(b'{"object": "list", "data": [{"object": "embedding", "index": 0, "embe'))
    async with http.post("/_inference/text_embedding/emb", json={"input": "x"}) as resp:
        assert resp.status == 200, await resp.text()
    assert raw.requests == 2
    await still_serving(http, raw)


async def test_persistent_reset_mid_body_is_502(http, raw):
    raw.plan(reset_after(b'{"object": "list", "da'), times=100)
    async with http.post("/_inference/text_embedding/emb?timeout=500ms", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 502
    assert assert_es_envelope(body, 502)["reason"].startswith("Failed to reach the upstream service")
    raw.clear()
    raw.plan(reset_after(b'{"id": "x", "choi'), times=100)
    async with http.post("/_inference/chat_completion/chat?timeout=500ms", json=CHAT) as resp:
        assert resp.status == 502
        assert_chat_error(await resp.json())
    await still_serving(http, raw)


def stream_then_reset(good_events: int):
    async def behaviour(conn):
        await conn.start()
        await conn.write(event(chunk("", role="assistant")))
        for i in range(good_events):
            await conn.write(event(chunk(f"<{i}>")))
        await conn.send(b"1f\r\ndata: {\"choices\": [{\"ind")  # half a chunk, half an event
        await conn.reset()
    return behaviour


async def test_reset_mid_stream_is_an_in_band_error_on_both_surfaces(http, raw):
    raw.plan(stream_then_reset(2))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 200
        raw_body = await resp.read()
    err = es_stream_error(raw_body, 502)
    assert err["reason"].startswith("The upstream stream failed")
    assert [e for e, _ in parse_sse(raw_body)].count("message") == 2  # <0>, <1>
    raw.plan(stream_then_reset(2))
    async with http.post("/_inference/chat_completion/chat/_stream", json=CHAT) as resp:
        assert resp.status == 200
        raw_body = await resp.read()
    events = parse_sse(raw_body)
    assert events[-1][0] == "error" and ("message", "[DONE]") not in events
    assert_chat_error(json.loads(events[-1][1]))
    raw.plan(stream_then_reset(2))
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 200
        err = openai_stream_error(await resp.read())
    assert err["type"] == "upstream_error"
    await still_serving(http, raw)
