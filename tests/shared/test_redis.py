"""Issue 9: Redis for rate limits shared by replicas, the embedding cache, and life without Redis.

The limiter and the cache are first exercised in-process against the machine's Redis; then two
gateway processes share a limit; then a private redis-server is killed under two gateways that
must keep serving (with per-process limits, saying so in logs and metrics) and recover when it
is back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from proxy.contract import CallContext
from proxy.errors import TooManyRequestsError
from proxy.limits import RateLimiter
from proxy.metrics import Metrics
from proxy.endpoint import Endpoint
from proxy.types import EmbedRequest, EmbedResult, InputType, TaskType, Usage
from tests.fakes.openai_upstream import fake_vector
from tests.shared.conftest import embedding_body, eventually, metric, new_key, unique

# ------------------------------------------------------------------------------ in-process


@pytest.fixture
async def link(redis_url):
    from proxy.shared_limits import RedisLink

    metrics = Metrics()
    link = RedisLink(redis_url, metrics, cache_ttl=60)
    await link.start()
    assert link.available
    yield link
    await link.close()


async def test_the_shared_limiter_keeps_the_local_semantics_across_processes(link):
    from proxy.shared_limits import SharedRateLimiter

    ep = unique("rl")
    one, other = SharedRateLimiter(link, ep, 60), SharedRateLimiter(link, ep, 60)  # two replicas, one bucket
    local = RateLimiter(60)
    for limiter in (local, one):
        started = time.monotonic()
        await limiter.acquire(time.monotonic() + 30, ep, "30s")
        assert time.monotonic() - started < 0.1
    # the next slot is a second away: beyond a 0.5 s deadline it is refused at once, taking no slot
    for limiter in (local, other):
        started = time.monotonic()
        with pytest.raises(TooManyRequestsError) as exc:
            await limiter.acquire(time.monotonic() + 0.5, ep, "500ms")
        assert time.monotonic() - started < 0.1
        assert exc.value.headers["Retry-After"] == "1"
        assert "[500ms]" in str(exc.value) and ep in str(exc.value)
    # within a longer deadline the caller waits for its slot
    started = time.monotonic()
    await other.acquire(time.monotonic() + 5, ep, "5s")
    assert 0.8 < time.monotonic() - started < 1.3


async def test_the_shared_limiter_allows_its_burst_then_paces(link):
    from proxy.shared_limits import SharedRateLimiter

    ep = unique("burst")
    limiters = [SharedRateLimiter(link, ep, 600) for _ in range(3)]  # 10 per second, burst 10
    started = time.monotonic()
    for i in range(10):
        await limiters[i % 3].acquire(time.monotonic() + 5, ep, "5s")
    assert time.monotonic() - started < 0.2
    with pytest.raises(TooManyRequestsError):
        await limiters[0].acquire(time.monotonic() + 0.02, ep, "20ms")
    await limiters[1].acquire(time.monotonic() + 1, ep, "1s")
    assert 0.05 < time.monotonic() - started < 0.5


class CountingBackend:
    """The inner backend: records what reaches the upstream."""

    def __init__(self) -> None:
        self.calls: list[EmbedRequest] = []
        self.limiter = "inner-limiter"

    async def embed(self, req: EmbedRequest, ctx: CallContext) -> EmbedResult:
        self.calls.append(req)
        marker = (req.input_type.value if req.input_type else "") + str(req.dimensions or "")
        return EmbedResult(vectors=[msgspec.Raw(msgspec.json.encode(fake_vector(marker + t))) for t in req.inputs],
                           usage=Usage(prompt_tokens=len(req.inputs), total_tokens=len(req.inputs)))


def _endpoint(inference_id: str, **settings: Any) -> Endpoint:
    return Endpoint(inference_id=inference_id, task_type=TaskType.TEXT_EMBEDDING, service="openai",
                    service_settings={"model_id": "m", **settings}, secrets={"api_key": "sk-never-in-a-key"})


async def test_the_embedding_cache_sends_only_misses_upstream(link):
    from proxy.cache import CachingBackend

    ctx = CallContext(inference_id="x", deadline=time.monotonic() + 30, timeout_text="30s")
    ep = _endpoint(unique("emb"))
    inner = CountingBackend()
    cached = CachingBackend(inner, ep, link, link.metrics)
    assert cached.limiter == "inner-limiter"  # what Backends reads through the wrapper

    first = await cached.embed(EmbedRequest(inputs=["a", "b", "a"]), ctx)
    assert [r.inputs for r in inner.calls] == [["a", "b"]]  # a repeated input goes upstream once
    assert [msgspec.json.decode(v) for v in first.vectors] == [fake_vector("a"), fake_vector("b"), fake_vector("a")]

    second = await cached.embed(EmbedRequest(inputs=["b", "c", "a"]), ctx)
    assert [r.inputs for r in inner.calls] == [["a", "b"], ["c"]]
    assert [msgspec.json.decode(v) for v in second.vectors] == [fake_vector("b"), fake_vector("c"), fake_vector("a")]

    await cached.embed(EmbedRequest(inputs=["a", "b", "c"]), ctx)
    assert len(inner.calls) == 2  # all hits
    # what else shapes a vector is part of the key: input_type, dimensions, the endpoint's settings
    await cached.embed(EmbedRequest(inputs=["a"], input_type=InputType("search")), ctx)
    await cached.embed(EmbedRequest(inputs=["a"], dimensions=4), ctx)
    updated = CachingBackend(inner, _endpoint(ep.inference_id, dimensions=4), link, link.metrics)
    await updated.embed(EmbedRequest(inputs=["a"]), ctx)
    assert len(inner.calls) == 5

    hits = link.metrics.cache_hits.labels(ep.inference_id)._value.get()
    misses = link.metrics.cache_misses.labels(ep.inference_id)._value.get()
    assert (hits, misses) == (5, 6)  # per input; a repeated miss counts once
    keys = cached.keys(EmbedRequest(inputs=["a"]))
    assert 55 <= await link.client.ttl(keys[0]) <= 60
    assert b"sk-never" not in "".join(keys).encode() and ep.inference_id in keys[0]
    stale = [k async for k in link.client.scan_iter(match=f"*{ep.inference_id}*")]
    assert stale and await link.client.delete(*stale) == len(stale)  # leave the shared Redis clean


async def test_an_unreachable_redis_leaves_local_limits_and_no_cache():
    from proxy.cache import CachingBackend
    from proxy.shared_limits import RedisLink, SharedRateLimiter

    from tests.shared.conftest import free_port

    metrics = Metrics()
    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", metrics, cache_ttl=60)
    await link.start()
    try:
        assert not link.available
        assert metrics.redis_available._value.get() == 0
        limiter = SharedRateLimiter(link, "x", 60)
        await limiter.acquire(time.monotonic() + 30, "x", "30s")
        with pytest.raises(TooManyRequestsError):  # the local bucket holds
            await limiter.acquire(time.monotonic() + 0.5, "x", "500ms")
        inner = CountingBackend()
        ctx = CallContext(inference_id="x", deadline=time.monotonic() + 30, timeout_text="30s")
        cached = CachingBackend(inner, _endpoint("x"), link, metrics)
        await cached.embed(EmbedRequest(inputs=["a"]), ctx)
        await cached.embed(EmbedRequest(inputs=["a"]), ctx)
        assert len(inner.calls) == 2
    finally:
        await link.close()


# ------------------------------------------------------------------------------ gateway processes


async def _embed(session, base: str, ep: str, text: str, timeout: str | None = None) -> int:
    url = f"{base}/_inference/text_embedding/{ep}" + (f"?timeout={timeout}" if timeout else "")
    async with session.post(url, json={"input": text}) as resp:
        await resp.read()
        return resp.status


async def _visible(session, gw, ep: str) -> None:
    async def check() -> bool:
        async with session.get(f"{gw.base}/_inference/{ep}") as resp:
            return resp.status == 200

    await eventually(check, 1.0)


@pytest.mark.slow
async def test_a_rate_limit_holds_across_replicas(pg_dsn, redis_url, gateways, session, upstream):
    key = new_key()
    a = gateways("a", store=pg_dsn, redis=redis_url, secret_key=key)
    b = gateways("b", store=pg_dsn, redis=redis_url, secret_key=key)
    await asyncio.gather(a.wait_ready(session), b.wait_ready(session))
    ep = unique("limited")
    body = embedding_body(upstream, rate_limit={"requests_per_minute": 60})  # one a second, burst 1
    async with session.put(f"{a.base}/_inference/text_embedding/{ep}", json=body) as resp:
        assert resp.status == 200, await resp.text()
    await _visible(session, b, ep)

    assert await _embed(session, a.base, ep, "first") == 200
    # the other replica's next slot is a second away: refused at once within a 500 ms timeout
    started = time.monotonic()
    assert await _embed(session, b.base, ep, "second", timeout="500ms") == 429
    assert time.monotonic() - started < 0.4
    assert await metric(session, b.base, "inference_proxy_rate_limit_rejections_total", ep) == 1
    # with time to wait, it waits for its slot
    started = time.monotonic()
    assert await _embed(session, b.base, ep, "third", timeout="10s") == 200
    assert time.monotonic() - started > 0.6
    assert len(upstream.requests) == 2
    for gw in (a, b):
        assert await metric(session, gw.base, "inference_proxy_redis_available") == 1


@pytest.mark.slow
async def test_gateways_keep_serving_when_redis_stops_and_share_again_when_it_is_back(
        pg_dsn, own_redis, gateways, session, upstream):
    key = new_key()
    a = gateways("a", store=pg_dsn, redis=own_redis.url, secret_key=key, cache_ttl=60)
    b = gateways("b", store=pg_dsn, redis=own_redis.url, secret_key=key, cache_ttl=60)
    await asyncio.gather(a.wait_ready(session), b.wait_ready(session))
    ep = unique("cached")
    body = embedding_body(upstream, rate_limit={"requests_per_minute": 20})  # a slot every 3 s: wide margins
    async with session.put(f"{a.base}/_inference/text_embedding/{ep}", json=body) as resp:
        assert resp.status == 200, await resp.text()
    await _visible(session, b, ep)

    # the cache is shared: what A fetched, B answers without the upstream (and without a rate-limit slot)
    assert await _embed(session, a.base, ep, "cache me") == 200
    assert await _embed(session, b.base, ep, "cache me") == 200
    assert len(upstream.requests) == 1
    assert await metric(session, b.base, "inference_proxy_embedding_cache_hits_total", ep) == 1
    assert await metric(session, a.base, "inference_proxy_embedding_cache_misses_total", ep) == 1
    # and so is the limit
    assert await _embed(session, b.base, ep, "not now", timeout="500ms") == 429

    own_redis.kill()
    # both keep serving, each with its own (fresh) local bucket, without the cache
    assert await _embed(session, a.base, ep, "cache me", timeout="500ms") == 200
    assert await _embed(session, b.base, ep, "cache me", timeout="500ms") == 200
    assert len(upstream.requests) == 3
    for gw in (a, b):
        assert await metric(session, gw.base, "inference_proxy_redis_available") == 0
        assert "Redis at redis://127.0.0.1" in gw.log() and "stopped answering" in gw.log()
        # per process now: the second request within a second on one gateway is refused
        assert await _embed(session, gw.base, ep, "local", timeout="500ms") == 429

    own_redis.start()  # back on the same port, empty

    async def both_back() -> bool:
        return all([await metric(session, gw.base, "inference_proxy_redis_available") == 1 for gw in (a, b)])

    await eventually(both_back, 5.0, interval=0.1)
    assert "answers again" in a.log()
    assert await _embed(session, a.base, ep, "shared again") == 200
    assert await _embed(session, b.base, ep, "shared again 2", timeout="500ms") == 429
