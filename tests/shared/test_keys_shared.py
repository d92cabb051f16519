"""Issue 20: API keys and usage shared by replicas through PostgreSQL.

Two gateway processes on one database: a key made with the CLI works on both, a key made through
one replica's API works on the other, an invalidation on one is refused by the other within a second,
and usage from concurrent load on both sums up in the store.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.shared.conftest import REPO, embedding_body, eventually, new_key


def _cli_key(dsn: str, tmp_path, role: str = "superuser") -> str:
    out = subprocess.run([sys.executable, "-m", "proxy", "keys", "create", "--role", role, "--name", "ops",
                          "--store", dsn, "--data-dir", str(tmp_path / "cli")],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("api_key:")[1].split()[0]


@pytest.mark.slow
async def test_replicas_share_keys_revocations_and_usage(gateways, session, pg_dsn, upstream, tmp_path):
    root = _cli_key(pg_dsn, tmp_path)
    secret = new_key()
    fast_flush = {"INFERENCE_PROXY_USAGE_FLUSH_S": "0.2"}
    one = gateways("one", store=pg_dsn, secret_key=secret, extra_env=fast_flush)
    two = gateways("two", store=pg_dsn, secret_key=secret, extra_env=fast_flush)
    for gw in (one, two):
        await gw.wait_ready(session)
    admin = {"Authorization": f"ApiKey {root}"}

    async def call(gw, method, path, headers, **kw):
        async with session.request(method, gw.base + path, headers=headers, **kw) as resp:
            return resp.status, await resp.json()

    status, _ = await call(one, "PUT", "/_inference/text_embedding/emb", admin, json=embedding_body(upstream))
    assert status == 200
    status, made = await call(one, "POST", "/_security/api_key", admin, json={"name": "app"})
    assert status == 200
    app = {"Authorization": f"ApiKey {made['encoded']}"}

    async def works_on_two() -> bool:
        return (await call(two, "GET", "/_inference/emb", app))[0] == 200

    await eventually(works_on_two, 2.0)

    # concurrent load on both replicas, counted in one place
    async def embed(gw):
        status, _ = await call(gw, "POST", "/v1/embeddings", app, json={"model": "emb", "input": ["a b"]})
        assert status == 200

    await asyncio.gather(*(embed(gw) for gw in (one, two) for _ in range(15)))

    async def summed() -> bool:
        _, usage = await call(two, "GET", f"/_inference/_usage?key={made['id']}", admin)
        return usage["totals"]["requests"] >= 30

    await eventually(summed, 5.0, interval=0.2)
    _, usage = await call(one, "GET", f"/_inference/_usage?key={made['id']}&endpoint=emb", admin)
    (entry,) = usage["usage"]
    assert entry["requests"] == 30 and entry["input_tokens"] == 60

    status, gone = await call(one, "DELETE", "/_security/api_key", admin, json={"ids": [made["id"]]})
    assert gone["invalidated_api_keys"] == [made["id"]]

    async def refused_on_two() -> bool:
        return (await call(two, "GET", "/_inference/emb", app))[0] == 401

    took = await eventually(refused_on_two, 1.0)
    print(f"invalidation seen by the other replica after {took * 1000:.0f} ms")


@pytest.mark.slow
async def test_a_key_budget_holds_across_replicas_through_redis(gateways, session, pg_dsn, redis_url, upstream,
                                                                tmp_path):
    import time

    root = _cli_key(pg_dsn, tmp_path)
    secret = new_key()
    one = gateways("one", store=pg_dsn, redis=redis_url, secret_key=secret)
    two = gateways("two", store=pg_dsn, redis=redis_url, secret_key=secret)
    for gw in (one, two):
        await gw.wait_ready(session)
    admin = {"Authorization": f"ApiKey {root}"}
    async with session.put(one.base + "/_inference/text_embedding/emb", headers=admin,
                           json=embedding_body(upstream)) as resp:
        assert resp.status == 200
    async with session.post(one.base + "/_security/api_key", headers=admin,
                            json={"name": "metered", "metadata": {"inference_limits": {"requests_per_minute": 6}}}
                            ) as resp:
        app = {"Authorization": f"ApiKey {(await resp.json())['encoded']}"}
    if 60 - time.time() % 60 < 10:  # the count is per UTC minute: start it in a fresh one
        await asyncio.sleep(60 - time.time() % 60 + 0.1)

    async def embed(gw) -> int:
        async with session.post(gw.base + "/_inference/text_embedding/emb", headers=app, json={"input": "x"}) as r:
            return r.status

    async def known_on_two() -> bool:
        async with session.get(two.base + "/_security/_authenticate", headers=app) as r:
            return r.status == 200

    await eventually(known_on_two, 2.0)  # its one successful call is one of the key's 6 requests
    statuses = [await embed(gw) for _ in range(5) for gw in (one, two)]
    assert statuses.count(200) == 5 and statuses.count(429) == 5, statuses
