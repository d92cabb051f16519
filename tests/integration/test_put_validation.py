"""The test inference Elasticsearch runs when an endpoint is created (`ModelValidatorBuilder`,
`SimpleServiceIntegrationValidator`, `TextEmbeddingModelValidator`), through the official client."""

from __future__ import annotations

import pytest
from elasticsearch import BadRequestError, NotFoundError

from tests.conftest import make_settings
from tests.fakes.openai_upstream import DIMS
from tests.shared.conftest import free_port

FAILED = "Could not complete inference endpoint creation as validation call to service threw an exception."


@pytest.fixture
def gateway_settings(tmp_path):
    return make_settings(tmp_path, validate_endpoints=True)


def _openai(upstream, path="/v1/embeddings", **kw) -> dict:
    return {"api_key": upstream.api_key, "model_id": "text-embedding-3-small", "url": f"{upstream.url}{path}", **kw}


async def test_dimensions_and_similarity_are_learnt_at_put(es, upstream):
    resp = await es.inference.put_openai(task_type="text_embedding", openai_inference_id="emb", service="openai",
                                         service_settings=_openai(upstream))
    ss = resp.body["service_settings"]
    assert ss["dimensions"] == DIMS and ss["similarity"] == "dot_product"
    assert upstream.requests[-1]["input"] == ["how big"]  # ES SimpleServiceIntegrationValidator.TEST_TEXT_INPUT
    assert (await es.inference.get(inference_id="emb")).body["endpoints"][0]["service_settings"] == ss


async def test_dimensions_given_must_match_the_answer(es, upstream):
    # NIM does not take `dimensions`, so the provider answers with its own size
    with pytest.raises(BadRequestError) as info:
        await es.inference.put_nvidia(task_type="text_embedding", nvidia_inference_id="nim", service="nvidia",
                                      service_settings=_openai(upstream, dimensions=DIMS + 1))
    assert info.value.body["error"]["reason"] == (
        f"The retrieved embeddings size [{DIMS}] does not match the size specified in the settings [{DIMS + 1}]. "
        f"Please recreate the [nim] configuration with the correct dimensions")
    with pytest.raises(NotFoundError):
        await es.inference.get(inference_id="nim")


async def test_a_bad_key_fails_the_put_with_the_provider_error_and_stores_nothing(es, upstream):
    with pytest.raises(BadRequestError) as info:
        await es.inference.put_openai(task_type="text_embedding", openai_inference_id="bad", service="openai",
                                      service_settings=_openai(upstream, api_key="sk-wrong-key-123"))
    error = info.value.body["error"]
    assert error["reason"] == FAILED
    assert error["caused_by"]["reason"] == ("Received an authentication error status code for request from inference "
                                            "entity id [bad] status [401]. Error message: [Incorrect API key provided]")
    assert "sk-wrong-key-123" not in str(info.value.body)
    with pytest.raises(NotFoundError):
        await es.inference.get(inference_id="bad")


async def test_an_unreachable_provider_fails_the_put(es):
    settings = {"api_key": "sk-x", "model_id": "m", "url": f"http://127.0.0.1:{free_port()}/v1/embeddings"}
    with pytest.raises(BadRequestError) as info:
        await es.inference.put_openai(task_type="text_embedding", openai_inference_id="away", service="openai",
                                      service_settings=settings, timeout="2s")  # connection errors are retried
    assert info.value.body["error"]["reason"] == FAILED
    assert "caused_by" in info.value.body["error"]


async def test_generation_endpoints_are_probed_within_the_put_timeout(es, upstream):
    await es.inference.put_openai(task_type="completion", openai_inference_id="comp", service="openai",
                                  service_settings=_openai(upstream, "/v1/chat/completions", model_id="gpt-x"))
    assert upstream.requests[-1]["messages"] == [{"role": "user", "content": "how big"}]
    with pytest.raises(BadRequestError) as info:  # the model answers in 5 s; the PUT allows 1 s
        await es.inference.put_openai(task_type="completion", openai_inference_id="slow", service="openai",
                                      service_settings=_openai(upstream, "/v1/chat/completions", model_id="slow"),
                                      timeout="1s")
    assert info.value.body["error"]["reason"] == FAILED
    with pytest.raises(NotFoundError):
        await es.inference.get(inference_id="slow")
