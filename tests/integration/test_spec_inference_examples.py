"""Replays the inference request examples of the Elasticsearch specification (`tests/data/es_spec_examples.json`,
`requests`, each with its source file in elastic/elasticsearch-specification) against simulated providers: every
example Elasticsearch 9.5 documents must be answered in its API's shape, through the official client's method
where it has one (streams are read as the event stream they are)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from elasticsearch import BadRequestError

from tests.conftest import make_settings
from tests.fakes.alibabacloud_upstream import FakeAlibaba
from tests.fakes.cohere_upstream import FakeCohere
from tests.fakes.openai_upstream import FakeOpenAI

EXAMPLES = json.loads((Path(__file__).parents[1] / "data" / "es_spec_examples.json").read_text())["requests"]

# Examples of a later Elasticsearch than the 9.5 the gateway speaks: file -> what the 9.5 answer says.
LATER: dict[str, str] = {
    # "The `url` format is available in Elasticsearch 9.6.0 and later" (the examples' own descriptions); 9.5's
    # InferenceString takes `text` and `base64` only, and 9.5's rerank takes strings
    "RerankRequestExample4.yaml": "query doesn't support values of type: START_OBJECT",
    "RerankRequestExample5.yaml": "input doesn't support values of type: START_OBJECT",
    "EmbeddingRequestExample4.yaml": "[InferenceString] failed to parse field [format]",
}

# `reasoning.summary` (OpenRouter's vocabulary, which ES's `Reasoning` copies) has a place in none of the chat APIs the
# gateway maps reasoning to (OpenAI reasoning_effort, Anthropic and Gemini thinking: adapters/openai_compat.py,
# anthropic.py, google.py), so these are refused by name before anything is sent, as the issue asks of reasoning
# a provider cannot take; the same requests without `summary` go through.
REASONING_SUMMARY = {f"PostChatCompletionRequestExample{i}.yaml" for i in (4, 5, 6)}


@pytest.fixture
async def providers(serve_fake):
    return {"openai": await serve_fake(FakeOpenAI()), "cohere": await serve_fake(FakeCohere()),
            "alibaba": await serve_fake(FakeAlibaba())}


@pytest.fixture
def gateway_settings(tmp_path, providers):
    return make_settings(tmp_path, upstreams={"cohere": providers["cohere"].url,
                                              "alibabacloud-ai-search": providers["alibaba"].url})


@pytest.fixture
async def http(gateway):
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/"))) as session:
        yield session


def _endpoint(task: str, providers: dict) -> dict:
    """An endpoint of the example's task on a simulated provider."""
    openai, cohere, alibaba = providers["openai"], providers["cohere"], providers["alibaba"]
    if task in ("text_embedding", "rerank", "embedding"):
        return {"service": "cohere", "service_settings": {
            "api_key": cohere.api_key, "model_id": "rerank-v3.5" if task == "rerank" else "embed-v4.0"}}
    if task == "sparse_embedding":
        return {"service": "alibabacloud-ai-search", "service_settings": {
            "api_key": alibaba.api_key, "service_id": "ops-text-sparse-embedding-001", "host": alibaba.host,
            "workspace": alibaba.workspace, "http_schema": "http"}}
    return {"service": "openai", "service_settings": {"api_key": openai.api_key, "model_id": "o3-mini",
                                                      "url": f"{openai.url}/v1/chat/completions"}}


@pytest.mark.parametrize("example", [pytest.param(e, id=e["source"].rsplit("/", 1)[1]) for e in EXAMPLES])
async def test_inference_examples_are_answered(es, http, providers, example):
    name = example["source"].rsplit("/", 1)[1]
    method, path = example["request"].split(" ", 1)
    parts = path.split("/")  # _inference/{task}/{id}[/_stream] or _inference/{id}/_update
    body = example["body"]
    if parts[-1] == "_update":
        await es.inference.put(task_type="rerank", inference_id=parts[1], inference_config=_endpoint("rerank", providers))
        resp = await es.inference.update(inference_id=parts[1], inference_config=body)
        assert resp.body["inference_id"] == parts[1] and "api_key" not in resp.body["service_settings"]
        return
    task, inference_id = parts[1], parts[2]
    await es.inference.put(task_type=task, inference_id=inference_id, inference_config=_endpoint(task, providers))
    if name in LATER:
        with pytest.raises(BadRequestError) as info:
            await es.perform_request(method, f"/{path}", body=body, headers={"content-type": "application/json",
                                                                            "accept": "application/json"})
        assert LATER[name] in json.dumps(info.value.body)
        return
    if name in REASONING_SUMMARY:
        calls = len(providers["openai"].requests)
        async with http.post(f"/{path}", json=body) as resp:
            raw = await resp.text()
            assert resp.status == 400 and "does not support the [reasoning.summary] parameter" in raw, raw
        assert len(providers["openai"].requests) == calls  # refused before anything was sent
        # the messages' `reasoning` and `reasoning_details` are taken: the same turn with an effort streams
        body = {**body, "reasoning": {"effort": "high"}}
    if parts[-1] == "_stream":
        async with http.post(f"/{path}", json=body) as resp:
            raw = await resp.text()
            assert resp.status == 200, raw
            assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and all("error" not in json.loads(e) for e in events[:-1])
        return
    resp = await es.perform_request(method, f"/{path}", body=body, headers={"content-type": "application/json",
                                                                           "accept": "application/json"})
    key = {"chat_completion": "choices"}.get(task, task)
    assert resp.body[key], resp.body
