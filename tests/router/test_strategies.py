"""Which target each strategy picks, counted from `X-Inference-Target` over many requests."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from tests.faults.raw_upstream import good

from .conftest import put_router, put_target


async def picks(http, router: str, n: int) -> list[str]:
    out = []
    for _ in range(n):
        async with http.post(f"/_inference/completion/{router}", json={"input": "x"}) as resp:
            assert resp.status == 200, await resp.text()
            out.append(resp.headers["X-Inference-Target"])
    return out


async def three(http, upstreams) -> list:
    ups = [await upstreams() for _ in range(3)]
    for name, up in zip("abc", ups):
        await put_target(http, "completion", name, up)
    return ups


async def test_fallback_always_asks_the_first_healthy_target(http, upstreams):
    await three(http, upstreams)
    await put_router(http, "completion", "r", ["b", "a", "c"])
    assert set(await picks(http, "r", 12)) == {"b"}


async def test_round_robin_takes_turns(http, upstreams):
    await three(http, upstreams)
    await put_router(http, "completion", "r", ["a", "b", "c"], strategy="round_robin")
    assert await picks(http, "r", 12) == ["a", "b", "c"] * 4


async def test_weighted_follows_the_weights(http, upstreams):
    await three(http, upstreams)
    await put_router(http, "completion", "r", [{"id": "a", "weight": 6}, {"id": "b", "weight": 3},
                                               {"id": "c", "weight": 1}], strategy="weighted")
    random.seed(19)  # the gateway runs in this process: the draw is reproducible
    counts = Counter(await picks(http, "r", 200))
    # expected 120 / 60 / 20; the bounds are about four standard deviations wide
    assert 92 <= counts["a"] <= 148 and 34 <= counts["b"] <= 86 and 4 <= counts["c"] <= 38, counts


async def test_least_latency_prefers_the_fastest_once_each_is_measured(http, upstreams):
    slow, fast = await upstreams(), await upstreams()

    async def late(conn):  # slower than any stall of a busy test machine
        await asyncio.sleep(1.0)
        await good(conn)

    slow.plan(late, times=50)
    await put_target(http, "completion", "slow", slow)
    await put_target(http, "completion", "fast", fast)
    await put_router(http, "completion", "r", ["slow", "fast"], strategy="least_latency")
    first = await picks(http, "r", 2)
    assert sorted(first) == ["fast", "slow"]  # an unmeasured target is tried first, so both get measured
    assert set(await picks(http, "r", 10)) == {"fast"}


async def test_least_busy_avoids_the_target_with_a_request_in_flight(http, upstreams):
    held, free = await upstreams(), await upstreams()
    release = asyncio.Event()

    async def hold(conn):
        await release.wait()
        await good(conn)

    held.plan(hold)
    await put_target(http, "completion", "held", held)
    await put_target(http, "completion", "free", free)
    await put_router(http, "completion", "r", ["held", "free"], strategy="least_busy")

    async def one() -> str:
        async with http.post("/_inference/completion/r", json={"input": "x"}) as resp:
            assert resp.status == 200
            return resp.headers["X-Inference-Target"]

    background = None
    while background is None:  # ties are broken at random: send until one request is held
        task = asyncio.create_task(one())
        done, _ = await asyncio.wait([task, asyncio.create_task(held.arrived.wait())],
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            assert task.result() == "free"
        else:
            background = task
    assert set(await picks(http, "r", 8)) == {"free"}
    release.set()
    assert await background == "held"
