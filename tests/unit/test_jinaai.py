"""The Jina AI adapter's pure functions on recorded request and response bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters import adapter_class
from adapters.jinaai import EMBEDDINGS_URL, RERANK_URL, JinaAIAdapter
from proxy.errors import RequestValidationError, UpstreamError
from proxy.types import EmbedRequest, InputType, RerankRequest, TaskType
from proxy.wire.es import render_embeddings


@dataclass
class Endpoint:
    task_type: TaskType
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=lambda: {"api_key": "jina-key"})
    inference_id: str = "ep"
    service: str = "jinaai"


def adapter(task=TaskType.TEXT_EMBEDDING, task_settings=None, model="jina-embeddings-v3", **settings):
    return JinaAIAdapter(Endpoint(task, {"model_id": model, **settings}, task_settings or {}))


def body(up) -> dict:
    return json.loads(up.body)


# recorded from ES JinaAIEmbeddingsResponseEntity / JinaAIRerankResponseEntity javadoc
EMBED_RESPONSE = (b'{"object":"list","data":[{"object":"embedding","embedding":[-0.009327292,-0.0028842222],'
                  b'"index":0},{"object":"embedding","embedding":[0.5,0.25],"index":1}],'
                  b'"model":"jina-embeddings-v3","usage":{"prompt_tokens":8,"total_tokens":8}}')
RERANK_RESPONSE = (b'{"id":"1983d114","results":[{"document":{"text":"Washington, D.C."},"index":2,'
                   b'"relevance_score":0.98005307},{"index":0,"relevance_score":0.10194652}],'
                   b'"usage":{"total_tokens":15}}')


def test_registered_under_its_service_name():
    assert adapter_class("jinaai") is JinaAIAdapter


def test_text_embedding_request_defaults():
    up = adapter().embed_request(EmbedRequest(inputs=["a", "b"]))
    assert up.url == EMBEDDINGS_URL and up.headers["Authorization"] == "Bearer jina-key"
    assert body(up) == {"input": ["a", "b"], "model": "jina-embeddings-v3", "embedding_type": "float"}


@pytest.mark.parametrize("kind, task", [(InputType.INGEST, "retrieval.passage"), (InputType.SEARCH, "retrieval.query"),
                                        (InputType.CLASSIFICATION, "classification"),
                                        (InputType.CLUSTERING, "separation")])
def test_input_type_becomes_task(kind, task):
    assert body(adapter().embed_request(EmbedRequest(inputs=["a"], input_type=kind)))["task"] == task


def test_request_input_type_wins_over_the_stored_one():
    ad = adapter(task_settings={"input_type": "ingest"})
    assert body(ad.embed_request(EmbedRequest(inputs=["a"])))["task"] == "retrieval.passage"
    assert body(ad.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.SEARCH)))["task"] == \
        "retrieval.query"


def test_jina_clip_v2_only_gets_the_query_task():
    ad = adapter(model="jina-clip-v2")
    assert "task" not in body(ad.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.INGEST)))
    assert body(ad.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.SEARCH)))["task"] == \
        "retrieval.query"


def test_late_chunking_and_dimensions():
    ad = adapter(dimensions=128, task_settings={"late_chunking": True})
    sent = body(ad.embed_request(EmbedRequest(inputs=["one two", "three"])))
    assert sent["late_chunking"] is True and sent["dimensions"] == 128
    # forced off past 5500 words, as ES does
    sent = body(ad.embed_request(EmbedRequest(inputs=["word " * 5501])))
    assert sent["late_chunking"] is False
    sent = body(ad.embed_request(EmbedRequest(inputs=["x"], task_settings={"late_chunking": False})))
    assert sent["late_chunking"] is False


def test_embedding_task_sends_multimodal_text_objects():
    ad = adapter(TaskType.EMBEDDING, model="jina-clip-v2")
    assert body(ad.embed_request(EmbedRequest(inputs=["a", "b"])))["input"] == [{"text": "a"}, {"text": "b"}]
    ad = adapter(TaskType.EMBEDDING, multimodal_model=False)
    assert body(ad.embed_request(EmbedRequest(inputs=["a"])))["input"] == ["a"]


@pytest.mark.parametrize("setting", ["bit", "binary"])
def test_bit_embeddings(setting):
    ad = adapter(embedding_type=setting)
    assert body(ad.embed_request(EmbedRequest(inputs=["a"])))["embedding_type"] == "binary"
    result = ad.parse_embed(EmbedRequest(inputs=["a"]), b'{"data":[{"embedding":[-12,7],"index":0}]}')
    assert result.element_type == "bit"
    assert json.loads(render_embeddings(result, TaskType.TEXT_EMBEDDING)) == {"text_embedding_bits":
                                                                              [{"embedding": [-12, 7]}]}
    assert json.loads(render_embeddings(result, TaskType.EMBEDDING)) == {"embeddings_bits": [{"embedding": [-12, 7]}]}


def test_embeddings_response():
    result = adapter().parse_embed(EmbedRequest(inputs=["x", "y"]), EMBED_RESPONSE)
    assert [json.loads(bytes(v)) for v in result.vectors] == [[-0.009327292, -0.0028842222], [0.5, 0.25]]
    assert result.element_type == "float" and result.usage.total_tokens == 8


def test_user_is_rejected_and_batches_are_2048():
    with pytest.raises(RequestValidationError, match=r"\[user\]"):
        adapter().embed_request(EmbedRequest(inputs=["a"], user="u"))
    assert [len(p.inputs) for p in adapter().split_embed(EmbedRequest(inputs=["x"] * 2049))] == [2048, 1]


def test_rerank_request_and_response():
    ad = adapter(TaskType.RERANK, model="jina-reranker-v2-base-multilingual", task_settings={"top_n": 2})
    up = ad.rerank_request(RerankRequest(query="q", documents=["a", "b", "c"], return_documents=True))
    assert up.url == RERANK_URL
    assert body(up) == {"model": "jina-reranker-v2-base-multilingual", "query": "q", "documents": ["a", "b", "c"],
                        "top_n": 2, "return_documents": True}
    assert body(ad.rerank_request(RerankRequest(query="q", documents=["a"], top_n=1)))["top_n"] == 1
    result = ad.parse_rerank(RerankRequest(query="q", documents=["a", "b", "c"]), RERANK_RESPONSE)
    assert [(d.index, d.text) for d in result.ranked] == [(2, "Washington, D.C."), (0, None)]


def test_errors_read_detail_and_malformed_bodies_are_502():
    assert adapter().parse_error(401, {}, b'{"detail":"Invalid API key"}').message == "Invalid API key"
    with pytest.raises(UpstreamError) as exc:
        adapter().parse_embed(EmbedRequest(inputs=["a"]), b'not json')
    assert exc.value.status == 502
