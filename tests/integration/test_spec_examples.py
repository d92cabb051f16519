"""Replays request examples of the Elasticsearch specification (`tests/data/es_spec_examples.json`, each
with its source file in elastic/elasticsearch-specification) through the official client's helpers:
every example Elasticsearch documents as valid must be accepted, and GET must show it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLES = json.loads((Path(__file__).parents[1] / "data" / "es_spec_examples.json").read_text())


def _cases(api: str):
    return [pytest.param(e, id=e["source"].rsplit("/", 1)[1]) for e in EXAMPLES[api]]


# Examples 3, 11 and 12 write placeholder URLs such as `https://url:rawPredict`: java.net.URI takes the authority
# as registry-based (ES accepts them), but the gateway only stores URLs it could call (proxy.validation.url_problem,
# a port that is not a number refused): a deliberate difference, kept visible here.
UNCALLABLE = {"PutGoogleVertexAiRequestExample3.yaml", "PutGoogleVertexAiRequestExample11.yaml",
              "PutGoogleVertexAiRequestExample12.yaml"}


@pytest.mark.parametrize("example", _cases("put_googlevertexai"))
async def test_vertex_examples_are_accepted(es, example):
    body = example["body"]
    if example["source"].rsplit("/", 1)[1] in UNCALLABLE:
        from elasticsearch import BadRequestError

        with pytest.raises(BadRequestError) as info:
            await es.inference.put_googlevertexai(task_type=example["task_type"], googlevertexai_inference_id="ex",
                                                  **body)
        assert "Port could not be cast to integer value" in info.value.body["error"]["reason"]
        return
    resp = await es.inference.put_googlevertexai(task_type=example["task_type"], googlevertexai_inference_id="ex",
                                                 **body)
    assert resp.body["task_type"] == example["task_type"]
    shown = resp.body["service_settings"]
    for key, value in body["service_settings"].items():
        if key == "provider":  # printed as the enum's name (GoogleVertexAiChatCompletionServiceSettings)
            assert shown[key] == value.upper()
        elif key != "service_account_json":  # a secret: never shown
            assert shown[key] == value
    assert "service_account_json" not in shown
    assert (await es.inference.get(inference_id="ex")).body["endpoints"][0] == resp.body


async def test_vertex_generation_rules_are_elasticsearch_s(es):
    """ES `GoogleVertexAiChatCompletionServiceSettings.validateServiceSettings`."""
    from elasticsearch import BadRequestError

    sa = {"service_account_json": "{}"}
    cases = [
        ({"provider": "anthropic", **sa}, "Google Model Garden provider=anthropic selected. Either 'uri' or "
                                          "'streaming_uri' must be provided"),
        ({"url": "https://x/y", **sa}, "'provider' is either GOOGLE or null. For Google Vertex AI models 'uri' and "
                                       "'streaming_uri' must not be provided. Remove 'url' and 'streaming_url' "
                                       "fields. Provided values: uri=https://x/y, streaming_uri=null"),
        ({"model_id": "gemini-2.5-flash", "project_id": "p", **sa},
         "For Google Vertex AI models, you must provide 'location', 'project_id', and 'model_id'. Provided values: "
         "location=null, project_id=p, model_id=gemini-2.5-flash"),
    ]
    for settings, message in cases:
        with pytest.raises(BadRequestError) as info:
            await es.inference.put_googlevertexai(task_type="chat_completion", googlevertexai_inference_id="bad",
                                                  service="googlevertexai", service_settings=settings)
        assert info.value.body["error"]["reason"] == f"Validation Failed: 1: {message};"
    ok = await es.inference.put_googlevertexai(
        task_type="completion", googlevertexai_inference_id="gemini", service="googlevertexai",
        service_settings={"model_id": "gemini-2.5-flash", "project_id": "p", "location": "us-central1", **sa})
    assert ok.body["service_settings"]["provider"] == "GOOGLE"
