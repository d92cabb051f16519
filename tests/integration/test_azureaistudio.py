"""`azureaistudio` through `/_inference` (official `elasticsearch` client, raw SSE) and `/v1` (official `openai`
SDK), in front of a simulated Azure AI Studio holding token, Azure OpenAI and realtime deployments.

`target` is each endpoint's own URL, so it points at the fake directly; the gateway-wide origin override
for the service points at a dead port to prove it is never applied to `target`.
"""

from __future__ import annotations

import json

import openai
import pytest
from elasticsearch import ApiError, BadRequestError

from tests.conftest import make_settings
from tests.fakes.azureaistudio_upstream import FakeAzureAIStudio, fake_vector
from tests.sse import parse_sse



@pytest.fixture
async def azure(serve_fake):
    return await serve_fake(FakeAzureAIStudio())


@pytest.fixture
def gateway_settings(tmp_path):
    return make_settings(tmp_path, upstreams={"azureaistudio": "http://127.0.0.1:9"})


async def put(es, task: str, inference_id: str, target: str, provider: str, endpoint_type: str = "token",
              api_key: str = "azure-test-key", **extra) -> dict:
    settings = {"target": target, "provider": provider, "endpoint_type": endpoint_type, "api_key": api_key,
                **extra.pop("service_settings", {})}
    resp = await es.inference.put_azureaistudio(task_type=task, azureaistudio_inference_id=inference_id,
                                                service="azureaistudio", service_settings=settings, **extra)
    return resp.body


# ------------------------------------------------------------------------------ text_embedding


async def test_token_embeddings_with_a_bearer_key(es, azure):
    await put(es, "text_embedding", "emb", azure.url, "cohere", service_settings={"dimensions": 4})
    texts = ["first text", "second text"]
    resp = await es.inference.text_embedding(inference_id="emb", input=texts, input_type="ingest")
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    for vec, text in zip(vectors, texts):  # the fake answers in reverse order
        assert vec == pytest.approx(fake_vector("d:" + text, 4), abs=1e-6)
    assert azure.paths[-1] == "/embeddings"
    assert azure.requests[-1] == {"input": texts, "dimensions": 4, "input_type": "document"}


async def test_openai_provider_uses_the_target_as_is_and_api_key(es, azure):
    target = f"{azure.url}/openai/deployments/emb/embeddings?api-version=2024-02-01"
    await put(es, "text_embedding", "emb", target, "openai")
    resp = await es.inference.text_embedding(inference_id="emb", input="hello")
    assert resp.body["text_embedding"][0]["embedding"] == pytest.approx(fake_vector("hello"), abs=1e-6)
    assert azure.paths[-1] == "/openai/deployments/emb/embeddings"


async def test_provider_without_embeddings_is_refused(es, azure):
    await put(es, "text_embedding", "emb", azure.url, "meta")
    with pytest.raises(BadRequestError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert exc.value.body["error"]["reason"] == "The [text_embedding] task type for provider [meta] is not available"
    assert azure.requests == []


# ------------------------------------------------------------------------------ completion


async def test_token_completion_sends_sampling_at_the_top_level(es, azure):
    await put(es, "completion", "comp", azure.url, "meta", task_settings={"temperature": 0.4, "top_p": 0.9})
    resp = await es.inference.completion(inference_id="comp", input="what is elastic?")
    assert resp.body == {"completion": [{"result": "WHAT IS ELASTIC?"}]}
    assert azure.paths[-1] == "/chat/completions"
    assert azure.requests[-1] == {"messages": [{"content": "what is elastic?", "role": "user"}],
                                  "max_tokens": 64, "temperature": 0.4, "top_p": 0.9}
    await es.inference.completion(inference_id="comp", input="x", task_settings={"max_new_tokens": 5})
    assert azure.requests[-1]["max_tokens"] == 5


async def test_realtime_completion_with_bearer(es, azure):
    await put(es, "completion", "rt", f"{azure.url}/score", "databricks", "realtime")
    resp = await es.inference.completion(inference_id="rt", input="hello there")
    assert resp.body == {"completion": [{"result": "HELLO THERE"}]}
    assert azure.requests[-1] == {"input_data": {"input_string": [{"content": "hello there", "role": "user"}],
                                                 "parameters": {"max_new_tokens": 64}}}


async def test_completion_stream_on_a_token_endpoint(http, es, azure):
    await put(es, "completion", "comp", azure.url, "cohere")
    async with http.post("/_inference/completion/comp/_stream", json={"input": "abcdefgh"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        events = parse_sse((await resp.read()).decode())
    assert events[-1] == ("message", "[DONE]")
    deltas = [json.loads(d)["completion"][0]["delta"] for _, d in events[:-1]]
    assert "".join(deltas) == "ABCDEFGH"
    assert azure.requests[-1]["stream"] is True


async def test_stream_cut_by_the_upstream_is_an_in_band_error(http, es, azure):
    await put(es, "completion", "comp", azure.url, "meta")
    azure.cut_stream = True
    async with http.post("/_inference/completion/comp/_stream", json={"input": "abcdefgh"}) as resp:
        assert resp.status == 200
        events = parse_sse((await resp.read()).decode())
    assert events[-1][0] == "error" and ("message", "[DONE]") not in events
    assert json.loads(events[-1][1])["status"] == 502


async def test_realtime_stream_is_refused(http, es, azure):
    await put(es, "completion", "rt", f"{azure.url}/score", "mistral", "realtime")
    async with http.post("/_inference/completion/rt/_stream", json={"input": "x"}) as resp:
        assert resp.status == 400
        events = parse_sse((await resp.read()).decode())
    assert [e for e, _ in events] == ["error"]
    assert "Streaming is not supported for [realtime] endpoints" in json.loads(events[0][1])["error"]["reason"]


# ------------------------------------------------------------------------------ rerank


async def test_rerank_on_a_cohere_token_endpoint(es, azure):
    await put(es, "rerank", "rr", azure.url, "cohere", task_settings={"return_documents": True})
    docs = ["luke", "star wars main character", "leia", "wars"]
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="star wars main character", top_n=2)
    assert resp.body["rerank"] == [{"index": 1, "relevance_score": 1.0, "text": "star wars main character"},
                                   {"index": 3, "relevance_score": 0.25, "text": "wars"}]
    assert azure.paths[-1] == "/v1/rerank"
    assert azure.requests[-1] == {"query": "star wars main character", "documents": docs, "top_n": 2,
                                  "return_documents": True}


# ------------------------------------------------------------------------------ faults


async def test_upstream_401_keeps_its_status_and_message(es, azure):
    await put(es, "completion", "comp", azure.url, "meta", api_key="wrong-key")
    with pytest.raises(ApiError) as exc:
        await es.inference.completion(inference_id="comp", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [comp] status [401]. "
        "Error message: [Access denied due to invalid subscription key or wrong API endpoint.]")
    assert "wrong-key" not in json.dumps(exc.value.body)


async def test_429_is_retried(es, azure):
    await put(es, "text_embedding", "emb", azure.url, "cohere")
    azure.rate_limit_next("0.2")
    resp = await es.inference.text_embedding(inference_id="emb", input="x")
    assert len(resp.body["text_embedding"]) == 1
    assert len(azure.requests) == 2


# ------------------------------------------------------------------------------ /v1 with the openai SDK


async def test_openai_sdk_chat_stream_and_embeddings(gateway, es, azure):
    await put(es, "completion", "comp", azure.url, "meta")
    await put(es, "text_embedding", "emb", azure.url, "cohere")
    async with openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="x", max_retries=0) as client:
        resp = await client.chat.completions.create(model="comp", messages=[{"role": "user", "content": "hi"}],
                                                    max_tokens=12, temperature=0.2)
        assert resp.choices[0].message.content == "HI"
        assert azure.requests[-1]["max_tokens"] == 12 and azure.requests[-1]["temperature"] == 0.2
        stream = await client.chat.completions.create(model="comp", stream=True,
                                                      messages=[{"role": "user", "content": "streamed"}])
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "STREAMED"
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(model="comp", messages=[{"role": "user", "content": "x"}],
                                                 stop=["\n"])
        assert "[stop]" in exc.value.message
        emb = await client.embeddings.create(model="emb", input=["a", "b"])
        assert emb.data[1].embedding == pytest.approx(fake_vector("b"), abs=1e-6)
