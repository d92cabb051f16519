"""`jinaai` through `/_inference` (official `elasticsearch` client) and `/v1` (official `openai` SDK),
in front of a simulated Jina AI API reached through the gateway's origin override."""

from __future__ import annotations

import openai
import pytest
from elasticsearch import ApiError

from tests.conftest import make_settings
from tests.fakes.jinaai_upstream import FakeJina, fake_bits, fake_vector


@pytest.fixture
async def jina(serve_fake):
    return await serve_fake(FakeJina())


@pytest.fixture
def gateway_settings(tmp_path, jina):
    return make_settings(tmp_path, upstreams={"jinaai": jina.url})


async def put(es, task: str, inference_id: str, service_settings: dict, **extra) -> dict:
    resp = await es.inference.put_jinaai(task_type=task, jinaai_inference_id=inference_id, service="jinaai",
                                         service_settings=service_settings, **extra)
    return resp.body


def settings(jina, model="jina-embeddings-v3", **kw) -> dict:
    return {"api_key": jina.api_key, "model_id": model, **kw}


async def test_text_embedding_with_task_and_late_chunking(es, jina):
    await put(es, "text_embedding", "emb", settings(jina, dimensions=8),
              task_settings={"input_type": "ingest", "late_chunking": True})
    texts = ["The sky above the port", "was the color of television"]
    resp = await es.inference.text_embedding(inference_id="emb", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    for vec, text in zip(vectors, texts):
        assert vec == pytest.approx(fake_vector("retrieval.passage" + text, 8), abs=1e-6)
    assert jina.requests[-1] == {"input": texts, "model": "jina-embeddings-v3", "embedding_type": "float",
                                 "task": "retrieval.passage", "late_chunking": True, "dimensions": 8}
    await es.inference.text_embedding(inference_id="emb", input="x", input_type="clustering")
    assert jina.requests[-1]["task"] == "separation"


async def test_bit_embeddings_use_the_es_bits_key(es, jina):
    await put(es, "text_embedding", "bits", settings(jina, embedding_type="bit"))
    resp = await es.inference.text_embedding(inference_id="bits", input="hello")
    assert resp.body == {"text_embedding_bits": [{"embedding": fake_bits("hello")}]}
    assert jina.requests[-1]["embedding_type"] == "binary"


@pytest.mark.filterwarnings("ignore::elasticsearch.exceptions.GeneralAvailabilityWarning")
async def test_embedding_task_sends_multimodal_text_inputs(es, jina):
    await put(es, "embedding", "mm", settings(jina, "jina-clip-v2"))
    resp = await es.inference.embedding(inference_id="mm", body={"input": ["a photo of a cat"],
                                                                 "input_type": "search"})
    assert resp.body["embeddings"][0]["embedding"] == pytest.approx(
        fake_vector("retrieval.query" + "a photo of a cat"), abs=1e-6)
    assert jina.requests[-1]["input"] == [{"text": "a photo of a cat"}]
    # jina-clip-v2 only takes the query task: other input types send none
    await es.inference.embedding(inference_id="mm", body={"input": ["doc"], "input_type": "ingest"})
    assert "task" not in jina.requests[-1]


async def test_rerank(es, jina):
    await put(es, "rerank", "rr", settings(jina, "jina-reranker-v2-base-multilingual"),
              task_settings={"top_n": 3})
    docs = ["luke", "star wars main character", "leia", "wars"]
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="star wars main character",
                                     return_documents=True)
    assert [r["index"] for r in resp.body["rerank"]] == [1, 3, 0]
    assert resp.body["rerank"][0] == {"index": 1, "relevance_score": 1.0, "text": "star wars main character"}
    assert jina.requests[-1] == {"model": "jina-reranker-v2-base-multilingual", "query": "star wars main character",
                                 "documents": docs, "top_n": 3, "return_documents": True}
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="leia", top_n=1, return_documents=False)
    assert resp.body["rerank"] == [{"index": 2, "relevance_score": 1.0}]


async def test_upstream_401_keeps_its_status_and_detail(es, jina):
    await put(es, "text_embedding", "emb", {"api_key": "jina_wrong", "model_id": "jina-embeddings-v3"})
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [emb] status [401]. "
        "Error message: [Invalid API key]")


async def test_429_is_retried_and_5xx_becomes_400(es, http, jina):
    await put(es, "text_embedding", "emb", settings(jina))
    jina.rate_limit_next("0.2")
    resp = await es.inference.text_embedding(inference_id="emb", input="x")
    assert len(resp.body["text_embedding"]) == 1 and len(jina.requests) == 2
    jina.fail_next(503, "upstream overloaded", times=50)
    async with http.post("/_inference/text_embedding/emb?timeout=1s", json={"input": "x"}) as r:
        body = await r.json()
    assert r.status == 400
    assert body["error"]["reason"].startswith("Received a server error status code for request from inference "
                                              "entity id [emb] status [503]. Error message: [upstream overloaded]")


async def test_openai_sdk_embeddings(gateway, es, jina):
    await put(es, "text_embedding", "emb", settings(jina))
    async with openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="x", max_retries=0) as client:
        resp = await client.embeddings.create(model="emb", input="hello")
    assert resp.data[0].embedding == pytest.approx(fake_vector("hello"), abs=1e-6)
