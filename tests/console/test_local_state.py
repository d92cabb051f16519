"""The console's endpoint state for local models: unloaded, loading, then ready (real weights, E5 small)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from engines.models import builtin_models
from proxy.server import create_app
from tests.console.conftest import shot
from tests.engines.conftest import E5, local_settings
from tests.engines.holds import hold_e5_load

pytestmark = [pytest.mark.slow, pytest.mark.skipif(E5 not in {m.model_id for m in builtin_models()},
                                                   reason=f"the local model package of {E5} is not installed")]
E5_EP = ".multilingual-e5-small-elasticsearch"


async def _status(http, server) -> dict:
    async with http.get(server.make_url("/_console/api/status")) as resp:
        assert resp.status == 200
        return await resp.json()


@pytest.fixture
def gate(monkeypatch):
    """E5's weights load only once the test opens this gate, so `loading` lasts as long as it needs."""
    opened = hold_e5_load(monkeypatch)
    yield opened
    opened.set()


async def test_local_model_state_unloaded_loading_ready(aiohttp_server, tmp_path, gate):
    app = create_app(local_settings(tmp_path, local_models_include=[E5], local_preload=False))
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        status = await _status(http, server)
        assert status["endpoints"][E5_EP] == {"state": "unloaded"}
        assert status["local_models"] == {"total": 1, "loading": 0, "ready": 0}
        request = asyncio.create_task(http.post(server.make_url(f"/_inference/{E5_EP}"), json={"input": "hi"}))
        deadline = time.monotonic() + 20
        while (status := await _status(http, server))["endpoints"][E5_EP]["state"] != "loading":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert status["local_models"]["loading"] == 1
        gate.set()
        async with await request as resp:
            assert resp.status == 200, await resp.text()
        state = (await _status(http, server))["endpoints"][E5_EP]
        assert state["state"] == "ready" and state["load_seconds"] > 0 and state["engine"]


async def test_the_endpoints_page_shows_a_model_loading(aiohttp_server, tmp_path, gate, page):
    server = await aiohttp_server(create_app(local_settings(tmp_path, local_models_include=[E5], local_preload=False)))
    await page.goto(str(server.make_url("/_console/")))
    row = f"tr[data-id='{E5_EP}']"
    await page.wait_for_selector(f"{row} [data-state=unloaded]")
    assert await page.is_hidden("#local-models") is False
    assert "0 of 1 loaded" in await page.inner_text("#local-models")
    async with aiohttp.ClientSession() as http:
        request = asyncio.create_task(http.post(server.make_url(f"/_inference/{E5_EP}"), json={"input": "hi"}))
        await page.wait_for_selector(f"{row} [data-state=loading]")  # the page polls every 3 s
        assert "1 loading" in await page.inner_text("#local-models")
        await shot(page, "endpoints-local-loading")
        gate.set()
        async with await request as resp:
            assert resp.status == 200
    await page.wait_for_selector(f"{row} [data-state=ready]")
    assert "loaded in" in await page.inner_text(row)
    assert "1 of 1 loaded" in await page.inner_text("#local-models")
