"""Fixtures for the integration suite: raw HTTP next to the official client (see tests/conftest.py)."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic


@pytest.fixture
async def http(gateway):
    """A plain aiohttp session on the gateway's root, for what the elasticsearch client cannot express."""
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/"))) as session:
        yield session


@pytest.fixture
async def client(gateway):
    """The official openai SDK pointed at the gateway's `/v1`."""
    async with openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture
async def claude(serve_fake) -> FakeAnthropic:
    """The simulated Anthropic upstream the client-surface tests put behind chat endpoints."""
    return await serve_fake(FakeAnthropic())


async def put(http, task, inference_id, body):
    """PUT an endpoint through a session whose base URL is the gateway; it must succeed."""
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        assert resp.status == 200, await resp.text()


def oai(upstream, model="gpt-test", **extra):
    """An `openai` chat endpoint on the simulated OpenAI upstream."""
    return {"service": "openai", "service_settings": {"api_key": upstream.api_key, "model_id": model,
                                                      "url": f"{upstream.url}/v1/chat/completions", **extra}}
