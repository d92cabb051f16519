"""Token usage reported by upstreams is counted for every task on both surfaces (`proxy.pipeline`).

The simulated upstreams report usage the way their providers document it; the counter
`inference_proxy_tokens_total{endpoint, direction}` must grow by exactly what they reported.
"""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.conftest import make_settings
from tests.fakes.alibabacloud_upstream import FakeAlibaba
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture
async def upstreams(serve_fake):
    return await serve_fake(FakeOpenAI()), await serve_fake(FakeAlibaba())


@pytest.fixture
def gateway_settings(tmp_path, upstreams):
    return make_settings(tmp_path, upstreams={"alibabacloud-ai-search": upstreams[1].url})


@pytest.fixture
async def http(gateway, upstreams):
    openai_fake, ali = upstreams
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/"))) as session:
        def oai(path: str) -> dict:
            return {"api_key": openai_fake.api_key, "model_id": "gpt-test", "url": f"{openai_fake.url}{path}"}

        bodies = {
            "text_embedding/emb": {"service": "openai", "service_settings": oai("/v1/embeddings")},
            "completion/comp": {"service": "openai", "service_settings": oai("/v1/chat/completions")},
            "rerank/rr": {"service": "openshift_ai", "service_settings": {"api_key": openai_fake.api_key,
                                                                          "url": f"{openai_fake.url}/v1/rerank"}},
            "sparse_embedding/sparse": {"service": "alibabacloud-ai-search", "service_settings": {
                "api_key": ali.api_key, "service_id": "ops-text-sparse-embedding-001", "host": ali.host,
                "workspace": ali.workspace, "http_schema": "http"}},
        }
        for path, body in bodies.items():
            async with session.put(f"/_inference/{path}", json=body) as resp:
                assert resp.status == 200, await resp.text()
        yield session


async def tokens(http) -> dict[tuple[str, str], float]:
    async with http.get("/metrics") as resp:
        text = await resp.text()
    pattern = r'inference_proxy_tokens_total\{direction="(\w+)",endpoint="([^"]+)"\} ([0-9.]+)'
    return {(m[1], m[0]): float(m[2]) for m in re.findall(pattern, text)}


async def post(http, path: str, body: dict) -> dict:
    async with http.post(path, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_every_task_on_both_surfaces_counts_the_usage_upstreams_report(http):
    assert await tokens(http) == {}
    await post(http, "/_inference/text_embedding/emb", {"input": ["one two three", "four"]})
    assert await tokens(http) == {("emb", "in"): 4.0}  # the fake counts words: 3 + 1
    await post(http, "/_inference/sparse_embedding/sparse", {"input": ["hello world"]})
    assert (await tokens(http))[("sparse", "in")] == 11.0  # Alibaba's `usage.token_count`
    await post(http, "/_inference/rerank/rr", {"input": ["a b", "c"], "query": "a"})
    assert (await tokens(http))[("rr", "in")] == 4.0  # Cohere-style `usage.prompt_tokens`
    await post(http, "/v1/rerank", {"model": "rr", "query": "a", "documents": ["a b", "c"]})
    assert (await tokens(http))[("rr", "in")] == 8.0
    answer = await post(http, "/v1/completions", {"model": "comp", "prompt": "hi"})
    assert answer["usage"]["prompt_tokens"] == 3 and answer["usage"]["completion_tokens"] == 1
    counted = await tokens(http)
    assert (counted[("comp", "in")], counted[("comp", "out")]) == (3.0, 1.0)
    await post(http, "/v1/embeddings", {"model": "emb", "input": "five six"})
    assert (await tokens(http))[("emb", "in")] == 6.0
