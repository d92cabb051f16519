"""`voyageai` through `/_inference` (official `elasticsearch` client) and `/v1` (official `openai` SDK),
in front of a simulated Voyage AI API reached through the gateway's origin override."""

from __future__ import annotations

import openai
import pytest
from elasticsearch import ApiError, BadRequestError

from tests.conftest import make_settings
from tests.fakes.voyageai_upstream import FakeVoyage, fake_bits, fake_int8, fake_vector


@pytest.fixture
async def voyage(serve_fake):
    return await serve_fake(FakeVoyage())


@pytest.fixture
def gateway_settings(tmp_path, voyage):
    return make_settings(tmp_path, upstreams={"voyageai": voyage.url})


async def put(es, task: str, inference_id: str, service_settings: dict, **extra) -> dict:
    resp = await es.inference.put_voyageai(task_type=task, voyageai_inference_id=inference_id, service="voyageai",
                                           service_settings=service_settings, **extra)
    assert resp.body["service"] == "voyageai"
    return resp.body


def settings(voyage, model="voyage-3.5", **kw) -> dict:
    return {"api_key": voyage.api_key, "model_id": model, **kw}


async def test_text_embedding_float(es, http, voyage):
    await put(es, "text_embedding", "emb", settings(voyage, dimensions=8), task_settings={"input_type": "ingest"})
    texts = ["The sky above the port", "was the color of television"]
    resp = await es.inference.text_embedding(inference_id="emb", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    for vec, text in zip(vectors, texts):  # the fake answers in reverse order
        assert vec == pytest.approx(fake_vector("d:" + text, 8), abs=1e-6)
    assert voyage.requests[-1] == {"input": texts, "model": "voyage-3.5", "input_type": "document",
                                   "output_dimension": 8, "output_dtype": "float"}
    resp = await es.inference.text_embedding(inference_id="emb", input="q", input_type="search")
    assert resp.body["text_embedding"][0]["embedding"] == pytest.approx(fake_vector("q:q", 8), abs=1e-6)
    assert voyage.headers_seen[-1]["authorization"] == f"Bearer {voyage.api_key}"


async def test_int8_and_bit_embeddings_use_the_es_result_keys(es, http, voyage):
    await put(es, "text_embedding", "bytes", settings(voyage, "voyage-3-large", embedding_type="int8"))
    resp = await es.inference.text_embedding(inference_id="bytes", input="hello")
    assert resp.body == {"text_embedding_bytes": [{"embedding": fake_int8("hello")}]}
    assert voyage.requests[-1]["output_dtype"] == "int8"
    await put(es, "text_embedding", "bits", settings(voyage, "voyage-3-large", embedding_type="bit"))
    resp = await es.inference.text_embedding(inference_id="bits", input="hello")
    assert resp.body == {"text_embedding_bits": [{"embedding": fake_bits("hello")}]}
    assert voyage.requests[-1]["output_dtype"] == "binary"


async def test_large_inputs_are_split_into_batches_of_128(es, http, voyage):
    await put(es, "text_embedding", "emb", settings(voyage, rate_limit={"requests_per_minute": 60000}))
    texts = [f"sentence {i}" for i in range(300)]
    resp = await es.inference.text_embedding(inference_id="emb", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    assert len(vectors) == 300 and vectors[299] == pytest.approx(fake_vector(texts[299]), abs=1e-6)
    assert sorted(len(r["input"]) for r in voyage.requests) == [44, 128, 128]


async def test_unsupported_input_type_is_a_validation_error(es, http, voyage):
    await put(es, "text_embedding", "emb", settings(voyage))
    with pytest.raises(BadRequestError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x", input_type="classification")
    assert exc.value.body["error"]["reason"] == ("Validation Failed: 1: Input type [classification] is not "
                                                 "supported for [Voyage AI];")
    assert voyage.requests == []


async def test_rerank_sends_top_k_and_returns_documents(es, http, voyage):
    await put(es, "rerank", "rr", settings(voyage, "rerank-2"), task_settings={"truncation": True})
    docs = ["luke", "star wars main character", "leia", "wars"]
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="star wars main character",
                                     top_n=2, return_documents=True)
    assert resp.body["rerank"] == [{"index": 1, "relevance_score": 1.0, "text": "star wars main character"},
                                   {"index": 3, "relevance_score": 0.25, "text": "wars"}]
    assert voyage.requests[-1] == {"model": "rerank-2", "query": "star wars main character", "documents": docs,
                                   "return_documents": True, "top_k": 2, "truncation": True}
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="leia")
    assert len(resp.body["rerank"]) == 4 and all("text" not in r for r in resp.body["rerank"])


async def test_stored_top_k_applies(es, http, voyage):
    await put(es, "rerank", "rr", settings(voyage, "rerank-2"), task_settings={"top_k": 1})
    resp = await es.inference.rerank(inference_id="rr", input=["a b", "b"], query="b")
    assert len(resp.body["rerank"]) == 1 and voyage.requests[-1]["top_k"] == 1


async def test_upstream_401_keeps_its_status_and_detail(es, http, voyage):
    await put(es, "text_embedding", "emb", {"api_key": "pa-wrong", "model_id": "voyage-3.5"})
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [emb] status [401]. "
        "Error message: [Provided API key is invalid.]")
    assert "pa-wrong" not in str(exc.value.body)


async def test_429_is_retried(es, http, voyage):
    await put(es, "rerank", "rr", settings(voyage, "rerank-2"))
    voyage.rate_limit_next("0.2")
    resp = await es.inference.rerank(inference_id="rr", input=["a", "b"], query="a")
    assert resp.body["rerank"][0]["index"] == 0
    assert len(voyage.requests) == 2


async def test_persistent_400_is_passed_through(es, http, voyage):
    await put(es, "text_embedding", "emb", settings(voyage))
    voyage.fail_next(400, "Request to model 'voyage-3.5' failed. The max allowed tokens per submitted batch is 320000.")
    async with http.post("/_inference/text_embedding/emb", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 400 and "max allowed tokens" in body["error"]["reason"]
    assert len(voyage.requests) == 1


async def test_openai_sdk_embeddings(gateway, es, voyage):
    await put(es, "text_embedding", "emb", settings(voyage))
    async with openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="x", max_retries=0) as client:
        resp = await client.embeddings.create(model="emb", input=["hello", "world"], dimensions=4)
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.data[1].embedding == pytest.approx(fake_vector("world", 4), abs=1e-6)
    assert voyage.requests[-1]["output_dimension"] == 4
    assert resp.usage.total_tokens == 2
