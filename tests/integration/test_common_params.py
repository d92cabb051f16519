"""`pretty`, `human`, `error_trace` and `filter_path` on `/_inference` answers, through the official
client's own parameters where it has them and raw HTTP for the exact bytes.

Expected shapes follow ES `AbstractRestChannel` (filtering off for errors, `pretty` with a line feed at the
end), `JsonXContentGenerator.usePrettyPrint` (Jackson `DefaultPrettyPrinter`: `"name" : value`, `[ ]`
for an empty array) and `FilterPathBasedFilter` (`*`, `**`, `-` exclusions).
"""

from __future__ import annotations

import pytest
from elasticsearch import BadRequestError, NotFoundError

ENDPOINT = {"service": "openai", "service_settings": {"api_key": "sk-test", "model_id": "text-embedding-3-small",
                                                      "dimensions": 8}}


@pytest.fixture
async def with_endpoints(es):
    for name in ("alpha", "beta"):
        await es.inference.put(task_type="text_embedding", inference_id=name, inference_config=ENDPOINT)
    await es.inference.put_region_policy(region_policy={"allowed_geos": ["eu"]}, force=True)
    return es


@pytest.mark.parametrize("filter_path, expected", [
    ("endpoints.inference_id", {"endpoints": [{"inference_id": "alpha"}, {"inference_id": "beta"}]}),
    ("endpoints.*_id", {"endpoints": [{"inference_id": "alpha"}, {"inference_id": "beta"}]}),
    ("**.model_id", {"endpoints": [{"service_settings": {"model_id": "text-embedding-3-small"}}] * 2}),
    ("endpoints.service_settings.dim*,endpoints.service", {"endpoints": [
        {"service": "openai", "service_settings": {"dimensions": 8}}] * 2}),
    ("nothing.here", {}),
])
async def test_filter_path_includes(with_endpoints, filter_path, expected):
    resp = await with_endpoints.inference.get(filter_path=filter_path)
    assert resp.body == expected


async def test_filter_path_excludes_and_lists(with_endpoints):
    resp = await with_endpoints.inference.get(inference_id="alpha",
                                              filter_path="-endpoints.service_settings,-endpoints.chunking_settings")
    assert resp.body == {"endpoints": [{"inference_id": "alpha", "task_type": "text_embedding", "service": "openai"}]}
    # the client sends a list comma-joined
    resp = await with_endpoints.inference.get_region_policy(filter_path=["region_policy.allowed_geos", "created_at"])
    assert set(resp.body) == {"region_policy", "created_at"}
    assert resp.body["region_policy"] == {"allowed_geos": ["eu"]}


async def test_errors_are_not_filtered(with_endpoints):
    with pytest.raises(NotFoundError) as info:
        await with_endpoints.inference.get(inference_id="missing", filter_path="endpoints.inference_id")
    assert info.value.body["error"]["reason"] == "Inference endpoint not found [missing]"
    assert info.value.body["status"] == 404


async def test_pretty_prints_like_jackson_with_a_line_feed_at_the_end(gateway, http, es):
    async with http.get(gateway.make_url("/_inference?pretty")) as resp:
        assert await resp.read() == b'{\n  "endpoints" : [ ]\n}\n'
    await es.inference.put_region_policy(region_policy={"allowed_regions": [{"csp": "aws", "region": "eu-west-1"}]})
    async with http.get(gateway.make_url("/_inference/_region_policy?pretty=true&filter_path=region_policy")) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        assert await r.read() == (b'{\n  "region_policy" : {\n    "allowed_regions" : [\n      {\n'
                                  b'        "csp" : "aws",\n        "region" : "eu-west-1"\n      }\n    ]\n  }\n}\n')
    async with http.get(gateway.make_url("/_inference/missing?pretty")) as resp:  # errors are pretty too
        assert resp.status == 404
        text = await resp.text()
    assert text.startswith('{\n  "error" : {\n    "root_cause" : [\n') and text.endswith("}\n")
    async with http.get(gateway.make_url("/_inference?pretty=false")) as resp:
        assert await resp.read() == b'{"endpoints":[]}'


@pytest.mark.parametrize("param", ["pretty", "human", "error_trace"])
async def test_common_booleans_are_parsed_strictly(gateway, http, param):
    async with http.get(gateway.make_url(f"/_inference?{param}=yes")) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["type"] == "illegal_argument_exception"
    assert error["reason"] == "Failed to parse value [yes] as only [true] or [false] are allowed."


async def test_human_is_accepted(es):
    assert (await es.inference.get(human=True)).body == {"endpoints": []}


async def test_error_trace_adds_a_stack_trace_without_python_frames(es):
    with pytest.raises(BadRequestError) as info:
        await es.inference.put_region_policy(body={"region_policy": {"allowed_geos": []}}, error_trace=True)
    error = info.value.body["error"]
    assert error["stack_trace"] == ("action_request_validation_exception: Validation Failed: 1: "
                                    "[region_policy.allowed_geos] must not be empty;")
    assert error["root_cause"][0]["stack_trace"].startswith("action_request_validation_exception")
    assert "Traceback" not in str(info.value.body) and ".py" not in str(info.value.body)
    with pytest.raises(NotFoundError) as info:
        await es.inference.get(inference_id="missing")
    assert "stack_trace" not in info.value.body["error"]


async def test_openai_surface_is_untouched(gateway, http):
    async with http.get(gateway.make_url("/v1/models?pretty&filter_path=nothing")) as resp:
        assert resp.status == 200
        assert (await resp.read()).startswith(b'{"object":"list"')
