"""The region policy (ES 9.5 `_inference/_region_policy`) through the official client's
`put_region_policy` / `get_region_policy` / `delete_region_policy`, and its enforcement on inference.

Request bodies are the specification's examples (elastic/elasticsearch-specification
`specification/inference/put_region_policy/examples/request/PutRegionPolicyRequestExample{1,2}.yaml`);
errors are those of ES `PutRegionPolicyAction.Request`, `RegionPolicy`, `TransportGetRegionPolicyAction`,
`TransportDeleteRegionPolicyAction` and `TransportPutRegionPolicyAction`.
"""

from __future__ import annotations

import re

import pytest
from elasticsearch import ApiError, BadRequestError, ConflictError, NotFoundError

from tests.conftest import make_settings
from tests.fakes.aws_upstream import FakeBedrock

EXAMPLE_REGIONS = {"allowed_regions": [{"csp": "aws", "region": "us-east-1"}, {"csp": "aws", "region": "eu-west-1"}]}
EXAMPLE_GEOS = {"allowed_geos": ["us", "eu"]}
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
async def bedrock(serve_fake):
    return await serve_fake(FakeBedrock(region="eu-west-1"))


@pytest.fixture
def gateway_settings(tmp_path, bedrock):
    return make_settings(tmp_path, upstreams={"amazonbedrock": bedrock.url})


async def _bedrock_endpoint(es, bedrock, inference_id: str, region: str) -> None:
    await es.inference.put(task_type="text_embedding", inference_id=inference_id, inference_config={
        "service": "amazonbedrock", "service_settings": {
            "access_key": bedrock.key.access_key, "secret_key": bedrock.key.secret_key, "region": region,
            "model": "amazon.titan-embed-text-v2:0", "provider": "amazontitan"}})


async def test_no_policy_is_404_on_get_and_delete(es):
    for call in (es.inference.get_region_policy, es.inference.delete_region_policy):
        with pytest.raises(NotFoundError) as info:
            await call()
        assert info.value.body["error"]["type"] == "resource_not_found_exception"
        assert info.value.body["error"]["reason"] == "No region policy is configured for this deployment"


async def test_put_get_replace_delete_round_trip(es):
    created = (await es.inference.put_region_policy(region_policy=EXAMPLE_REGIONS)).body
    assert created["region_policy"] == EXAMPLE_REGIONS
    assert ISO_MILLIS.match(created["created_at"]) and "updated_at" not in created
    assert (await es.inference.get_region_policy()).body == created

    replaced = (await es.inference.put_region_policy(region_policy=EXAMPLE_GEOS, force=True)).body
    assert replaced["region_policy"] == EXAMPLE_GEOS
    assert replaced["created_at"] == created["created_at"]  # kept across a replace
    assert ISO_MILLIS.match(replaced["updated_at"])
    assert list(replaced) == ["region_policy", "created_at", "updated_at"]  # RegionPolicyDoc.toXContent order
    assert (await es.inference.get_region_policy()).body == replaced

    assert (await es.inference.delete_region_policy()).body == {"acknowledged": True}
    with pytest.raises(NotFoundError):
        await es.inference.get_region_policy()


async def test_region_policy_is_not_an_endpoint_id(es):
    await es.inference.put_region_policy(region_policy=EXAMPLE_GEOS)
    assert (await es.inference.get()).body == {"endpoints": []}


@pytest.mark.parametrize("body, es_type, reason, cause", [
    ({"region_policy": {"allowed_geos": ["us"], "allowed_regions": [{"csp": "aws", "region": "us-east-1"}]}},
     "x_content_parse_exception", "[put_region_policy_request] failed to parse field [region_policy]",
     {"type": "illegal_argument_exception",
      "reason": "The following fields are not allowed together: [allowed_geos, allowed_regions] "}),
    ({"region_policy": {"allowed_regions": []}}, "action_request_validation_exception",
     "Validation Failed: 1: [region_policy.allowed_regions] must not be empty;", None),
    ({"region_policy": {"allowed_geos": []}}, "action_request_validation_exception",
     "Validation Failed: 1: [region_policy.allowed_geos] must not be empty;", None),
    ({"region_policy": {"allowed_geo": ["us"]}}, "x_content_parse_exception",
     "[put_region_policy_request] failed to parse field [region_policy]", None),
    ({"region_policy": {"allowed_regions": [{"csp": "aws"}]}}, "x_content_parse_exception",
     "[put_region_policy_request] failed to parse field [region_policy]", None),
    ({"policy": {}}, "x_content_parse_exception", "[put_region_policy_request] unknown field [policy]", None),
])
async def test_put_errors_are_elasticsearch_errors(es, body, es_type, reason, cause):
    with pytest.raises(BadRequestError) as info:
        await es.inference.put_region_policy(body=body)
    error = info.value.body["error"]
    assert error["type"] == es_type
    assert error["reason"].endswith(reason)
    if cause:
        assert error["caused_by"] == cause
    with pytest.raises(NotFoundError):  # nothing was stored
        await es.inference.get_region_policy()


async def test_missing_region_policy_is_required(es, http, gateway):
    async with http.put(gateway.make_url("/_inference/_region_policy"), json={}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["type"] == "illegal_argument_exception" and error["reason"] == "Required [region_policy]"


async def test_policy_is_enforced_on_inference_and_needs_force_for_endpoints_in_use(es, bedrock):
    await _bedrock_endpoint(es, bedrock, "eu-emb", "eu-west-1")
    await _bedrock_endpoint(es, bedrock, "us-emb", "us-east-1")

    # a policy that would deny an existing endpoint: 409 with the ids, nothing stored
    with pytest.raises(ConflictError) as info:
        await es.inference.put_region_policy(region_policy={"allowed_geos": ["eu"]})
    error = info.value.body["error"]
    assert error["type"] == "status_exception"
    assert error["reason"] == ("Cannot put the region policy because it would deny access to the following in-use "
                               "inference endpoints: [us-emb]. Ensure that these inference endpoints are not in use, "
                               "or use force to ignore this warning and proceed anyway.")
    assert error["denied_endpoint_ids"] == "us-emb"
    with pytest.raises(NotFoundError):
        await es.inference.get_region_policy()

    # with force it is stored; the EU endpoint still answers, the US one gets ES's 403
    await es.inference.put_region_policy(region_policy={"allowed_geos": ["eu"]}, force=True)
    ok = await es.inference.text_embedding(inference_id="eu-emb", input=["hello"])
    assert len(ok.body["text_embedding"]) == 1
    calls = len(bedrock.requests)
    with pytest.raises(ApiError) as info:
        await es.inference.text_embedding(inference_id="us-emb", input=["hello"])
    assert info.value.status_code == 403
    assert info.value.body["error"]["reason"] == (
        "Received a permission denied error status code for request from inference entity id [us-emb] status "
        "[403]. Error message: [Requested model is not available in the allowed inference regions]")
    assert len(bedrock.requests) == calls  # refused before anything left the gateway

    # allowed_regions match cloud and region exactly
    await es.inference.put_region_policy(region_policy=EXAMPLE_REGIONS)  # both endpoints allowed: no force needed
    await es.inference.text_embedding(inference_id="eu-emb", input=["hello"])
    with pytest.raises(ConflictError):
        await es.inference.put_region_policy(region_policy={"allowed_regions": [{"csp": "gcp", "region": "eu-west-1"}]})

    # deleting the policy lifts it
    await es.inference.put_region_policy(region_policy={"allowed_geos": ["apac"]}, force=True)
    with pytest.raises(ApiError):
        await es.inference.text_embedding(inference_id="eu-emb", input=["hello"])
    await es.inference.delete_region_policy()
    await es.inference.text_embedding(inference_id="eu-emb", input=["hello"])


async def test_an_endpoint_of_unknown_location_is_allowed_by_no_policy(es, bedrock):
    await es.inference.put(task_type="text_embedding", inference_id="anywhere", inference_config={
        "service": "openai", "service_settings": {"api_key": "sk-test", "model_id": "text-embedding-3-small"}})
    with pytest.raises(ConflictError) as info:
        await es.inference.put_region_policy(region_policy={"allowed_geos": ["us", "eu", "apac"]})
    assert info.value.body["error"]["denied_endpoint_ids"] == "anywhere"


def test_locations_come_from_settings_and_the_gateway():
    from proxy import region
    from proxy.registry import Endpoint
    from proxy.settings import load
    from proxy.types import TaskType

    assert load(env={"INFERENCE_PROXY_LOCATION": "gcp/europe-west1"}).location == "gcp/europe-west1"
    with pytest.raises(ValueError, match="must be <csp>/<region>"):
        load(env={"INFERENCE_PROXY_LOCATION": "europe"})
    here = region.parse_location("onprem/eu-paris")
    local = Endpoint(inference_id="l", task_type=TaskType.TEXT_EMBEDDING, service="elasticsearch",
                     service_settings={"model_id": "m"})
    assert region.endpoint_location(local, here) == here and here.geo == "eu"
    assert region.endpoint_location(local, None) is None
    cases = [
        ("googlevertexai", {"location": "us-central1"}, ("gcp", "us-central1"), "us"),
        ("googlevertexai", {"url": "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/x:rawPredict"},
         ("gcp", "europe-west4"), "eu"),
        ("azureaistudio", {"target": "https://m-1.swedencentral.models.ai.azure.com"}, ("azure", "swedencentral"), "eu"),
        ("watsonxai", {"url": "https://jp-tok.ml.cloud.ibm.com"}, ("ibm", "jp-tok"), "apac"),
        ("alibabacloud-ai-search", {"host": "default-j01.platform-cn-shanghai.opensearch.aliyuncs.com"},
         ("alibaba", "cn-shanghai"), "apac"),
        ("amazon_sagemaker", {"region": "ap-southeast-2"}, ("aws", "ap-southeast-2"), "apac"),
        ("openai", {"model_id": "x"}, None, None),
    ]
    for service, settings, where, geo in cases:
        ep = Endpoint(inference_id="e", task_type=TaskType.TEXT_EMBEDDING, service=service, service_settings=settings)
        got = region.endpoint_location(ep, None)
        assert (None if got is None else (got.csp, got.region)) == where, service
        assert (None if got is None else got.geo) == geo, service


async def test_the_policy_records_who_set_it_and_needs_the_manage_privilege(gateway):
    """`created_by`/`updated_by` are the key's user (RegionPolicyDoc, SPEC PutRegionPolicyResponseExample1);
    PUT and DELETE need manage_inference, GET monitor_inference (the spec's cluster privileges)."""
    from elasticsearch import AsyncElasticsearch, AuthorizationException

    from proxy import appkeys
    from proxy.keys import encoded

    ring = gateway.app[appkeys.KEYS]
    root = encoded(*await ring.create("root", "ops", roles=["superuser"]))
    base = str(gateway.make_url("/")).rstrip("/")
    async with AsyncElasticsearch(base, api_key=root, max_retries=0) as es:
        made = (await es.inference.put_region_policy(region_policy=EXAMPLE_GEOS)).body
        assert made["created_by"] == "ops" and "updated_by" not in made
        reader = (await es.security.create_api_key(name="reader", role_descriptors={
            "r": {"cluster": ["monitor_inference"]}})).body["encoded"]
    async with AsyncElasticsearch(base, api_key=reader, max_retries=0) as es:
        assert (await es.inference.get_region_policy()).body["created_by"] == "ops"
        with pytest.raises(AuthorizationException):
            await es.inference.put_region_policy(region_policy=EXAMPLE_REGIONS, force=True)
        with pytest.raises(AuthorizationException):
            await es.inference.delete_region_policy()


async def test_a_router_passes_over_targets_the_policy_denies(es, bedrock):
    """Routers call their targets' backends directly: each target is checked against the policy there."""
    await _bedrock_endpoint(es, bedrock, "eu-emb", "eu-west-1")
    await _bedrock_endpoint(es, bedrock, "us-emb", "us-east-1")
    await es.inference.put(task_type="text_embedding", inference_id="both", inference_config={
        "service": "router", "service_settings": {"strategy": "fallback", "targets": [{"id": "us-emb"},
                                                                                    {"id": "eu-emb"}]}})
    await es.inference.put_region_policy(region_policy={"allowed_geos": ["eu"]}, force=True)  # routers need no force
    calls = len(bedrock.requests)
    resp = await es.inference.text_embedding(inference_id="both", input=["hello"])
    assert len(resp.body["text_embedding"]) == 1
    assert len(bedrock.requests) == calls + 1  # one call, to the EU target (the fake only signs eu-west-1)
    await es.inference.put_region_policy(region_policy={"allowed_geos": ["apac"]}, force=True)
    with pytest.raises(ApiError) as info:
        await es.inference.text_embedding(inference_id="both", input=["hello"])
    assert "is not allowed by the region policy" in info.value.body["error"]["reason"]
