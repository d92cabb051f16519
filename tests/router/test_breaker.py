"""Circuit breakers: the state machine on a test clock, in Redis, and in front of real upstreams; and the
latency figures `least_latency` reads, shared through Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from proxy.breaker import CircuitBreakers, State

from .conftest import put_router, put_target
from .test_failover import answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def cycle(breakers, clock_step, cooldown: float) -> None:
    """The whole life of one breaker; `clock_step(s)` moves time on by `s` seconds."""
    t = f"t-{uuid.uuid4().hex[:8]}"
    ok = await breakers.admit(t, 5)
    assert ok.allowed and ok.state == State.CLOSED
    assert await breakers.failure(t, ok, 3, cooldown) == State.CLOSED
    await breakers.success(t, await breakers.admit(t, 5))  # a success resets the count
    for _ in range(2):
        assert await breakers.failure(t, await breakers.admit(t, 5), 3, cooldown) == State.CLOSED
    assert await breakers.failure(t, await breakers.admit(t, 5), 3, cooldown) == State.OPEN  # 3 in a row
    shut = await breakers.admit(t, 5)
    assert not shut.allowed and shut.state == State.OPEN and 0 < shut.wait <= cooldown
    await clock_step(cooldown)
    probe = await breakers.admit(t, 5)
    assert probe.allowed and probe.probe and probe.state == State.HALF_OPEN
    other = await breakers.admit(t, 5)  # one probe at a time
    assert not other.allowed and other.state == State.HALF_OPEN
    assert await breakers.failure(t, probe, 3, cooldown) == State.OPEN  # a failed probe opens it again
    assert not (await breakers.admit(t, 5)).allowed
    await clock_step(cooldown)
    probe = await breakers.admit(t, 5)
    assert probe.probe
    await breakers.success(t, probe)
    closed = await breakers.admit(t, 5)
    assert closed.allowed and closed.state == State.CLOSED and closed.failures == 0


async def test_the_breaker_state_machine():
    clock = Clock()

    async def step(seconds: float) -> None:
        clock.now += seconds

    await cycle(CircuitBreakers(clock), step, 30.0)


async def test_a_probe_whose_caller_vanished_is_given_to_another_after_its_lease():
    clock = Clock()
    breakers = CircuitBreakers(clock)
    await breakers.failure("t", await breakers.admit("t", 5), 1, 10.0)
    clock.now += 10
    assert (await breakers.admit("t", 2.0)).probe
    clock.now += 2.5
    assert (await breakers.admit("t", 2.0)).probe


@pytest.fixture
async def link():
    redis = pytest.importorskip("redis.asyncio", reason="redis is not installed (pip install -e '.[shared]')")
    from proxy.metrics import Metrics
    from proxy.shared_limits import RedisLink
    from tests.shared.conftest import REDIS_URL

    probe = redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await probe.ping()
    except Exception as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    finally:
        await probe.aclose()
    link = RedisLink(REDIS_URL, Metrics())
    await link.start()
    yield link
    await link.close()


async def test_the_breaker_state_machine_in_redis(link):
    from proxy.breaker import SharedCircuitBreakers

    # Redis keeps the time: a short real cooldown is waited out
    async def step(seconds: float) -> None:
        await asyncio.sleep(seconds + 0.01)

    await cycle(SharedCircuitBreakers(link), step, 1.0)
    assert link.available


async def test_latency_figures_are_shared_through_redis(link):
    from proxy.latency import SharedLatencies

    one, two = SharedLatencies(link), SharedLatencies(link)  # two replicas
    t = f"t-{uuid.uuid4().hex[:8]}"
    await one.record(t, 0.2)
    assert await two.get([t]) == {t: pytest.approx(0.2)}
    await two.record(t, 0.1)
    assert await one.get([t]) == {t: pytest.approx(0.17)}
    await link.client.hdel(one.key, t)


async def test_an_open_breaker_skips_its_target_until_the_cooldown_passes(http, upstreams):
    a, b = await upstreams(), await upstreams()
    await put_target(http, "completion", "a", a)
    await put_target(http, "completion", "b", b)
    await put_router(http, "completion", "r", ["a", "b"], circuit_breaker={"failure_threshold": 2, "cooldown": "1h"})
    a.plan(answer(503), times=2)
    for _ in range(4):
        async with http.post("/_inference/completion/r", json={"input": "x"}) as resp:
            assert resp.status == 200 and resp.headers["X-Inference-Target"] == "b"
    assert (a.requests, b.requests) == (2, 4)  # after two failures a was no longer asked
    async with http.get("/metrics") as resp:
        text = await resp.text()
    assert 'inference_proxy_circuit_breaker_state{target="a"} 1.0' in text
    assert 'inference_proxy_router_skipped_total{reason="open",router="r",target="a"} 2.0' in text
    # with every target open the router answers 503 at once, saying when to come back
    await put_router(http, "completion", "only-a", ["a"])
    async with http.post("/_inference/completion/only-a", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 503
        assert 3000 < int(resp.headers["Retry-After"]) <= 3600
    assert body["error"]["reason"] == "Router [only-a] has no target available: [a] (has an open circuit)"
    assert a.requests == 2


async def test_after_the_cooldown_one_probe_closes_the_breaker(http, upstreams):
    a, b = await upstreams(), await upstreams()
    await put_target(http, "completion", "a", a)
    await put_target(http, "completion", "b", b)
    await put_router(http, "completion", "r", ["a", "b"], circuit_breaker={"failure_threshold": 1,
                                                                            "cooldown": "300ms"})
    a.plan(answer(503))
    async with http.post("/_inference/completion/r", json={"input": "x"}) as resp:
        assert resp.headers["X-Inference-Target"] == "b"
    await asyncio.sleep(0.35)
    for _ in range(3):
        async with http.post("/_inference/completion/r", json={"input": "x"}) as resp:
            assert resp.status == 200 and resp.headers["X-Inference-Target"] == "a"
    assert a.requests == 4


async def test_without_redis_answering_the_breakers_are_the_processes_own():
    pytest.importorskip("redis.asyncio", reason="redis is not installed (pip install -e '.[shared]')")
    from proxy.breaker import SharedCircuitBreakers
    from proxy.latency import SharedLatencies
    from proxy.metrics import Metrics
    from proxy.shared_limits import RedisLink
    from tests.faults.raw_upstream import refused_port

    link = RedisLink(f"redis://127.0.0.1:{refused_port()}/0", Metrics())
    await link.start()
    try:
        assert not link.available
        clock = Clock()

        async def step(seconds: float) -> None:
            clock.now += seconds

        await cycle(SharedCircuitBreakers(link, CircuitBreakers(clock)), step, 30.0)
        latencies = SharedLatencies(link)
        await latencies.record("t", 0.2)
        await latencies.record("t", 0.1)
        assert (await latencies.get(["t", "u"])) == {"t": pytest.approx(0.17), "u": None}
    finally:
        await link.close()
