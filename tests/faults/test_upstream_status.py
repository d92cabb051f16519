"""Upstream error statuses: 429 with and without `Retry-After`, 500/502/503, on both surfaces.

Documented answers (design §7, es-inference-api §5.4): on `/_inference` an upstream status below
500 is passed through and 5xx becomes 400, with the ES message format; on `/v1` 5xx becomes 502
`upstream_error`. 429 and 5xx are retried with backoff inside the request's deadline; a
`Retry-After` that does not fit the deadline ends the retries at once and is passed on.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.sse import parse_sse

from .helpers import CHAT, assert_chat_error, assert_es_envelope, assert_openai_error, still_serving

pytestmark = pytest.mark.usefixtures("endpoints")


def fail(status: int, message: str = "upstream said no", headers: dict | None = None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(
        {"error": {"message": message, "type": "server_error", "param": None, "code": None}}).encode()

    async def behaviour(conn):
        await conn.respond(status, body, headers)
    return behaviour


def es_reason(status: int, inference_id: str, prefix: str, message: str | None = "upstream said no") -> str:
    text = f"{prefix} for request from inference entity id [{inference_id}] status [{status}]"
    return text + (f". Error message: [{message}]" if message else "")


RATE = "Received a rate limit status code"
SERVER = "Received a server error status code"


# ---------------------------------------------------------------------- 429


async def test_429_with_retry_after_beyond_the_deadline_answers_429_at_once(http, raw):
    raw.plan(fail(429, "slow down", {"Retry-After": "30"}), times=5)
    started = time.monotonic()
    async with http.post("/_inference/text_embedding/emb?timeout=5s", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "30"
    assert time.monotonic() - started < 1.0 and raw.requests == 1
    err = assert_es_envelope(body, 429)
    assert err["type"] == "status_exception" and err["reason"] == es_reason(429, "emb", RATE, "slow down")
    await still_serving(http, raw)


async def test_429_http_date_retry_after_is_honoured(http, raw):
    # an HTTP-date in the past means "now": one retry, then success
    raw.plan(fail(429, "slow down", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    async with http.post("/_inference/text_embedding/emb?timeout=5s", json={"input": "x"}) as resp:
        assert resp.status == 200, await resp.text()
    assert raw.requests == 2
    await still_serving(http, raw)


async def test_429_without_retry_after_is_retried_with_backoff_then_succeeds(http, raw):
    raw.plan(fail(429, "slow down"), times=2)
    started = time.monotonic()
    async with http.post("/v1/embeddings", json={"model": "emb", "input": "x"}) as resp:
        assert resp.status == 200, await resp.text()
    elapsed = time.monotonic() - started
    assert raw.requests == 3
    assert 0.1 <= elapsed < 2.0  # 0.1 * 2**n * jitter(0.5..1): two short sleeps, no fixed long wait
    await still_serving(http, raw)


async def test_persistent_429_without_retry_after_is_429_at_the_deadline(http, raw):
    raw.plan(fail(429, "slow down"), times=100)
    started = time.monotonic()
    async with http.post("/_inference/text_embedding/emb?timeout=1s", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 429
        assert "Retry-After" not in resp.headers  # nothing to pass on: the upstream gave no hint
    assert time.monotonic() - started < 2.0
    assert 3 <= raw.requests < 15
    assert assert_es_envelope(body, 429)["reason"] == es_reason(429, "emb", RATE, "slow down")
    await still_serving(http, raw)


async def test_429_before_an_es_stream_is_a_429_error_event(http, raw):
    raw.plan(fail(429, "slow down", {"Retry-After": "60"}))
    async with http.post("/_inference/completion/comp/_stream?timeout=5s", json={"input": "x"}) as resp:
        assert resp.status == 429
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Retry-After"] == "60"
        events = parse_sse(await resp.read())
    assert [e for e, _ in events] == ["error"]
    err = assert_es_envelope(json.loads(events[0][1]), 429)
    assert err["reason"] == es_reason(429, "comp", RATE, "slow down")
    await still_serving(http, raw)


async def test_429_before_a_v1_stream_is_an_openai_rate_limit_error(http, raw):
    raw.plan(fail(429, "slow down", {"Retry-After": "600"}))  # beyond the 120 s chat deadline
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 429
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.headers["Retry-After"] == "600"
        err = assert_openai_error(await resp.json())
    assert err["type"] == "rate_limit_error" and "slow down" in err["message"]
    await still_serving(http, raw)


# ---------------------------------------------------------------------- 5xx


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_transient_5xx_is_retried(http, raw, status):
    raw.plan(fail(status))
    async with http.post("/_inference/completion/comp", json={"input": "x"}) as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"completion": [{"result": "Hello"}]}
    assert raw.requests == 2
    await still_serving(http, raw)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_persistent_5xx_is_400_on_inference(http, raw, status):
    raw.plan(fail(status), times=100)
    started = time.monotonic()
    async with http.post("/_inference/text_embedding/emb?timeout=1s", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 400
    assert time.monotonic() - started < 2.0 and raw.requests >= 2
    err = assert_es_envelope(body, 400)
    assert err["type"] == "status_exception" and err["reason"] == es_reason(status, "emb", SERVER)
    await still_serving(http, raw)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_persistent_5xx_is_502_upstream_error_on_v1(http, raw, status, short_deadlines):
    raw.plan(fail(status), times=100)
    async with http.post("/v1/embeddings", json={"model": "emb", "input": "x"}) as resp:
        assert resp.status == 502
        err = assert_openai_error(await resp.json())
    assert err["type"] == "upstream_error" and err["message"] == es_reason(status, "emb", SERVER)
    await still_serving(http, raw)


@pytest.mark.parametrize("status", [502, 503])
async def test_persistent_5xx_before_streams(http, raw, status):
    raw.plan(fail(status), times=100)
    async with http.post("/_inference/chat_completion/chat/_stream?timeout=1s", json=CHAT) as resp:
        assert resp.status == 400
        events = parse_sse(await resp.read())
    assert [e for e, _ in events] == ["error"]
    err = assert_chat_error(json.loads(events[0][1]))
    assert err["message"] == es_reason(status, "chat", SERVER)
    await still_serving(http, raw)


async def test_html_error_page_from_a_load_balancer(http, raw):
    page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
    raw.plan(fail(502, raw=page, headers={"Retry-After": "100"}))
    async with http.post("/_inference/text_embedding/emb?timeout=5s", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 400
    err = assert_es_envelope(body, 400)
    assert err["reason"].startswith(es_reason(502, "emb", SERVER, None))
    await still_serving(http, raw)


async def test_empty_5xx_body(http, raw, short_deadlines):
    raw.plan(fail(503, raw=b"", headers={"Retry-After": "100"}))
    async with http.post("/v1/chat/completions", json={"model": "chat", **CHAT}) as resp:
        assert resp.status == 502
        err = assert_openai_error(await resp.json())
    assert err["message"] == es_reason(503, "chat", SERVER, None)
    await still_serving(http, raw)
