"""Issue 20.5: one /metrics for `--workers N`: any worker's scrape answers for the whole process group."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest

from tests.shared.conftest import PROCESS_PID

_MODELS = re.compile(r'^inference_proxy_requests_total\{[^}]*route="/v1/models"[^}]*\} (\S+)$', re.M)
_IN_FLIGHT = re.compile(r"^inference_proxy_in_flight_requests(\{[^}]*\})? (\S+)$", re.M)


async def _fresh(base: str, path: str) -> str:
    """A request on a new connection, so the kernel may hand it to either worker."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        async with s.get(base + path) as resp:
            assert resp.status == 200
            return await resp.text()


@pytest.mark.slow
async def test_every_worker_scrapes_the_sum_of_all_workers(gateways, session):
    gw = gateways("w", workers=2)
    await gw.wait_ready(session)
    answered: set[int] = set()
    deadline = time.monotonic() + 30
    while len(answered) < 2:  # wait until both workers listen (the second may start seconds later on a busy box)
        assert time.monotonic() < deadline, f"only workers {sorted(answered)} answered:\n{gw.log()}"
        answered.update(int(p) for p in PROCESS_PID.findall(await _fresh(gw.base, "/metrics")))
        await asyncio.sleep(0.05)

    sent = 40
    for _ in range(sent):
        await _fresh(gw.base, "/v1/models")

    scraped_by: set[int] = set()
    for _ in range(30):
        text = await _fresh(gw.base, "/metrics")
        (pid,) = PROCESS_PID.findall(text)  # the answering worker, one series
        scraped_by.add(int(pid))
        assert sum(float(v) for v in _MODELS.findall(text)) == sent, text
        # gauges merged too: one in-flight series, the scrape itself
        assert [float(v) for _, v in _IN_FLIGHT.findall(text)] == [1.0]
        if len(scraped_by) == 2:
            break
    assert len(scraped_by) == 2, "every scrape reached the same worker"
