"""Replays request examples of the Elasticsearch specification (`tests/data/es_spec_examples.json`, each
with its source file in elastic/elasticsearch-specification) through the official client's helpers:
every example Elasticsearch documents as valid must be accepted, and GET must show it back."""

from __future__ import annotations

import inspect
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


# -- every other service's PUT examples, through its `put_<service>` helper (or `put` for the generic API)

OTHER_APIS = sorted(k for k in EXAMPLES if k.startswith("put") and k != "put_googlevertexai")
# Examples Elasticsearch accepts that the gateway cannot: file -> (the reason, what the refusal says).
_PLACEHOLDER = ("a placeholder such as `Target-URI` or `url-endpoint`: java.net.URI parses it as a relative "
                "reference, but Elasticsearch's own PUT then fails on it, since its validation call "
                "(ModelValidatorBuilder) cannot reach it; the gateway refuses it while parsing "
                "(proxy.validation.url_problem), as for UNCALLABLE above")
_NOT_A_URL = (_PLACEHOLDER, "only http and https urls can be called")
NOT_APPLICABLE: dict[str, tuple[str, str]] = {
    "PutAzureAiStudioRequestExample1.yaml": _NOT_A_URL,
    "PutAzureAiStudioRequestExample2.yaml": _NOT_A_URL,
    "PutAzureAiStudioRequestExample3.yaml": _NOT_A_URL,
    "PutHuggingFaceRequestExample1.yaml": _NOT_A_URL,
    "PutHuggingFaceRequestExample2.yaml": _NOT_A_URL,
    "PutWatsonxRequestExample1.yaml": _NOT_A_URL,
    **{f"PutOpenShiftAiRequestExample{i}.yaml": _NOT_A_URL for i in range(1, 6)},
    **{f"PutNvidiaRequestExample{i}.yaml": _NOT_A_URL for i in (1, 3, 5, 7)},
    # ES VoyageAIService reads its secrets with DefaultSecretSettings.fromMap, where `api_key` is required: these two
    # examples leave it out, and Elasticsearch refuses them as well
    "PutVoyageAIRequestExample1.yaml": ("no api_key", "does not contain the required setting [api_key]"),
    "PutVoyageAIRequestExample2.yaml": ("no api_key", "does not contain the required setting [api_key]"),
    # java.net.URI refuses `<` and `>` too: ES's ServiceUtils.convertToUri answers this very error for it
    "PutCustomRequestExample5.yaml": ("its url is a `<placeholder>`, which Elasticsearch refuses as well",
                                      "Reason: Illegal character in path"),
}


def _put_cases():
    return [pytest.param(api, e, id=e["source"].rsplit("/", 1)[1]) for api in OTHER_APIS for e in EXAMPLES[api]]


async def _put(es, api: str, example: dict):
    method = getattr(es.inference, api)
    if api == "put":
        return await method(task_type=example["task_type"], inference_id="ex", inference_config=example["body"])
    id_param = next(p for p in inspect.signature(method).parameters if p.endswith("_inference_id"))
    return await method(task_type=example["task_type"], **{id_param: "ex"}, **example["body"])


@pytest.mark.parametrize("api, example", _put_cases())
async def test_put_examples_are_accepted(es, api, example):
    from proxy.catalogue import lookup

    name = example["source"].rsplit("/", 1)[1]
    if name in NOT_APPLICABLE:
        from elasticsearch import ApiError

        with pytest.raises(ApiError) as info:
            await _put(es, api, example)
        assert NOT_APPLICABLE[name][1] in info.value.body["error"]["reason"]
        return
    resp = await _put(es, api, example)
    body = example["body"]
    assert resp.body["task_type"] == example["task_type"]
    assert resp.body["service"] == body["service"]
    secrets = lookup(body["service"]).secret_names()
    shown = resp.body.get("service_settings", {})
    for key, value in body.get("service_settings", {}).items():
        if key in secrets:
            assert key not in shown  # never shown
        else:
            assert shown[key] == value, key
    for key, value in body.get("task_settings", {}).items():
        assert resp.body["task_settings"][key] == value, key
    assert (await es.inference.get(inference_id="ex")).body["endpoints"][0] == resp.body


# -- the PUT response examples: what the gateway answers for the request example each one belongs to

# Set by Elasticsearch's validation call at PUT (TextEmbeddingModelValidator), which these tests leave off
# (tests/conftest.make_settings); tests/integration/test_put_validation.py checks that the gateway fills them.
FROM_VALIDATION = frozenset({"dimensions", "similarity"})
# Response examples that are not what Elasticsearch answers: file -> why.
RESPONSE_DIFFERENCES: dict[str, str] = {
    "PutFireworksAiResponseExample2.yaml": "it leaves `url` out, which PutFireworksAiResponseExample1 and "
                                           "FireworksAiEmbeddingsServiceSettings show always",
    "PutAzureOpenAiResponseExample1.yaml": "its rate limit reads 1140; AzureOpenAiEmbeddingsServiceSettings' "
                                           "DEFAULT_RATE_LIMIT_SETTINGS is 1_440, which the gateway shows",
    "PutElasticsearchResponseExample1.yaml": "model_id, num_threads and num_allocations come from the running "
                                             "deployment (ElasticsearchInternalService.validateAgainstDeployment); "
                                             "these tests run no local deployment",
    "PutElserResponseExample1.yaml": "written before 8.16: it has no chunking_settings (ES adds the default to every "
                                     "new endpoint) and prints the empty task_settings the other examples leave out",
}


def _request_example(name: str) -> tuple[str, dict]:
    for api in OTHER_APIS:
        for e in EXAMPLES[api]:
            if e["source"].endswith("/" + name):
                return api, e
    raise LookupError(name)


def _response_param(response: dict):
    """A documented difference is a strict xfail: the day the gateway matches the example, it is noticed."""
    name = response["source"].rsplit("/", 1)[1]
    marks = [pytest.mark.xfail(strict=True, reason=RESPONSE_DIFFERENCES[name])] if name in RESPONSE_DIFFERENCES else []
    return pytest.param(response, id=name, marks=marks)


@pytest.mark.parametrize("response", [_response_param(r) for r in EXAMPLES["responses"]])
async def test_put_answers_have_the_specification_s_shape(es, response):
    api, request = _request_example(response["request"])
    body = json.loads(json.dumps(request["body"]))
    settings = body["service_settings"]
    placeholder = request["source"].rsplit("/", 1)[1] in NOT_APPLICABLE and "url" in settings
    if placeholder:  # the same request with a URL the gateway can store (NOT_APPLICABLE says why)
        settings["url"] = "https://placeholder.example/v1"
    resp = await _put(es, api, {**request, "body": body})
    expected, got = response["body"], resp.body
    assert sorted(k for k in got if k != "inference_id") == sorted(k for k in expected if k != "inference_id")
    for part in ("service_settings", "task_settings"):
        learned = FROM_VALIDATION - set(request["body"].get(part, {}))
        want = {k: v for k, v in expected.get(part, {}).items() if k not in learned}
        have = {k: v for k, v in got.get(part, {}).items() if k not in learned}
        if placeholder and part == "service_settings":
            have["url"] = want.get("url")
        assert have == want, part
    assert got.get("chunking_settings") == expected.get("chunking_settings")
