"""`alibabacloud-ai-search` through `/_inference` (elasticsearch client) and `/v1` (openai SDK), in front of
a simulated Alibaba Cloud AI Search workspace API. The endpoint's own `host` points at the fake."""

from __future__ import annotations

import json

import openai
import pytest
from elasticsearch import ApiError, BadRequestError

from tests.conftest import make_settings
from tests.fakes.alibabacloud_upstream import FakeAlibaba, fake_vector

SERVICE = "alibabacloud-ai-search"


@pytest.fixture
async def upstream(serve_fake):
    return await serve_fake(FakeAlibaba())


@pytest.fixture
def gateway_settings(tmp_path, upstream):
    # `host` is the endpoint's own setting (explicit URL); the override is there for any default URL
    return make_settings(tmp_path, upstreams={SERVICE: upstream.url})


async def put(http, upstream, task: str, inference_id: str, service_id: str, api_key: str | None = None,
              task_settings: dict | None = None):
    body: dict = {"service": SERVICE, "service_settings": {
        "api_key": api_key or upstream.api_key, "service_id": service_id, "host": upstream.host,
        "workspace": upstream.workspace, "http_schema": "http"}}
    if task_settings:
        body["task_settings"] = task_settings
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert upstream.api_key not in text
        return json.loads(text)


async def test_text_embedding_with_input_type_precedence(es, http, upstream):
    await put(http, upstream, "text_embedding", "ali-emb", "ops-text-embedding-001",
              task_settings={"input_type": "ingest"})
    texts = ["hello this is my name", "I wish I was there!"]
    resp = await es.inference.text_embedding(inference_id="ali-emb", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    for vec, text in zip(vectors, texts):  # the fake answers in reverse order
        assert vec == pytest.approx(fake_vector(text), abs=1e-6)
    assert upstream.requests[-1] == {"input": texts, "input_type": "document"}
    assert upstream.paths[-1] == "/v3/openapi/workspaces/default/text-embedding/ops-text-embedding-001"
    await es.inference.text_embedding(inference_id="ali-emb", input="q", input_type="search")
    assert upstream.requests[-1]["input_type"] == "query"
    with pytest.raises(BadRequestError):
        await es.inference.text_embedding(inference_id="ali-emb", input="q", input_type="clustering")


async def test_embeddings_are_sent_32_at_a_time(es, http, upstream):
    await put(http, upstream, "text_embedding", "ali-emb", "ops-text-embedding-001")
    texts = [f"t{i}" for i in range(70)]
    resp = await es.inference.text_embedding(inference_id="ali-emb", input=texts)
    assert [i["embedding"] for i in resp.body["text_embedding"]][69] == pytest.approx(fake_vector("t69"), abs=1e-6)
    assert sorted(len(r["input"]) for r in upstream.requests) == [6, 32, 32]


async def test_sparse_embedding_tokens_and_ids(es, http, upstream):
    await put(http, upstream, "sparse_embedding", "ali-sparse", "ops-text-sparse-embedding-001",
              task_settings={"return_token": True})
    resp = await es.inference.sparse_embedding(inference_id="ali-sparse", input="open search")
    assert resp.body == {"sparse_embedding": [{"is_truncated": False, "embedding": {"open": 0.4, "search": 0.6}}]}
    assert upstream.requests[-1] == {"input": ["open search"], "return_token": True}
    resp = await es.inference.sparse_embedding(inference_id="ali-sparse", input="open",
                                               task_settings={"return_token": False})
    (token_id,) = resp.body["sparse_embedding"][0]["embedding"]
    assert token_id.isdigit()  # no `token` in the answer: the id, as text; the zero-weight entry is dropped


async def test_rerank_top_n_is_applied_by_the_gateway(es, http, upstream):
    await put(http, upstream, "rerank", "ali-rr", "ops-bge-reranker-larger")
    docs = ["luke", "star wars main character", "leia", "wars"]
    resp = await es.inference.rerank(inference_id="ali-rr", input=docs, query="star wars", top_n=2,
                                     return_documents=True)
    assert resp.body["rerank"] == [{"index": 1, "relevance_score": 1.7, "text": "star wars main character"},
                                   {"index": 3, "relevance_score": 0.7, "text": "wars"}]
    assert upstream.requests[-1] == {"query": "star wars", "docs": docs}


async def test_completion_alternates_roles_like_es(es, http, upstream):
    await put(http, upstream, "completion", "ali-comp", "ops-qwen-turbo")
    resp = await es.inference.completion(inference_id="ali-comp", input=["hi", "hello!", "how are you?"])
    assert resp.body == {"completion": [{"result": "user:hi | assistant:hello! | user:how are you?"}]}
    assert upstream.paths[-1] == "/v3/openapi/workspaces/default/text-generation/ops-qwen-turbo"


async def test_streaming_is_not_allowed(http, upstream):
    await put(http, upstream, "completion", "ali-comp", "ops-qwen-turbo")
    async with http.post("/_inference/completion/ali-comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 405
        text = await resp.text()
    assert f"Streaming is not allowed for service [{SERVICE}]" in text
    assert upstream.requests == []


async def test_wrong_key_is_401_with_the_es_message(es, http, upstream):
    await put(http, upstream, "text_embedding", "ali-emb", "ops-text-embedding-001", api_key="wrong-key")
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="ali-emb", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [ali-emb] status [401]. "
        "Error message: [Invalid API key provided.]")
    assert "wrong-key" not in json.dumps(exc.value.body)


async def test_throttling_429_is_retried(es, http, upstream):
    await put(http, upstream, "rerank", "ali-rr", "ops-bge-reranker-larger")
    upstream.fail_next(429, "Throttling.User", "Request was denied due to user flow control.")
    resp = await es.inference.rerank(inference_id="ali-rr", input=["a"], query="a")
    assert len(resp.body["rerank"]) == 1 and len(upstream.requests) == 2


async def test_openai_sdk_embeddings_and_completion(gateway, http, upstream):
    await put(http, upstream, "text_embedding", "ali-emb", "ops-text-embedding-001")
    await put(http, upstream, "completion", "ali-comp", "ops-qwen-turbo")
    async with openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="x", max_retries=0) as client:
        emb = await client.embeddings.create(model="ali-emb", input="abc", encoding_format="float")
        assert emb.data[0].embedding == pytest.approx(fake_vector("abc"), abs=1e-6)
        chat = await client.chat.completions.create(model="ali-comp", messages=[
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
        assert chat.choices[0].message.content == "system:be brief | user:hi"
        assert chat.usage.total_tokens == 41
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="ali-comp", temperature=0.5,
                                                 messages=[{"role": "user", "content": "hi"}])
