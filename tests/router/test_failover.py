"""Failover: each way a target can fail, on both surfaces, streamed and not.

Every target is an `openai` endpoint on its own hand-written upstream (`tests/faults/raw_upstream.py`),
so a test says exactly how each one fails and counts what reached it.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tests.faults.helpers import es_completion_text, es_stream_error, openai_chat_text, openai_stream_error
from tests.faults.raw_upstream import HEAD_EVENT, event, chunk

from .conftest import SECRET, put_router, put_target

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def answer(status: int, message: str = "upstream said no", headers: dict | None = None):
    async def behaviour(conn):
        body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
        await conn.respond(status, body, headers)
    return behaviour


async def hang(conn):
    await conn.hang()


async def reset_before_first_event(conn):
    await conn.start()
    await conn.reset()


async def reset_after_first_event(conn):
    await conn.start()
    await conn.write(HEAD_EVENT)
    await conn.write(event(chunk("Par")))
    await conn.reset()


@pytest.fixture
async def pair(http, upstreams):
    """Two upstreams and, for each task used here, targets `a-*` and `b-*` on them."""
    a, b = await upstreams(), await upstreams()
    for task in ("text_embedding", "completion", "chat_completion"):
        short = task.split("_")[0]
        await put_target(http, task, f"a-{short}", a)
        await put_target(http, task, f"b-{short}", b)
    return a, b


async def test_429_with_retry_after_moves_on_at_once(http, pair):
    a, b = pair
    await put_router(http, "text_embedding", "r", ["a-text", "b-text"])
    a.plan(answer(429, "slow down", {"Retry-After": "30"}))
    async with http.post("/_inference/text_embedding/r?timeout=10s", json={"input": ["x"]}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert resp.headers["X-Inference-Target"] == "b-text"
    assert body["text_embedding"][0]["embedding"] == [0.25, -0.5, 1.0]
    assert (a.requests, b.requests) == (1, 1)  # the 30 s wait was not taken: the next target answered


async def test_503_moves_on_and_a_client_error_does_not(http, pair):
    a, b = pair
    await put_router(http, "chat_completion", "r", ["a-chat", "b-chat"])
    a.plan(answer(503))
    async with http.post("/v1/chat/completions", json={"model": "r", **CHAT}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert resp.headers["X-Inference-Target"] == "b-chat"
    assert body["model"] == "r" and body["choices"][0]["message"]["content"] == "Hello"
    a.plan(answer(400, "context too long"))
    async with http.post("/v1/chat/completions", json={"model": "r", **CHAT}) as resp:
        body = await resp.json()
        assert resp.status == 400
        assert resp.headers["X-Inference-Target"] == "a-chat"
    assert "context too long" in body["error"]["message"]
    assert (a.requests, b.requests) == (2, 1)


async def test_the_failover_statuses_are_configurable(http, pair):
    a, b = pair
    await put_router(http, "completion", "r", ["a-completion", "b-completion"], failover_on=[401])
    a.plan(answer(401, "bad key"))
    async with http.post("/_inference/completion/r", json={"input": "x"}) as resp:
        assert resp.status == 200 and resp.headers["X-Inference-Target"] == "b-completion"
    a.plan(answer(503))
    async with http.post("/_inference/completion/r", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 400  # ES turns an upstream 5xx into 400
    assert "status [503]" in body["error"]["reason"] and b.requests == 1


async def test_a_hang_past_the_targets_timeout_moves_on(http, pair):
    a, b = pair
    await put_router(http, "completion", "r", [{"id": "a-completion", "timeout": "300ms"}, "b-completion"])
    a.plan(hang)
    async with http.post("/_inference/completion/r?timeout=10s", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert resp.headers["X-Inference-Target"] == "b-completion"
    assert body == {"completion": [{"result": "Hello"}]}
    assert a.conns[0].closed.is_set()  # the gateway left the hanging upstream

    async def headers_then_silence(conn):
        await conn.start()
        await conn.hang()

    a.plan(headers_then_silence)  # a stream whose first event never comes
    async with http.post("/_inference/completion/r/_stream?timeout=10s", json={"input": "x"}) as resp:
        assert resp.status == 200 and resp.headers["X-Inference-Target"] == "b-completion"
        assert es_completion_text(await resp.read()) == "Hello"
    await asyncio.wait_for(a.conns[1].closed.wait(), 5)


async def test_every_attempt_fits_in_the_requests_timeout(http, pair):
    a, b = pair
    await put_router(http, "completion", "r", [{"id": "a-completion", "timeout": "1m"}, "b-completion"])
    a.plan(hang)
    async with http.post("/_inference/completion/r?timeout=400ms", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 408, body
    assert body["error"]["reason"].startswith("Request timed out after [400ms]")
    assert b.requests == 0


async def test_a_stream_reset_before_its_first_byte_moves_on(http, pair):
    a, b = pair
    await put_router(http, "completion", "rc", ["a-completion", "b-completion"])
    await put_router(http, "chat_completion", "rh", ["a-chat", "b-chat"])
    a.plan(reset_before_first_event, times=2)
    async with http.post("/_inference/completion/rc/_stream", json={"input": "x"}) as resp:
        assert resp.status == 200 and resp.headers["X-Inference-Target"] == "b-completion"
        assert es_completion_text(await resp.read()) == "Hello"
    async with http.post("/v1/chat/completions", json={"model": "rh", "stream": True, **CHAT}) as resp:
        assert resp.status == 200 and resp.headers["X-Inference-Target"] == "b-chat"
        assert openai_chat_text(await resp.read()) == "Hello"
    assert (a.requests, b.requests) == (2, 2)


async def test_a_stream_reset_after_its_first_byte_ends_in_band(http, pair):
    a, b = pair
    await put_router(http, "completion", "rc", ["a-completion", "b-completion"])
    await put_router(http, "chat_completion", "rh", ["a-chat", "b-chat"])
    a.plan(reset_after_first_event, times=2)
    async with http.post("/_inference/completion/rc/_stream", json={"input": "x"}) as resp:
        assert resp.status == 200 and resp.headers["X-Inference-Target"] == "a-completion"
        raw = await resp.read()
    assert json.loads(raw.decode().split("data: ")[1].split("\n")[0])["completion"][0]["delta"] == "Par"
    es_stream_error(raw)
    async with http.post("/v1/chat/completions", json={"model": "rh", "stream": True, **CHAT}) as resp:
        assert resp.status == 200 and resp.headers["X-Inference-Target"] == "a-chat"
        openai_stream_error(await resp.read())
    assert b.requests == 0


async def test_when_every_target_fails_the_last_error_names_them_and_no_secret(http, pair):
    a, b = pair
    await put_router(http, "text_embedding", "r", ["a-text", "b-text"])
    a.plan(answer(503, f"key {SECRET} is overloaded"))
    b.plan(answer(502, f"key {SECRET} is down"))
    async with http.post("/_inference/text_embedding/r", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 400
        assert resp.headers["X-Inference-Target"] == "b-text"
    reason = body["error"]["reason"]
    assert SECRET not in json.dumps(body)
    assert reason == ("Received a server error status code for request from inference entity id [b-text] status "
                      "[502]. Error message: [key [redacted] is down]; router [r] tried [a-text, b-text]")


async def test_metrics_and_the_access_log_name_the_target(http, pair, caplog):
    a, b = pair
    await put_router(http, "completion", "r", ["a-completion", "b-completion"])
    a.plan(answer(503))
    with caplog.at_level(logging.INFO, logger="proxy.access"):
        async with http.post("/_inference/completion/r", json={"input": "x"}) as resp:
            assert resp.status == 200
    line = json.loads([r.getMessage() for r in caplog.records if r.name == "proxy.access"][-1])
    assert line["endpoint"] == "r" and line["service"] == "router" and line["target"] == "b-completion"
    async with http.get("/metrics") as resp:
        text = await resp.text()
    for sample in ('inference_proxy_router_attempts_total{router="r",target="a-completion"} 1.0',
                   'inference_proxy_router_attempts_total{router="r",target="b-completion"} 1.0',
                   'inference_proxy_router_failures_total{router="r",status="503",target="a-completion"} 1.0',
                   'inference_proxy_router_chosen_total{router="r",target="b-completion"} 1.0',
                   'inference_proxy_circuit_breaker_state{target="a-completion"} 0.0'):
        assert sample in text, sample


async def test_a_targets_own_rate_limit_moves_on(http, pair):
    a, b = pair
    await put_target(http, "completion", "a-limited", a, rate_limit={"requests_per_minute": 1})
    await put_router(http, "completion", "r", ["a-limited", "b-completion"])
    targets = []
    for _ in range(3):
        async with http.post("/_inference/completion/r?timeout=5s", json={"input": "x"}) as resp:
            assert resp.status == 200
            targets.append(resp.headers["X-Inference-Target"])
    # the next slot is a minute away, beyond the request's timeout: refused at once with 429, so the next target
    assert targets == ["a-limited", "b-completion", "b-completion"] and a.requests == 1


async def test_retries_try_the_same_target_again_first(http, pair):
    a, b = pair
    await put_router(http, "completion", "r", ["a-completion", "b-completion"], retries=1)
    a.plan(answer(503))
    async with http.post("/_inference/completion/r?timeout=10s", json={"input": "x"}) as resp:
        assert resp.status == 200 and resp.headers["X-Inference-Target"] == "a-completion"
    assert (a.requests, b.requests) == (2, 0)


async def test_a_router_of_routers_names_the_endpoint_that_answered(http, pair):
    a, b = pair
    await put_router(http, "chat_completion", "inner", ["a-chat", "b-chat"])
    await put_router(http, "chat_completion", "outer", ["inner"])
    a.plan(answer(503), times=2)
    async with http.post("/v1/chat/completions", json={"model": "outer", **CHAT}) as resp:
        assert resp.status == 200 and resp.headers["X-Inference-Target"] == "b-chat"
    async with http.post("/v1/chat/completions", json={"model": "outer", "stream": True, **CHAT}) as resp:
        assert resp.status == 200 and resp.headers["X-Inference-Target"] == "b-chat"
        assert openai_chat_text(await resp.read()) == "Hello"
