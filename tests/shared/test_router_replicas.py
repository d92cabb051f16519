"""Two replicas with `--redis` share each router target's circuit breaker; one without does not."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.faults.raw_upstream import RawUpstream
from tests.shared.conftest import unique


def _target(url: str) -> dict:
    return {"service": "openai", "service_settings": {"api_key": "sk-x", "model_id": "m",
                                                      "url": f"{url}/v1/chat/completions"}}


async def _refuse(conn):
    await conn.respond(503, json.dumps({"error": {"message": "overloaded", "type": "server_error"}}))


@pytest.mark.slow
async def test_replicas_share_the_breaker_through_redis(redis_url, gateways, session):
    a_up, b_up = await RawUpstream().start(), await RawUpstream().start()
    try:
        one = gateways("one", redis=redis_url)
        two = gateways("two", redis=redis_url)
        alone = gateways("alone")
        await asyncio.gather(one.wait_ready(session), two.wait_ready(session), alone.wait_ready(session))
        a, b, r = unique("a"), unique("b"), unique("r")  # fresh ids: fresh breakers in the shared Redis
        for gw in (one, two, alone):  # each replica keeps its own SQLite store here: the same endpoints on each
            for inference_id, up in ((a, a_up), (b, b_up)):
                async with session.put(f"{gw.base}/_inference/completion/{inference_id}", json=_target(up.url)) as resp:
                    assert resp.status == 200, await resp.text()
            router = {"service": "router", "service_settings": {
                "targets": [a, b], "circuit_breaker": {"failure_threshold": 2, "cooldown": "1h"}}}
            async with session.put(f"{gw.base}/_inference/completion/{r}", json=router) as resp:
                assert resp.status == 200, await resp.text()

        async def ask(gw) -> str:
            async with session.post(f"{gw.base}/_inference/completion/{r}", json={"input": "x"}) as resp:
                assert resp.status == 200, await resp.text()
                return resp.headers["X-Inference-Target"]

        a_up.plan(_refuse, times=10)
        assert [await ask(one), await ask(one)] == [b, b]  # two failures of `a`, seen by replica one
        assert a_up.requests == 2
        assert await ask(two) == b
        assert a_up.requests == 2  # replica two skipped `a`: the breaker it read in Redis is open
        assert await ask(alone) == b
        assert a_up.requests == 3  # without Redis a replica has only its own breaker, still closed
    finally:
        await a_up.stop()
        await b_up.stop()
