"""Fault-suite fixtures: the real gateway in front of a hand-written upstream (`raw_upstream.py`).

Endpoints (all `openai` service, pointed at the raw upstream by their `url` setting):
`emb` (text_embedding), `comp` (completion), `chat` (chat_completion).
"""

from __future__ import annotations

import aiohttp
import msgspec
import pytest

from proxy import pipeline

from .raw_upstream import RawUpstream

SHORT_DEADLINE = "600ms"  # replaces the 30 s / 120 s defaults of /v1 calls
IDLE = 0.3  # replaces CallContext.idle_timeout (60 s)


@pytest.fixture
async def raw():
    server = await RawUpstream().start()
    yield server
    await server.stop()


@pytest.fixture
async def http(gateway):
    # a bound on every call, so a fault that hangs the gateway fails the test instead of the suite
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/")),
                                     timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


async def put_endpoint(http, task: str, inference_id: str, url: str, model: str = "raw-model") -> None:
    body = {"service": "openai", "service_settings": {"api_key": "sk-fault-secret", "model_id": model, "url": url}}
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        assert resp.status == 200, await resp.text()


@pytest.fixture
async def endpoints(http, raw):
    await put_endpoint(http, "text_embedding", "emb", f"{raw.url}/v1/embeddings")
    await put_endpoint(http, "completion", "comp", f"{raw.url}/v1/chat/completions")
    await put_endpoint(http, "chat_completion", "chat", f"{raw.url}/v1/chat/completions")


@pytest.fixture
def short_deadlines(monkeypatch):
    """/v1 has no per-request timeout: shorten the gateway defaults (30s / 120s) so retries end fast.

    The gateway has no setting for this; the test reaches into `proxy.pipeline`."""
    monkeypatch.setattr(pipeline, "DEFAULT_TIMEOUT_TEXT", SHORT_DEADLINE)
    monkeypatch.setattr(pipeline, "DEFAULT_GENERATION_TIMEOUT_TEXT", SHORT_DEADLINE)


@pytest.fixture
def short_idle(monkeypatch):
    """CallContext.idle_timeout is 60 s and no setting changes it: wrap `pipeline.context` to make it IDLE."""
    original = pipeline.context

    def context(ep, timeout_s, timeout_text):
        return msgspec.structs.replace(original(ep, timeout_s, timeout_text), idle_timeout=IDLE)

    monkeypatch.setattr(pipeline, "context", context)
