"""The ES `custom` service through `/_inference` (elasticsearch client) and `/v1` (openai SDK), in front of a
simulated third-party JSON API described entirely by the endpoint's templates and JSON paths."""

from __future__ import annotations

import json

import openai
import pytest
from elasticsearch import ApiError

from tests.conftest import make_settings
from tests.fakes.custom_upstream import FakeCustom, fake_bytes, fake_vector


@pytest.fixture
async def upstream(serve_fake):
    return await serve_fake(FakeCustom())


@pytest.fixture
def gateway_settings(tmp_path, upstream):
    # the URL is the endpoint's own setting (explicit); the override names the service all the same
    return make_settings(tmp_path, upstreams={"custom": upstream.url})


def settings(upstream, path: str, request: str | dict, json_parser: dict, api_key: str | None = None,
             **extra) -> dict:
    return {"url": f"{upstream.url}{path}",
            "headers": {"Authorization": "Bearer ${api_key}", "Content-Type": "application/json; charset=utf-8"},
            "query_parameters": [["key", "${api_key}"], ["v", "2024 01"]],
            "request": request, "response": {"json_parser": json_parser},
            "secret_parameters": {"api_key": api_key or upstream.api_key}, **extra}


async def put(http, upstream, task: str, inference_id: str, service_settings: dict, task_settings: dict | None = None):
    body: dict = {"service": "custom", "service_settings": service_settings}
    if task_settings:
        body["task_settings"] = task_settings
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert upstream.api_key not in text
        return json.loads(text)


EMBED_TEMPLATE = '{"model": ${model}, "texts": ${input}, "kind": ${input_type}, "dims": ${dims}}'


async def test_text_embedding_templates_headers_query_and_batches(es, http, upstream):
    await put(http, upstream, "text_embedding", "cu-emb", settings(
        upstream, "/v1/embed", EMBED_TEMPLATE, {"text_embeddings": "$.data[*].embedding"},
        input_type={"translation": {"ingest": "document", "search": "query"}, "default": "unspecified"},
        batch_size=2), task_settings={"parameters": {"model": "acme-embed-v1", "dims": 3}})
    texts = ["one", "two", "three"]
    resp = await es.inference.text_embedding(inference_id="cu-emb", input=texts, input_type="ingest")
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    assert [len(v) for v in vectors] == [3, 3, 3]
    for vec, text in zip(vectors, texts):
        assert vec == pytest.approx(fake_vector(text, 3), abs=1e-6)
    # two upstream batches of at most batch_size inputs, bodies exactly as the template says
    assert sorted(upstream.raw) == sorted([
        b'{"model": "acme-embed-v1", "texts": ["one","two"], "kind": "document", "dims": 3}',
        b'{"model": "acme-embed-v1", "texts": ["three"], "kind": "document", "dims": 3}'])
    assert upstream.headers[-1]["authorization"] == f"Bearer {upstream.api_key}"
    assert upstream.headers[-1]["content-type"] == "application/json; charset=utf-8"
    assert upstream.queries[-1] == {"key": upstream.api_key, "v": "2024 01"}
    # input_type default, and request-level parameters win over the stored ones
    await es.inference.text_embedding(inference_id="cu-emb", input="x", task_settings={"parameters": {"dims": 2}})
    assert json.loads(upstream.raw[-1]) == {"model": "acme-embed-v1", "texts": ["x"], "kind": "unspecified",
                                            "dims": 2}


async def test_byte_embeddings(es, http, upstream):
    template = '{"texts": ${input}, "format": "int8"}'
    await put(http, upstream, "text_embedding", "cu-bytes", settings(
        upstream, "/v1/embed", template, {"text_embeddings": "$.data[*].embedding", "embedding_type": "byte"}))
    resp = await es.inference.text_embedding(inference_id="cu-bytes", input=["a", "b"])
    assert [i["embedding"] for i in resp.body["text_embedding_bytes"]] == [fake_bytes("a"), fake_bytes("b")]


async def test_sparse_embedding(es, http, upstream):
    await put(http, upstream, "sparse_embedding", "cu-sparse", settings(
        upstream, "/v1/sparse", {"content": '{"input": ${input}}'},  # the older {"content": ...} request form
        {"token_path": "$.result.sparse_embeddings[*].embedding[*].token_id",
         "weight_path": "$.result.sparse_embeddings[*].embedding[*].weight"}))
    resp = await es.inference.sparse_embedding(inference_id="cu-sparse", input=["hi there", "a"])
    assert resp.body == {"sparse_embedding": [
        {"is_truncated": False, "embedding": {"2": 0.2, "5": 0.5}},
        {"is_truncated": False, "embedding": {"1": 0.1}}]}


RERANK_PARSER = {"relevance_score": "$.results[*].relevance_score", "reranked_index": "$.results[*].index",
                 "document_text": "$.results[*].document.text"}


async def test_rerank_with_query_and_top_n(es, http, upstream):
    template = '{"query": ${query}, "documents": ${input}, "top_n": ${top_n}}'
    await put(http, upstream, "rerank", "cu-rr", settings(upstream, "/v1/rerank", template, RERANK_PARSER))
    docs = ["luke", "star wars main character", "leia \"the\" princess", "wars"]
    resp = await es.inference.rerank(inference_id="cu-rr", input=docs, query='star wars "saga"', top_n=2,
                                     return_documents=True)
    ranked = resp.body["rerank"]
    assert [(r["index"], r["text"]) for r in ranked] == [(1, "star wars main character"), (3, "wars")]
    assert [r["relevance_score"] for r in ranked] == pytest.approx([2 / 3, 1 / 3], abs=1e-6)
    # the query is JSON-encoded (quotes escaped), top_n a JSON number
    assert json.loads(upstream.raw[-1]) == {"query": 'star wars "saga"', "documents": docs, "top_n": 2}


async def test_missing_placeholder_value_is_es_template_error(http, upstream):
    template = '{"query": ${query}, "documents": ${input}, "top_n": ${top_n}}'
    await put(http, upstream, "rerank", "cu-rr", settings(upstream, "/v1/rerank", template, RERANK_PARSER))
    async with http.post("/_inference/rerank/cu-rr", json={"input": ["a"], "query": "a"}) as resp:
        body = await resp.json()
    assert resp.status == 400
    assert body["error"]["type"] == "status_exception"
    assert body["error"]["reason"] == "Failed to construct the custom service request"
    caused_by = body["error"]["caused_by"]
    assert caused_by["type"] == "illegal_argument_exception"
    assert caused_by["reason"] == ("Found placeholder [${top_n}] in field [request] after replacement call, "
                                   "please check that all templates have a corresponding field definition.")
    assert upstream.raw == []


async def test_completion_takes_the_first_result(es, http, upstream):
    template = '{"prompt": ${input}, "temperature": ${temperature}}'
    await put(http, upstream, "completion", "cu-comp", settings(
        upstream, "/v1/complete", template, {"completion_result": "$.choices[*].message.content"}),
        task_settings={"parameters": {"temperature": 0.3}})
    resp = await es.inference.completion(inference_id="cu-comp", input="hello custom")
    assert resp.body == {"completion": [{"result": "HELLO CUSTOM"}]}
    assert upstream.raw[-1] == b'{"prompt": "hello custom", "temperature": 0.3}'


async def test_streaming_is_not_allowed(http, upstream):
    await put(http, upstream, "completion", "cu-comp", settings(
        upstream, "/v1/complete", '{"prompt": ${input}}', {"completion_result": "$.choices[*].message.content"}))
    async with http.post("/_inference/completion/cu-comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 405
        assert "Streaming is not allowed for service [custom]" in await resp.text()


async def test_wrong_secret_is_401_and_never_echoed(es, http, upstream):
    await put(http, upstream, "text_embedding", "cu-emb", settings(
        upstream, "/v1/embed", '{"texts": ${input}}', {"text_embeddings": "$.data[*].embedding"},
        api_key="wrong-secret-value"))
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="cu-emb", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [cu-emb] status [401]. "
        "Error message: [invalid api key]")
    assert "wrong-secret-value" not in json.dumps(exc.value.body)


async def test_429_is_retried(es, http, upstream):
    await put(http, upstream, "text_embedding", "cu-emb", settings(
        upstream, "/v1/embed", '{"texts": ${input}}', {"text_embeddings": "$.data[*].embedding"}))
    upstream.fail_next(429, "slow down", headers={"Retry-After": "0.1"})
    resp = await es.inference.text_embedding(inference_id="cu-emb", input="x")
    assert len(resp.body["text_embedding"]) == 1 and len(upstream.raw) == 2


async def test_response_path_errors_use_es_messages(http, upstream):
    await put(http, upstream, "text_embedding", "cu-emb", settings(
        upstream, "/v1/embed", '{"texts": ${input}}', {"text_embeddings": "$.vectors[*].embedding"}))
    async with http.post("/_inference/text_embedding/cu-emb", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 502
    assert body["error"]["reason"] == "Unable to find field [vectors] in map"


async def test_openai_sdk_embeddings(gateway, http, upstream):
    await put(http, upstream, "text_embedding", "cu-emb", settings(
        upstream, "/v1/embed", '{"texts": ${input}}', {"text_embeddings": "$.data[*].embedding"}))
    async with openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="x", max_retries=0) as client:
        emb = await client.embeddings.create(model="cu-emb", input=["p", "q"])
        assert emb.data[1].embedding == pytest.approx(fake_vector("q"), abs=1e-6)
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model="cu-emb", input="p", dimensions=8)
