"""The Voyage AI adapter's pure functions on recorded request and response bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from adapters import adapter_class
from adapters.voyageai import EMBEDDINGS_URL, RERANK_URL, VoyageAIAdapter
from proxy.errors import RequestValidationError, UpstreamError, ValidationError
from proxy.types import EmbedRequest, InputType, RerankRequest, TaskType


@dataclass
class Endpoint:
    task_type: TaskType
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=lambda: {"api_key": "pa-key"})
    inference_id: str = "ep"
    service: str = "voyageai"


def adapter(task=TaskType.TEXT_EMBEDDING, task_settings=None, **settings) -> VoyageAIAdapter:
    return VoyageAIAdapter(Endpoint(task, {"model_id": "voyage-3.5", **settings}, task_settings or {}))


def body(up) -> dict:
    return json.loads(up.body)


# recorded from docs.voyageai.com (embeddings) and ES VoyageAIRerankResponseEntity's javadoc (rerank)
EMBED_RESPONSE = (b'{"object":"list","data":[{"object":"embedding","embedding":[-0.009327292,-0.0028842222],'
                  b'"index":1},{"object":"embedding","embedding":[0.01,0.02],"index":0}],"model":"voyage-3.5",'
                  b'"usage":{"total_tokens":10}}')
RERANK_RESPONSE = (b'{"object":"list","data":[{"relevance_score":0.4375,"index":0,"document":"Carson City"},'
                   b'{"relevance_score":0.421875,"index":1}],"model":"rerank-2","usage":{"total_tokens":26}}')


def test_registered_under_its_service_name():
    assert adapter_class("voyageai") is VoyageAIAdapter


def test_embeddings_request_defaults():
    up = adapter().embed_request(EmbedRequest(inputs=["a", "b"]))
    assert up.url == EMBEDDINGS_URL and not up.explicit_url
    assert up.headers["Authorization"] == "Bearer pa-key"
    assert body(up) == {"input": ["a", "b"], "model": "voyage-3.5", "output_dtype": "float"}


def test_input_type_truncation_and_dimensions():
    ad = adapter(dimensions=256, task_settings={"input_type": "ingest", "truncation": False})
    sent = body(ad.embed_request(EmbedRequest(inputs=["a"])))
    assert sent == {"input": ["a"], "model": "voyage-3.5", "input_type": "document", "truncation": False,
                    "output_dimension": 256, "output_dtype": "float"}
    # the request's input_type and task settings win over the stored ones
    sent = body(ad.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.SEARCH,
                                              task_settings={"truncation": True})))
    assert sent["input_type"] == "query" and sent["truncation"] is True
    # a canonical `dimensions` (the /v1 surface) wins over the setting
    assert body(ad.embed_request(EmbedRequest(inputs=["a"], dimensions=64)))["output_dimension"] == 64


@pytest.mark.parametrize("kind", [InputType.CLASSIFICATION, InputType.CLUSTERING])
def test_other_input_types_are_rejected_with_the_es_message(kind):
    with pytest.raises(ValidationError) as exc:
        adapter().embed_request(EmbedRequest(inputs=["a"], input_type=kind))
    assert exc.value.reason == f"Validation Failed: 1: Input type [{kind.value}] is not supported for [Voyage AI];"


def test_user_is_rejected():
    with pytest.raises(RequestValidationError, match=r"\[user\]"):
        adapter().embed_request(EmbedRequest(inputs=["a"], user="u1"))


@pytest.mark.parametrize("setting, dtype, element, key", [
    ("float", "float", "float", "text_embedding"),
    ("int8", "int8", "byte", "text_embedding_bytes"),
    ("bit", "binary", "bit", "text_embedding_bits"),
])
def test_embedding_type_maps_to_output_dtype_and_element_type(setting, dtype, element, key):
    from proxy.wire.es import render_embeddings
    ad = adapter(embedding_type=setting)
    assert body(ad.embed_request(EmbedRequest(inputs=["a"])))["output_dtype"] == dtype
    raw = b'{"data":[{"embedding":[12,-3],"index":0}],"usage":{"total_tokens":1}}'
    result = ad.parse_embed(EmbedRequest(inputs=["a"]), raw)
    assert result.element_type == element
    assert json.loads(render_embeddings(result, TaskType.TEXT_EMBEDDING)) == {key: [{"embedding": [12, -3]}]}


def test_embeddings_response_is_reordered_by_index_and_usage_counted_once():
    result = adapter().parse_embed(EmbedRequest(inputs=["x", "y"]), EMBED_RESPONSE)
    assert [json.loads(bytes(v)) for v in result.vectors] == [[0.01, 0.02], [-0.009327292, -0.0028842222]]
    assert result.usage.total_tokens == 10 and result.usage.prompt_tokens == 10


def test_embed_batches_split_at_128():
    parts = adapter().split_embed(EmbedRequest(inputs=[str(i) for i in range(300)]))
    assert [len(p.inputs) for p in parts] == [128, 128, 44]


def test_rerank_request_uses_top_k():
    ad = adapter(TaskType.RERANK, task_settings={"top_k": 3, "truncation": True})
    up = ad.rerank_request(RerankRequest(query="q", documents=["a", "b"], return_documents=False))
    assert up.url == RERANK_URL
    assert body(up) == {"model": "voyage-3.5", "query": "q", "documents": ["a", "b"], "return_documents": False,
                        "top_k": 3, "truncation": True}
    # the root top_n wins over the stored top_k
    sent = body(ad.rerank_request(RerankRequest(query="q", documents=["a"], top_n=1)))
    assert sent["top_k"] == 1 and "top_n" not in sent and "return_documents" not in sent


def test_rerank_response_with_string_documents():
    result = adapter(TaskType.RERANK).parse_rerank(RerankRequest(query="q", documents=["a", "b"]), RERANK_RESPONSE)
    assert [(d.index, d.relevance_score, d.text) for d in result.ranked] == [(0, 0.4375, "Carson City"),
                                                                             (1, 0.421875, None)]
    assert result.usage.total_tokens == 26


def test_errors_read_detail_and_malformed_bodies_are_502():
    assert adapter().parse_error(401, {}, b'{"detail":"Provided API key is invalid."}').message == \
        "Provided API key is invalid."
    with pytest.raises(UpstreamError) as exc:
        adapter().parse_embed(EmbedRequest(inputs=["a"]), b'{"data": [')
    assert exc.value.status == 502


def test_request_repr_hides_the_key():
    up = adapter().embed_request(EmbedRequest(inputs=["a"]))
    assert "pa-key" not in repr(up) and msgspec.json.decode(up.body)["model"] == "voyage-3.5"


def test_embedding_task_goes_to_the_multimodal_endpoint_unless_the_model_is_text_only():
    """ES VoyageAIEmbeddingsRequestEntity.writeInputs: `inputs` of `content` lists on a multimodal model (the
    `embedding` task's default), the plain `input` list otherwise; text_embedding keeps `input`."""
    from adapters.voyageai import MULTIMODAL_URL
    from proxy.types import EmbedPart

    image = "data:image/png;base64,AAAA"
    req = EmbedRequest(inputs=["cat", "cap"], contents=[[EmbedPart(type="text", value="cat")],
                                                        [EmbedPart(type="text", value="cap"),
                                                         EmbedPart(type="image", value=image)]])
    up = adapter(TaskType.EMBEDDING, model_id="voyage-multimodal-3").embed_request(req)
    assert up.url == MULTIMODAL_URL
    assert body(up)["inputs"] == [{"content": [{"type": "text", "text": "cat"}]},
                                  {"content": [{"type": "text", "text": "cap"},
                                               {"type": "image_base64", "image_base64": image}]}]
    assert "input" not in body(up)
    text_only = adapter(TaskType.EMBEDDING, multimodal_model=False).embed_request(EmbedRequest(inputs=["cat"]))
    assert text_only.url == EMBEDDINGS_URL and body(text_only)["input"] == ["cat"]
    plain = adapter(TaskType.TEXT_EMBEDDING).embed_request(EmbedRequest(inputs=["cat"]))
    assert plain.url == EMBEDDINGS_URL and body(plain)["input"] == ["cat"]
