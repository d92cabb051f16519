"""Router fixtures: the real gateway in front of hand-written upstreams (`tests/faults/raw_upstream.py`),
one upstream per target so that each target can fail in its own way."""

from __future__ import annotations

import aiohttp
import pytest

from tests.faults.raw_upstream import RawUpstream

SECRET = "sk-router-secret"


@pytest.fixture
async def upstreams():
    """A factory of raw upstreams, all stopped after the test."""
    started: list[RawUpstream] = []

    async def start() -> RawUpstream:
        server = await RawUpstream().start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def http(gateway):
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/")),
                                     timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def put(http, task: str, inference_id: str, body: dict, status: int = 200) -> dict:
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        answer = await resp.json()
        assert resp.status == status, answer
        return answer


def openai_body(url: str, path: str, **settings) -> dict:
    return {"service": "openai", "service_settings": {"api_key": SECRET, "model_id": "m", "url": url + path,
                                                      **settings}}


async def put_target(http, task: str, inference_id: str, upstream, **settings) -> dict:
    path = "/v1/embeddings" if task == "text_embedding" else "/v1/chat/completions"
    return await put(http, task, inference_id, openai_body(upstream.url, path, **settings))


async def put_router(http, task: str, inference_id: str, targets: list, status: int = 200, **settings) -> dict:
    return await put(http, task, inference_id,
                     {"service": "router", "service_settings": {"targets": targets, **settings}}, status)
