"""Issue 20: Elasticsearch's API key API through the official client, scoped keys on both surfaces,
and usage per key and endpoint."""

from __future__ import annotations

import asyncio
import base64

import openai
import pytest
from elasticsearch import AsyncElasticsearch, AuthenticationException, AuthorizationException, BadRequestError

from proxy import appkeys
from proxy.keys import encoded


@pytest.fixture
async def root(gateway):
    """A superuser key made as the CLI makes it: the first key turns access control on."""
    ring = gateway.app[appkeys.KEYS]
    return encoded(*await ring.create("root", "ops", roles=["superuser"]))


def client(gateway, api_key=None) -> AsyncElasticsearch:
    return AsyncElasticsearch(str(gateway.make_url("/")).rstrip("/"), api_key=api_key, max_retries=0)


def _openai_endpoint(upstream, path: str) -> dict:
    return {"service": "openai", "service_settings": {"api_key": upstream.api_key, "model_id": "m",
                                                      "url": f"{upstream.url}{path}"}}


SCOPED = {"team-a": {"cluster": ["monitor_inference"],
                     "applications": [{"application": "inference-proxy", "privileges": ["text_embedding"],
                                       "resources": ["team-a-*"]}]}}


async def test_the_official_client_creates_reads_and_invalidates_keys(gateway, root):
    async with client(gateway, root) as es:
        made = (await es.security.create_api_key(name="svc-1", expiration="1d", metadata={"team": "a"},
                                                 role_descriptors=SCOPED)).body
        assert set(made) == {"id", "name", "expiration", "api_key", "encoded"}
        assert base64.b64decode(made["encoded"]).decode() == f"{made['id']}:{made['api_key']}"
        got = (await es.security.get_api_key(id=made["id"], with_limited_by=True)).body["api_keys"]
        assert len(got) == 1
        key = got[0]
        assert key["name"] == "svc-1" and key["invalidated"] is False and key["type"] == "rest"
        assert key["username"] == "ops" and key["metadata"] == {"team": "a"} and key["role_descriptors"] == SCOPED
        assert 0 < key["expiration"] - key["creation"] <= 86_400_000
        assert key["limited_by"] == [{"superuser": {"cluster": ["all"]}}]
        assert "api_key" not in key and "digest" not in str(key)

        by_name = (await es.security.get_api_key(name="svc-*")).body["api_keys"]
        assert [k["id"] for k in by_name] == [made["id"]]

        async with client(gateway, made["encoded"]) as svc:
            who = (await svc.security.authenticate()).body
            assert who["authentication_type"] == "api_key"
            assert who["api_key"] == {"id": made["id"], "name": "svc-1"}
            assert who["username"] == "ops"

            gone = (await es.security.invalidate_api_key(ids=[made["id"]])).body
            assert gone == {"invalidated_api_keys": [made["id"]], "previously_invalidated_api_keys": [],
                            "error_count": 0}
            with pytest.raises(AuthenticationException):
                await svc.security.authenticate()
        again = (await es.security.invalidate_api_key(name="svc-1")).body
        assert again["previously_invalidated_api_keys"] == [made["id"]]
        active = (await es.security.get_api_key(name="svc-1", active_only=True)).body["api_keys"]
        assert active == []


async def test_key_requests_are_validated_like_elasticsearch(gateway, root):
    async with client(gateway, root) as es:
        with pytest.raises(BadRequestError) as nameless:
            await es.security.create_api_key(role_descriptors={})
        assert nameless.value.body["error"]["type"] == "action_request_validation_exception"
        assert "api key name is required" in nameless.value.body["error"]["reason"]
        with pytest.raises(BadRequestError) as unknown:
            await es.security.create_api_key(name="x", role_descriptors={"r": {"cluster": ["take_over"]}})
        assert unknown.value.body["error"]["reason"].startswith("unknown cluster privilege [take_over]")
        with pytest.raises(BadRequestError) as field:
            await es.security.create_api_key(body={"name": "x", "nope": 1})
        assert field.value.body["error"]["reason"] == "[api_key_request] unknown field [nope]"


async def test_only_key_managers_manage_keys(gateway, root):
    async with client(gateway, root) as es:
        user = (await es.security.create_api_key(
            name="reader", role_descriptors={"r": {"cluster": ["monitor_inference"]}})).body["encoded"]
        own = (await es.security.create_api_key(
            name="self-service", role_descriptors={"r": {"cluster": ["monitor_inference", "manage_own_api_key"]}})
        ).body["encoded"]
    async with client(gateway, user) as reader:
        with pytest.raises(AuthorizationException) as denied:
            await reader.security.create_api_key(name="more")
        assert "cluster:admin/xpack/security/api_key/create" in denied.value.body["error"]["reason"]
    async with client(gateway, own) as selfish:
        child = (await selfish.security.create_api_key(name="child")).body
        # it sees only its owner's keys; the child may do no more than its creator
        names = {k["name"] for k in (await selfish.security.get_api_key()).body["api_keys"]}
        assert "child" in names
        async with client(gateway, child["encoded"]) as kid:
            with pytest.raises(AuthorizationException):
                await kid.inference.put(inference_id="x", task_type="completion",
                                        inference_config={"service": "openai",
                                                          "service_settings": {"api_key": "k", "model_id": "m"}})


async def test_a_scoped_key_sees_and_uses_only_its_endpoints_on_both_surfaces(gateway, root, upstream):
    async with client(gateway, root) as es:
        for ep in ("team-a-emb", "team-b-emb"):
            await es.inference.put(task_type="text_embedding", inference_id=ep,
                                   inference_config=_openai_endpoint(upstream, "/v1/embeddings"))
        await es.inference.put(task_type="chat_completion", inference_id="team-a-chat",
                               inference_config=_openai_endpoint(upstream, "/v1/chat/completions"))
        scoped = (await es.security.create_api_key(name="team-a", role_descriptors=SCOPED)).body["encoded"]

    async with client(gateway, scoped) as team:
        listed = [e["inference_id"] for e in (await team.inference.get()).body["endpoints"]]
        assert listed == ["team-a-emb"]  # not team-b's, not team-a's chat (a task it may not use)
        out = await team.inference.text_embedding(inference_id="team-a-emb", input=["hi"])
        assert len(out.body["text_embedding"]) == 1
        with pytest.raises(AuthorizationException) as other:
            await team.inference.text_embedding(inference_id="team-b-emb", input=["hi"])
        assert "on inference endpoint [team-b-emb]" in other.value.body["error"]["reason"]
        with pytest.raises(AuthorizationException):
            await team.inference.delete(inference_id="team-a-emb")

    base = str(gateway.make_url("/v1"))
    async with openai.AsyncOpenAI(base_url=base, api_key=scoped, max_retries=0) as oa:
        assert [m.id for m in (await oa.models.list()).data] == ["team-a-emb"]
        assert len((await oa.embeddings.create(model="team-a-emb", input="hi")).data) == 1
        # as OpenAI answers: a model the key may not use "does not exist or you do not have access to it"
        with pytest.raises(openai.NotFoundError):
            await oa.embeddings.create(model="team-b-emb", input="hi")
        with pytest.raises(openai.NotFoundError):
            await oa.chat.completions.create(model="team-a-chat", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.NotFoundError):
            await oa.models.retrieve("team-b-emb")


async def test_a_key_scoped_to_a_router_reaches_its_targets_only_through_it(gateway, root, upstream):
    async with client(gateway, root) as es:
        await es.inference.put(task_type="text_embedding", inference_id="shared-emb",
                               inference_config=_openai_endpoint(upstream, "/v1/embeddings"))
        await es.inference.put(task_type="text_embedding", inference_id="team-a-router",
                               inference_config={"service": "router",
                                                 "service_settings": {"targets": ["shared-emb"]}})
        scoped = (await es.security.create_api_key(name="team-a", role_descriptors=SCOPED)).body["encoded"]
    async with client(gateway, scoped) as team:
        out = await team.inference.text_embedding(inference_id="team-a-router", input=["hi"])
        assert len(out.body["text_embedding"]) == 1
        with pytest.raises(AuthorizationException):
            await team.inference.text_embedding(inference_id="shared-emb", input=["hi"])
        assert [e["inference_id"] for e in (await team.inference.get()).body["endpoints"]] == ["team-a-router"]


async def test_access_control_stays_on_after_the_last_key_is_invalidated(gateway, root):
    async with client(gateway, root) as es:
        me = (await es.security.authenticate()).body["api_key"]["id"]
        await es.security.invalidate_api_key(ids=[me])
    async with client(gateway) as anonymous:
        with pytest.raises(AuthenticationException):
            await anonymous.inference.get()


async def test_usage_is_counted_per_key_and_endpoint(gateway, root, upstream):
    async with client(gateway, root) as es:
        await es.inference.put(task_type="chat_completion", inference_id="chat",
                               inference_config=_openai_endpoint(upstream, "/v1/chat/completions"))
        await es.inference.put(task_type="text_embedding", inference_id="emb",
                               inference_config=_openai_endpoint(upstream, "/v1/embeddings"))
        made = (await es.security.create_api_key(name="app")).body
    base = str(gateway.make_url("/v1"))
    async with openai.AsyncOpenAI(base_url=base, api_key=made["encoded"], max_retries=0) as oa:
        await asyncio.gather(*(oa.chat.completions.create(model="chat", messages=[{"role": "user", "content": "a"}])
                               for _ in range(5)))
        await oa.embeddings.create(model="emb", input=["one two three"])
        upstream.fail_next(400, "bad")
        with pytest.raises(openai.BadRequestError):
            await oa.chat.completions.create(model="chat", messages=[{"role": "user", "content": "a"}])
    async with client(gateway, root) as es:
        usage = (await es.perform_request("GET", "/_inference/_usage", params={"key": made["id"]},
                                          headers={"accept": "application/json"})).body
        by_endpoint = {u["endpoint"]: u for u in usage["usage"]}
        assert by_endpoint["chat"]["requests"] == 6 and by_endpoint["chat"]["errors"] == 1
        assert by_endpoint["chat"]["input_tokens"] == 15 and by_endpoint["chat"]["output_tokens"] == 5
        assert by_endpoint["emb"]["requests"] == 1 and by_endpoint["emb"]["input_tokens"] == 3
        assert by_endpoint["chat"]["key"] == made["id"] and by_endpoint["chat"]["key_name"] == "app"
        assert usage["totals"]["requests"] == 7
        hourly = (await es.perform_request("GET", "/_inference/_usage", params={"endpoint": "chat",
                                                                                 "interval": "1h"},
                                           headers={"accept": "application/json"})).body
        assert sum(b["requests"] for u in hourly["usage"] for b in u["buckets"]) == 6
        with pytest.raises(BadRequestError):
            await es.perform_request("GET", "/_inference/_usage", params={"interval": "7s"},
                                     headers={"accept": "application/json"})


async def test_usage_needs_manage_inference(gateway, root):
    async with client(gateway, root) as es:
        reader = (await es.security.create_api_key(
            name="reader", role_descriptors={"r": {"cluster": ["monitor_inference"]}})).body["encoded"]
    async with client(gateway, reader) as es:
        with pytest.raises(AuthorizationException):
            await es.perform_request("GET", "/_inference/_usage", headers={"accept": "application/json"})


async def _fresh_minute() -> None:
    """Budgets count in UTC minutes: do not start a count in a minute's last seconds."""
    import time

    left = 60 - time.time() % 60
    if left < 8:
        await asyncio.sleep(left + 0.1)


async def test_a_key_over_its_request_budget_gets_429_naming_it(gateway, root, upstream):
    async with client(gateway, root) as es:
        await es.inference.put(task_type="text_embedding", inference_id="emb",
                               inference_config=_openai_endpoint(upstream, "/v1/embeddings"))
        made = (await es.security.create_api_key(
            name="metered", metadata={"inference_limits": {"requests_per_minute": 3}})).body
        with pytest.raises(BadRequestError) as bad:
            await es.security.create_api_key(name="x", metadata={"inference_limits": {"requests_per_minute": 0}})
        assert "must be positive" in bad.value.body["error"]["reason"]
    await _fresh_minute()
    async with client(gateway, made["encoded"]) as es:
        for _ in range(3):
            await es.inference.text_embedding(inference_id="emb", input=["x"])
        with pytest.raises(Exception) as over:
            await es.inference.text_embedding(inference_id="emb", input=["x"])
    assert over.value.meta.status == 429
    assert "over its budget of [3 requests per minute]" in over.value.body["error"]["reason"]
    assert 1 <= int(over.value.meta.headers["Retry-After"]) <= 60


async def test_a_key_over_its_token_budget_is_refused_after_the_request_that_crossed_it(gateway, root, upstream):
    async with client(gateway, root) as es:
        await es.inference.put(task_type="chat_completion", inference_id="chat",
                               inference_config=_openai_endpoint(upstream, "/v1/chat/completions"))
        made = (await es.security.create_api_key(
            name="tokens", metadata={"inference_limits": {"tokens_per_day": 10}})).body
    base = str(gateway.make_url("/v1"))
    async with openai.AsyncOpenAI(base_url=base, api_key=made["encoded"], max_retries=0) as oa:
        for _ in range(3):  # 4 tokens each (the fake reports 3 in, 1 out): 12 > 10 after the third
            await oa.chat.completions.create(model="chat", messages=[{"role": "user", "content": "a"}])
        with pytest.raises(openai.RateLimitError) as over:
            await oa.chat.completions.create(model="chat", messages=[{"role": "user", "content": "a"}])
    assert "over its budget of [10 tokens per day]" in over.value.message
    assert int(over.value.response.headers["Retry-After"]) <= 86400


async def test_usage_is_readable_in_the_cli_too(aiohttp_server, tmp_path, upstream):
    import subprocess
    import sys
    from pathlib import Path

    from proxy.server import create_app
    from proxy.settings import Price
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, prices={"chat": Price(input=1000.0, output=2000.0)})
    gateway = await aiohttp_server(create_app(settings))
    base = str(gateway.make_url("")).rstrip("/")
    async with AsyncElasticsearch(base, max_retries=0) as es:
        await es.inference.put(task_type="chat_completion", inference_id="chat",
                               inference_config=_openai_endpoint(upstream, "/v1/chat/completions"))
    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0) as oa:
        for _ in range(2):
            await oa.chat.completions.create(model="chat", messages=[{"role": "user", "content": "a"}])
    async with AsyncElasticsearch(base, max_retries=0) as es:
        usage = (await es.perform_request("GET", "/_inference/_usage", headers={"accept": "application/json"})).body
    # no keys: counted without one; 2 x (3 in, 1 out) at 1000/2000 per million tokens
    assert usage["usage"] == [{"key": None, "endpoint": "chat", "requests": 2, "errors": 0, "input_tokens": 6,
                               "output_tokens": 2, "cost": 0.01}]
    assert usage["totals"]["cost"] == 0.01
    out = subprocess.run([sys.executable, "-m", "proxy", "usage", "--data-dir", settings.data_dir],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split("\t") == ["key", "key_name", "endpoint", "requests", "errors", "input_tokens",
                                    "output_tokens"]
    assert lines[1].split("\t") == ["-", "-", "chat", "2", "0", "6", "2"]


async def test_usage_of_the_current_minute_counts_from_its_first_second(gateway, upstream):
    """A request in the first second of a minute is in a bucket that starts at the very second `to` names."""
    import time

    left = 60 - time.time() % 60
    await asyncio.sleep(left + 0.05)  # just into a new minute
    async with client(gateway) as es:
        await es.inference.put(task_type="text_embedding", inference_id="emb",
                               inference_config=_openai_endpoint(upstream, "/v1/embeddings"))
        await es.inference.text_embedding(inference_id="emb", input=["x"])
        assert time.time() % 60 < 1, "too slow to test the first second"
        usage = (await es.perform_request("GET", "/_inference/_usage", headers={"accept": "application/json"})).body
    assert usage["totals"]["requests"] == 1
