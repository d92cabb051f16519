"""The console's metrics snapshot under `--workers N`: whichever worker answers, it counts every worker."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.shared.conftest import embedding_body


async def _fresh(base: str, method: str, path: str, body: dict | None = None) -> dict:
    """A request on a new connection, so the kernel may hand it to either worker."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        async with s.request(method, base + path, json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


@pytest.mark.slow
async def test_every_worker_answers_the_merged_counts(gateways, session, upstream):
    gw = gateways("w", workers=2)
    await gw.wait_ready(session)
    await _fresh(gw.base, "PUT", "/_inference/text_embedding/emb", embedding_body(upstream))
    await _everywhere(gw.base, "/_inference/emb")  # the other worker learns of it through the store
    sent = 12
    for i in range(sent):
        await _fresh(gw.base, "POST", "/_inference/text_embedding/emb", {"input": f"x{i}"})
    answered_by: set[int] = set()
    for _ in range(40):
        snap = await _fresh(gw.base, "GET", "/_console/api/metrics")
        answered_by.add(snap["process"])
        assert snap["source"] == "workers"
        assert snap["endpoints"]["emb"]["requests"] == sent
        assert snap["latency"][-1] == [None, sent]  # +Inf bucket: every request of every worker
        if len(answered_by) == 2:
            break
    assert len(answered_by) == 2, "every poll reached the same worker"


async def _everywhere(base: str, path: str, timeout: float = 20.0) -> None:
    """Until ten fresh connections in a row find `path` (a 404 is not counted as inference: no endpoint)."""
    deadline = time.monotonic() + timeout
    found = 0
    while found < 10:
        assert time.monotonic() < deadline, f"{path} not visible to every worker"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async with s.get(base + path) as resp:
                found = found + 1 if resp.status == 200 else 0
        await asyncio.sleep(0.02)
