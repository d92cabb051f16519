"""The `embedding` task (ES 9.4, `POST /_inference/embedding/{id}`) through the official client's
`embedding` method: strings or content objects (ES `InferenceStringGroup`, `InferenceString`; SPEC
`inference/embedding/examples/request/EmbeddingRequestExample{1,2,3}.yaml`), text on every
text_embedding-capable service, images where the model takes them (Jina multimodal), a clear refusal
elsewhere."""

from __future__ import annotations

import pytest
from elasticsearch import BadRequestError

from tests.conftest import make_settings
from tests.fakes.cohere_upstream import FakeCohere
from tests.fakes.jinaai_upstream import FakeJina
from tests.fakes.jinaai_upstream import fake_vector as jina_vector
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.openai_upstream import fake_vector as openai_vector
from tests.fakes.voyageai_upstream import FakeVoyage

IMAGE = "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQ=="
EXAMPLE_1 = {"input": [{"content": {"type": "image", "format": "base64", "value": IMAGE}},
                       {"content": {"type": "text", "value": "Some text to create an embedding"}}]}
EXAMPLE_2 = {"input": ["The first text", "The second text"]}
EXAMPLE_3 = {"input": [{"content": [{"type": "image", "format": "base64", "value": IMAGE},
                                    {"type": "text", "value": "Some text to create an embedding"}]}]}


@pytest.fixture
async def openai_up(serve_fake):
    return await serve_fake(FakeOpenAI())


@pytest.fixture
async def jina(serve_fake):
    return await serve_fake(FakeJina())


@pytest.fixture
async def cohere_up(serve_fake):
    return await serve_fake(FakeCohere())


@pytest.fixture
async def voyage_up(serve_fake):
    return await serve_fake(FakeVoyage())


@pytest.fixture
def gateway_settings(tmp_path, openai_up, jina, cohere_up, voyage_up):
    return make_settings(tmp_path, upstreams={"jinaai": jina.url, "cohere": cohere_up.url,
                                              "voyageai": voyage_up.url})


async def _openai_endpoint(es, openai_up, inference_id="text-only"):
    await es.inference.put(task_type="embedding", inference_id=inference_id, inference_config={
        "service": "openai", "service_settings": {"api_key": openai_up.api_key, "model_id": "text-embedding-3-small",
                                                  "url": f"{openai_up.url}/v1/embeddings"}})


async def test_text_on_a_text_embedding_service(es, openai_up):
    await _openai_endpoint(es, openai_up)
    resp = await es.inference.embedding(inference_id="text-only", body=EXAMPLE_2)
    assert [e["embedding"] for e in resp.body["embeddings"]] == [
        pytest.approx(openai_vector(t), abs=1e-6) for t in EXAMPLE_2["input"]]
    assert openai_up.requests[-1]["input"] == EXAMPLE_2["input"]
    # content objects holding one text each are text too, in order, mixed with plain strings
    mixed = {"input": [{"content": {"type": "TEXT", "format": "text", "value": "one"}}, "two"]}
    resp = await es.inference.embedding(inference_id="text-only", body=mixed)
    assert len(resp.body["embeddings"]) == 2 and openai_up.requests[-1]["input"] == ["one", "two"]
    resp = await es.inference.embedding(inference_id="text-only", body={"input": "alone"})
    assert openai_up.requests[-1]["input"] == ["alone"]


@pytest.mark.parametrize("body, words", [(EXAMPLE_1, "cannot embed images"),
                                         (EXAMPLE_3, "cannot embed images"),
                                         ({"input": [{"content": [{"type": "text", "value": "a"},
                                                                  {"type": "text", "value": "b"}]}]},
                                          "cannot embed several items as one embedding")])
async def test_a_text_only_model_refuses_images_clearly(es, openai_up, body, words):
    await _openai_endpoint(es, openai_up)
    calls = len(openai_up.requests)
    with pytest.raises(BadRequestError) as info:
        await es.inference.embedding(inference_id="text-only", body=body)
    reason = info.value.body["error"]["reason"]
    assert words in reason and "[text-embedding-3-small]" in reason and "text" in reason
    assert len(openai_up.requests) == calls


async def test_a_multimodal_model_takes_images(es, jina):
    await es.inference.put_jinaai(task_type="embedding", jinaai_inference_id="mm", service="jinaai",
                                  service_settings={"api_key": jina.api_key, "model_id": "jina-clip-v2"})
    resp = await es.inference.embedding(inference_id="mm", body=EXAMPLE_1)
    payload = IMAGE.split(",", 1)[1]
    assert jina.requests[-1]["input"] == [{"image": payload}, {"text": "Some text to create an embedding"}]
    vectors = [e["embedding"] for e in resp.body["embeddings"]]
    assert vectors[1] == pytest.approx(jina_vector("Some text to create an embedding"), abs=1e-6)
    # several items as one embedding (9.5) is more than Jina's API takes: refused, not half-sent
    with pytest.raises(BadRequestError) as info:
        await es.inference.embedding(inference_id="mm", body=EXAMPLE_3)
    assert "several items in one content object" in info.value.body["error"]["reason"]


@pytest.mark.parametrize("service, settings, model", [
    ("cohere", {"model_id": "embed-english-v3.0"}, "embed-english-v3.0"),
    ("voyageai", {"model_id": "voyage-3", "multimodal_model": False}, "voyage-3"),
])
async def test_images_are_refused_where_the_provider_model_takes_text_only(es, cohere_up, voyage_up, service,
                                                                            settings, model):
    """Cohere's v3 models and a Voyage endpoint set `multimodal_model: false` embed text on this task; the
    multimodal models (embed-v4.0, voyage-multimodal-3, multimodalembedding) take images (tests/contract)."""
    fake = cohere_up if service == "cohere" else voyage_up
    await es.inference.put(task_type="embedding", inference_id="text-model", inference_config={
        "service": service, "service_settings": {"api_key": fake.api_key, **settings}})
    calls = len(fake.requests)
    with pytest.raises(BadRequestError) as info:
        await es.inference.embedding(inference_id="text-model", body=EXAMPLE_1)
    assert f"cannot embed images: the [{service}] service model [{model}] takes text only" in \
        info.value.body["error"]["reason"]
    assert len(fake.requests) == calls
    resp = await es.inference.embedding(inference_id="text-model", body=EXAMPLE_2)
    assert len(resp.body["embeddings"]) == 2


@pytest.mark.parametrize("body, reason", [
    ({"input": []}, "Validation Failed: 1: Field [inputs] cannot be an empty array;"),
    ({"input_type": "ingest"}, "Validation Failed: 1: Field [inputs] cannot be null;"),
    ({"input": [{"content": {"type": "video", "value": "x"}}]}, "[InferenceString] failed to parse field [type]"),
    ({"input": [{"content": {"type": "image", "format": "text", "value": "x"}}]},
     "Data type [image] does not support data format [text], supported formats are [base64]"),
    ({"input": [{"content": {"type": "image", "format": "url", "value": "https://example.com/a.jpg"}}]},
     "[InferenceString] failed to parse field [format]"),
    ({"input": [{"contents": {"type": "text", "value": "x"}}]}, "unknown field [contents]"),
])
async def test_bad_embedding_bodies_are_elasticsearch_errors(es, openai_up, body, reason):
    await _openai_endpoint(es, openai_up)
    with pytest.raises(BadRequestError) as info:
        await es.inference.embedding(inference_id="text-only", body=body)
    assert info.value.body["error"]["reason"].endswith(reason)
