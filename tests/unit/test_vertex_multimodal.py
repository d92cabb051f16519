"""The Vertex AI adapter's multimodal embeddings (`multimodalembedding@001` on the `embedding` task), on bodies
written from the API reference (cloud.google.com/vertex-ai/generative-ai/docs/model-reference/multimodal-embeddings)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters.vertex import GoogleVertexAiAdapter
from proxy.errors import RequestValidationError, StatusError
from proxy.types import EmbedPart, EmbedRequest, InputType, TaskType


@dataclass
class Endpoint:
    task_type: TaskType
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)
    inference_id: str = "ep"
    service: str = "googlevertexai"


def adapter(task=TaskType.EMBEDDING, **settings) -> GoogleVertexAiAdapter:
    return GoogleVertexAiAdapter(Endpoint(task, {"model_id": "multimodalembedding@001", "project_id": "p-1",
                                                 "location": "us-central1", **settings}))


IMAGE = EmbedPart(type="image", value="data:image/jpeg;base64,/9j/4AAQ")
TEXT = EmbedPart(type="text", value="a cat")


def test_one_instance_per_call_text_or_image():
    ad = adapter(dimensions=512)
    assert ad.embed_batch_size == 1  # the Vertex SDK's get_embeddings sends one instance
    req = EmbedRequest(inputs=["", "a cat"], contents=[[IMAGE], [TEXT]])
    up = ad.embed_request(req)
    assert up.url == ("https://us-central1-aiplatform.googleapis.com/v1/projects/p-1/locations/us-central1/"
                      "publishers/google/models/multimodalembedding@001:predict")
    assert json.loads(up.body) == {
        "instances": [{"image": {"bytesBase64Encoded": "/9j/4AAQ", "mimeType": "image/jpeg"}}, {"text": "a cat"}],
        "parameters": {"dimension": 512}}


def test_answers_are_text_or_image_embeddings():
    ad = adapter()
    one = EmbedRequest(inputs=["a cat"])
    text = ad.parse_embed(one, b'{"predictions": [{"textEmbedding": [0.5, -0.25]}], "deployedModelId": "1"}')
    image = ad.parse_embed(one, b'{"predictions": [{"imageEmbedding": [0.125]}]}')
    assert [bytes(v) for v in text.vectors] == [b"[0.5, -0.25]"] and [bytes(v) for v in image.vectors] == [b"[0.125]"]
    from proxy.errors import UpstreamError
    with pytest.raises(UpstreamError):
        ad.parse_embed(one, b'{"predictions": [{}]}')


def test_several_items_as_one_embedding_and_input_type_are_refused():
    with pytest.raises(StatusError, match="one item per input"):
        adapter().embed_request(EmbedRequest(inputs=["a cat"], contents=[[TEXT, IMAGE]]))
    with pytest.raises(RequestValidationError, match=r"\[input_type\]"):
        adapter().embed_request(EmbedRequest(inputs=["a cat"], input_type=InputType.SEARCH))


def test_text_embedding_models_keep_the_predict_body():
    ad = adapter(model_id="text-embedding-005")
    assert not ad.embeds_images(ad.endpoint.service_settings) and ad.embed_batch_size == 250
    assert json.loads(ad.embed_request(EmbedRequest(inputs=["a cat"])).body) == {"instances": [{"content": "a cat"}]}
