"""Issue 2: endpoint CRUD on `/_inference`, through the official elasticsearch client against a live gateway.

Every expectation comes from the reference (/work/shared/reference/es-inference-api.md): routes §1,
PUT bodies §2.1, `_update` §2.4, response shapes §3.5/§3.6, errors §5.1/§5.2, services §6,
chunking §7, client behaviour §9. Nothing is mocked: the gateway runs on loopback.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from elasticsearch import ApiError, BadRequestError, NotFoundError

from proxy import appkeys
from proxy.catalogue import SERVICES, Service, Setting
from proxy.types import TaskType
from proxy.validation import URL_SETTINGS

PRODUCT = "Elasticsearch"
VND = "application/vnd.elasticsearch+json; compatible-with=9"
DEFAULT_CHUNKING = {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}

OPENAI_EMBED = {"service": "openai", "service_settings": {"model_id": "text-embedding-3-small", "api_key": "sk-test"}}
OPENAI_CHAT = {"service": "openai", "service_settings": {"model_id": "gpt-4o", "api_key": "sk-test"}}


# ------------------------------------------------------------------------------------ helpers


async def expect_error(awaitable, exc_cls: type[ApiError], status: int, es_type: str,
                       reason: str | tuple[str, ...]) -> ApiError:
    """The call fails with the ES envelope of §5.1, exactly (`reason` may list the wordings of several ES versions)."""
    with pytest.raises(exc_cls) as info:
        await awaitable
    err = info.value
    assert err.meta.status == status
    assert err.meta.headers.get("X-Elastic-Product") == PRODUCT
    assert isinstance(err.body, dict) and isinstance(err.body.get("error"), dict), err.body
    got = err.body["error"]["reason"]
    reasons = reason if isinstance(reason, tuple) else (reason,)
    assert got in reasons, got
    assert err.body == {"error": {"root_cause": [{"type": es_type, "reason": got}], "type": es_type, "reason": got},
                        "status": status}
    assert err.message == es_type  # the client's message is error.type (§9)
    return err


async def raw(http, gateway, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
              data: bytes | None = None) -> tuple[int, Any, dict[str, Any] | None, bytes]:
    """One raw request: (status, headers, parsed JSON or None, raw bytes)."""
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    hdrs.update(headers or {})
    payload = json.dumps(body).encode() if body is not None else data
    async with http.request(method, gateway.make_url(path), data=payload, headers=hdrs) as resp:
        content = await resp.read()
        parsed = json.loads(content) if content else None
        return resp.status, resp.headers, parsed, content


def user_endpoints(body: dict[str, Any]) -> list[dict[str, Any]]:
    """GET lists may hold preconfigured `.`-prefixed defaults (§8); tests reason about their own ones."""
    assert list(body) == ["endpoints"]
    return [e for e in body["endpoints"] if not e["inference_id"].startswith(".")]


def openai_embed_public(inference_id: str, **extra_ss: Any) -> dict[str, Any]:
    return {
        "inference_id": inference_id,
        "task_type": "text_embedding",
        "service": "openai",
        "service_settings": {"model_id": "text-embedding-3-small", "similarity": "dot_product", **extra_ss,
                             "rate_limit": {"requests_per_minute": 3000}},
        "chunking_settings": DEFAULT_CHUNKING,
    }


# ================================================================================ create forms


async def test_put_with_task_type_in_url(es):
    resp = await es.inference.put(task_type="text_embedding", inference_id="oa-embed", inference_config=OPENAI_EMBED)
    assert resp.meta.status == 200
    assert resp.meta.headers["X-Elastic-Product"] == PRODUCT
    assert resp.body == openai_embed_public("oa-embed")
    # §3.5: field order, task_settings omitted when empty, secrets never shown
    assert list(resp.body) == ["inference_id", "task_type", "service", "service_settings", "chunking_settings"]
    assert list(resp.body["service_settings"]) == ["model_id", "similarity", "rate_limit"]
    assert "api_key" not in json.dumps(resp.body)


async def test_put_without_task_type_in_url_takes_it_from_the_body(es):
    resp = await es.inference.put(inference_id="oa-chat", inference_config={"task_type": "completion", **OPENAI_CHAT})
    assert resp.body == {
        "inference_id": "oa-chat",
        "task_type": "completion",
        "service": "openai",
        "service_settings": {"model_id": "gpt-4o", "rate_limit": {"requests_per_minute": 500}},
    }
    # no chunking for completion (§7), no empty task_settings (§3.5)
    assert list(resp.body) == ["inference_id", "task_type", "service", "service_settings"]
    got = await es.inference.get(inference_id="oa-chat")
    assert got.body == {"endpoints": [resp.body]}


async def test_put_body_task_type_matching_url_is_accepted(es):
    resp = await es.inference.put(task_type="completion", inference_id="same",
                                  inference_config={"task_type": "completion", **OPENAI_CHAT})
    assert resp.body["task_type"] == "completion"


async def test_put_task_type_is_case_insensitive_and_printed_lower_case(es):
    resp = await es.inference.put(inference_id="upper-task",
                                  inference_config={"task_type": "TEXT_EMBEDDING", **OPENAI_EMBED})
    assert resp.body["task_type"] == "text_embedding"


async def test_put_response_field_order_with_task_settings(es):
    config = {**OPENAI_EMBED, "task_settings": {"user": "me"},
              "chunking_settings": {"strategy": "word", "max_chunk_size": 100, "overlap": 50}}
    resp = await es.inference.put(task_type="text_embedding", inference_id="ordered", inference_config=config)
    assert list(resp.body) == ["inference_id", "task_type", "service", "service_settings", "task_settings",
                               "chunking_settings"]
    assert resp.body["task_settings"] == {"user": "me"}
    assert resp.body["chunking_settings"] == {"strategy": "word", "max_chunk_size": 100, "overlap": 50}


async def test_put_with_timeout_param(es):
    resp = await es.inference.put(task_type="text_embedding", inference_id="with-timeout",
                                  inference_config=OPENAI_EMBED, timeout="45s")
    assert resp.body["inference_id"] == "with-timeout"


async def test_put_user_rate_limit_is_kept(es):
    config = {"service": "openai", "service_settings": {**OPENAI_CHAT["service_settings"],
                                                        "rate_limit": {"requests_per_minute": 42}}}
    resp = await es.inference.put(task_type="chat_completion", inference_id="rl", inference_config=config)
    assert resp.body["service_settings"] == {"model_id": "gpt-4o", "rate_limit": {"requests_per_minute": 42}}


async def test_openai_embedding_service_settings_print_in_es_order(es):
    config = {"service": "openai", "service_settings": {
        "max_input_tokens": 512, "dimensions": 256, "organization_id": "org-1", "url": "http://127.0.0.1:1/v1",
        "model_id": "text-embedding-3-small", "api_key": "sk-test"}}
    resp = await es.inference.put(task_type="text_embedding", inference_id="order-ss", inference_config=config)
    assert list(resp.body["service_settings"]) == ["model_id", "url", "organization_id", "similarity", "dimensions",
                                                   "max_input_tokens", "rate_limit"]


async def test_openai_embedding_given_settings_print_in_es_order_when_similarity_is_given(es):
    config = {"service": "openai", "service_settings": {
        "max_input_tokens": 512, "dimensions": 256, "similarity": "cosine", "organization_id": "org-1",
        "url": "http://127.0.0.1:1/v1", "model_id": "text-embedding-3-small", "api_key": "sk-test"}}
    resp = await es.inference.put(task_type="text_embedding", inference_id="order-ss2", inference_config=config)
    assert resp.body["service_settings"] == {
        "model_id": "text-embedding-3-small", "url": "http://127.0.0.1:1/v1", "organization_id": "org-1",
        "similarity": "cosine", "dimensions": 256, "max_input_tokens": 512,
        "rate_limit": {"requests_per_minute": 3000}}
    assert list(resp.body["service_settings"]) == ["model_id", "url", "organization_id", "similarity", "dimensions",
                                                   "max_input_tokens", "rate_limit"]


async def test_put_openai(es):
    resp = await es.inference.put_openai(task_type="chat_completion", openai_inference_id="oa-unified",
                                         service="openai", service_settings={"model_id": "gpt-4o", "api_key": "sk"},
                                         task_settings={"user": "u1"})
    assert resp.body == {
        "inference_id": "oa-unified",
        "task_type": "chat_completion",
        "service": "openai",
        "service_settings": {"model_id": "gpt-4o", "rate_limit": {"requests_per_minute": 500}},
        "task_settings": {"user": "u1"},
    }
    assert list(resp.body) == ["inference_id", "task_type", "service", "service_settings", "task_settings"]


async def test_put_openai_with_chunking_settings(es):
    resp = await es.inference.put_openai(task_type="text_embedding", openai_inference_id="oa-chunked",
                                         service="openai", service_settings=OPENAI_EMBED["service_settings"],
                                         chunking_settings={"strategy": "none"})
    assert resp.body["chunking_settings"] == {"strategy": "none"}


async def test_put_cohere_rerank(es):
    resp = await es.inference.put_cohere(task_type="rerank", cohere_inference_id="co-rerank", service="cohere",
                                         service_settings={"model_id": "rerank-v3.5", "api_key": "co-key"},
                                         task_settings={"top_n": 3, "return_documents": True})
    assert resp.body == {
        "inference_id": "co-rerank",
        "task_type": "rerank",
        "service": "cohere",
        "service_settings": {"model_id": "rerank-v3.5", "rate_limit": {"requests_per_minute": 10000}},
        "task_settings": {"return_documents": True, "top_n": 3},
    }


async def test_put_cohere_embedding_with_enum_settings(es):
    resp = await es.inference.put_cohere(
        task_type="text_embedding", cohere_inference_id="co-embed", service="cohere",
        service_settings={"model_id": "embed-english-v3.0", "api_key": "co-key", "embedding_type": "byte",
                          "similarity": "cosine"},
        task_settings={"input_type": "ingest"},
        chunking_settings={"strategy": "sentence", "max_chunk_size": 100, "sentence_overlap": 0})
    assert resp.body["service_settings"]["embedding_type"] == "byte"
    assert resp.body["service_settings"]["similarity"] == "cosine"
    assert resp.body["service_settings"]["rate_limit"] == {"requests_per_minute": 10000}
    assert "api_key" not in resp.body["service_settings"]
    assert resp.body["task_settings"] == {"input_type": "ingest"}
    assert resp.body["chunking_settings"] == {"strategy": "sentence", "max_chunk_size": 100, "sentence_overlap": 0}


async def test_put_elasticsearch(es):
    """Local models may later be checked on PUT: then a clear 400 naming the model is the right answer."""
    try:
        resp = await es.inference.put_elasticsearch(
            task_type="text_embedding", elasticsearch_inference_id="local-e5", service="elasticsearch",
            service_settings={"model_id": ".multilingual-e5-small", "num_threads": 1, "num_allocations": 1})
    except BadRequestError as err:
        assert err.meta.status == 400
        assert ".multilingual-e5-small" in err.body["error"]["reason"]
        with pytest.raises(NotFoundError):
            await es.inference.get(inference_id="local-e5")
        return
    body = resp.body
    assert list(body)[:4] == ["inference_id", "task_type", "service", "service_settings"]
    assert body["inference_id"] == "local-e5"
    assert body["task_type"] == "text_embedding"
    assert body["service"] == "elasticsearch"
    ss = body["service_settings"]
    assert ss["model_id"] == ".multilingual-e5-small"
    assert ss["num_threads"] == 1
    assert ss["num_allocations"] == 1
    assert "rate_limit" not in ss  # §6: n/a for the elasticsearch service
    assert body["chunking_settings"] == DEFAULT_CHUNKING
    got = await es.inference.get(inference_id="local-e5")
    assert got.body == {"endpoints": [body]}


async def test_put_elasticsearch_requires_an_allocation_style(es):
    await expect_error(
        es.inference.put_elasticsearch(task_type="sparse_embedding", elasticsearch_inference_id="no-alloc",
                                       service="elasticsearch",
                                       service_settings={"model_id": ".elser_model_2", "num_threads": 1}),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain one of the required settings "
        "[num_allocations, adaptive_allocations];")


# ================================================================================ GET


async def _create_three(es) -> dict[str, dict[str, Any]]:
    out = {}
    for inference_id, task, config in (("emb-a", "text_embedding", OPENAI_EMBED),
                                       ("emb-b", "text_embedding", OPENAI_EMBED),
                                       ("chat-c", "completion", OPENAI_CHAT)):
        resp = await es.inference.put(task_type=task, inference_id=inference_id, inference_config=config)
        out[inference_id] = resp.body
    return out


async def test_get_all_on_an_empty_gateway(es):
    resp = await es.inference.get()
    assert resp.meta.headers["X-Elastic-Product"] == PRODUCT
    assert user_endpoints(resp.body) == []


async def test_get_all_lists_every_endpoint_as_put_returned_it(es):
    created = await _create_three(es)
    resp = await es.inference.get()
    listed = user_endpoints(resp.body)
    assert sorted(e["inference_id"] for e in listed) == sorted(created)
    for e in listed:
        assert e == created[e["inference_id"]]
        assert list(e) == list(created[e["inference_id"]])


@pytest.mark.parametrize("wildcard", ["_all", "*"])
async def test_get_all_by_wildcard_id(es, wildcard):
    created = await _create_three(es)
    resp = await es.inference.get(inference_id=wildcard)
    assert {e["inference_id"]: e for e in user_endpoints(resp.body)} == created


async def test_get_by_task_type_lists_only_that_task(es):
    created = await _create_three(es)
    resp = await es.inference.get(task_type="text_embedding")  # GET /_inference/text_embedding/_all
    assert [e["inference_id"] for e in user_endpoints(resp.body)] == ["emb-a", "emb-b"]
    resp = await es.inference.get(task_type="completion")
    assert user_endpoints(resp.body) == [created["chat-c"]]
    resp = await es.inference.get(task_type="rerank")
    assert user_endpoints(resp.body) == []


@pytest.mark.parametrize("wildcard", ["_all", "*"])
async def test_get_by_task_type_with_wildcard_id(es, wildcard):
    created = await _create_three(es)
    resp = await es.inference.get(task_type="completion", inference_id=wildcard)
    assert user_endpoints(resp.body) == [created["chat-c"]]


async def test_get_one(es):
    created = await _create_three(es)
    resp = await es.inference.get(inference_id="emb-b")
    assert resp.body == {"endpoints": [created["emb-b"]]}


async def test_get_one_with_matching_task_type(es):
    created = await _create_three(es)
    resp = await es.inference.get(task_type="completion", inference_id="chat-c")
    assert resp.body == {"endpoints": [created["chat-c"]]}


async def test_get_one_segment_is_an_id_not_a_task_type(es):
    # §1.1: GET /_inference/sparse_embedding looks up an endpoint *named* sparse_embedding
    await expect_error(es.inference.get(inference_id="sparse_embedding"), NotFoundError, 404,
                       "resource_not_found_exception", "Inference endpoint not found [sparse_embedding]")


async def test_get_with_raw_all_routes(es, http, gateway):
    created = await _create_three(es)
    for path in ("/_inference", "/_inference/_all", "/_inference/*", "/_inference/text_embedding/*"):
        status, headers, body, _ = await raw(http, gateway, "GET", path)
        assert status == 200, path
        assert headers["X-Elastic-Product"] == PRODUCT
        expected = created if "text_embedding" not in path else {k: created[k] for k in ("emb-a", "emb-b")}
        assert {e["inference_id"]: e for e in user_endpoints(body)} == expected, path


# ================================================================================ _update


async def test_update_task_settings(es):
    await es.inference.put(task_type="text_embedding", inference_id="upd",
                           inference_config={**OPENAI_EMBED, "task_settings": {"user": "before"}})
    resp = await es.inference.update(inference_id="upd", inference_config={"task_settings": {"user": "after"}})
    expected = {**openai_embed_public("upd"), "task_settings": {"user": "after"}}
    expected = {k: expected[k] for k in ("inference_id", "task_type", "service", "service_settings", "task_settings",
                                         "chunking_settings")}
    assert resp.body == expected
    assert list(resp.body) == list(expected)
    got = await es.inference.get(inference_id="upd")
    assert got.body == {"endpoints": [resp.body]}  # ES InferenceCrudIT.testCRUD


async def test_update_with_task_type_in_url(es):
    await es.inference.put(task_type="completion", inference_id="upd-url", inference_config=OPENAI_CHAT)
    resp = await es.inference.update(task_type="completion", inference_id="upd-url",
                                     inference_config={"task_settings": {"user": "x"}})
    assert resp.body["task_settings"] == {"user": "x"}
    assert resp.body["service_settings"] == {"model_id": "gpt-4o", "rate_limit": {"requests_per_minute": 500}}


async def test_update_with_matching_task_type_in_body(es):
    await es.inference.put(task_type="completion", inference_id="upd-body", inference_config=OPENAI_CHAT)
    resp = await es.inference.update(inference_id="upd-body",
                                     inference_config={"task_type": "completion", "task_settings": {"user": "y"}})
    assert resp.body["task_settings"] == {"user": "y"}


async def test_update_api_key_secret(es, gateway, gateway_settings):
    await es.inference.put(task_type="completion", inference_id="upd-key",
                           inference_config={"service": "openai",
                                             "service_settings": {"model_id": "gpt-4o", "api_key": "OLD-KEY-1"}})
    registry = gateway.app[appkeys.REGISTRY]
    assert registry.get("upd-key").secrets == {"api_key": "OLD-KEY-1"}
    resp = await es.inference.update(inference_id="upd-key",
                                     inference_config={"service_settings": {"api_key": "NEW-KEY-2"}})
    assert resp.body == {"inference_id": "upd-key", "task_type": "completion", "service": "openai",
                         "service_settings": {"model_id": "gpt-4o", "rate_limit": {"requests_per_minute": 500}}}
    assert registry.get("upd-key").secrets == {"api_key": "NEW-KEY-2"}
    got = await es.inference.get(inference_id="upd-key")
    assert "NEW-KEY-2" not in json.dumps(got.body)
    db = _db_bytes(gateway_settings)
    assert b"upd-key" in db
    assert b"NEW-KEY-2" not in db and b"OLD-KEY-1" not in db


async def test_update_of_a_non_updatable_setting_is_rejected(es):
    await es.inference.put(task_type="text_embedding", inference_id="upd-model", inference_config=OPENAI_EMBED)
    await expect_error(
        es.inference.update(inference_id="upd-model",
                            inference_config={"service_settings": {"model_id": "text-embedding-3-large"}}),
        BadRequestError, 400, "status_exception",
        "Configuration contains settings [{model_id=text-embedding-3-large}] unknown to the [openai] service")
    got = await es.inference.get(inference_id="upd-model")
    assert got.body["endpoints"][0]["service_settings"]["model_id"] == "text-embedding-3-small"


async def test_update_unknown_task_setting_is_rejected(es):
    await es.inference.put(task_type="completion", inference_id="upd-ts", inference_config=OPENAI_CHAT)
    await expect_error(
        es.inference.update(inference_id="upd-ts", inference_config={"task_settings": {"temperature": 2}}),
        BadRequestError, 400, "status_exception",
        "Configuration contains settings [{temperature=2}] unknown to the [openai] service")


async def test_update_task_type_mismatch_in_url(es):
    await es.inference.put(task_type="text_embedding", inference_id="upd-mm", inference_config=OPENAI_EMBED)
    await expect_error(
        es.inference.update(task_type="completion", inference_id="upd-mm",
                            inference_config={"task_settings": {"user": "z"}}),
        BadRequestError, 400, "status_exception", "Task type must match the task type of the existing endpoint")


async def test_update_task_type_mismatch_in_body(es):
    await es.inference.put(task_type="text_embedding", inference_id="upd-mm2", inference_config=OPENAI_EMBED)
    await expect_error(
        es.inference.update(inference_id="upd-mm2",
                            inference_config={"task_type": "completion", "task_settings": {"user": "z"}}),
        BadRequestError, 400, "status_exception", "Task type must match the task type of the existing endpoint")


async def test_update_unknown_endpoint(es):
    await expect_error(es.inference.update(inference_id="nope", inference_config={"task_settings": {"user": "a"}}),
                       NotFoundError, 404, "resource_not_found_exception", "Inference endpoint not found [nope]")


async def test_update_default_endpoint(es):
    await expect_error(
        es.inference.update(inference_id=".elser-2-elasticsearch",
                            inference_config={"task_settings": {"user": "a"}}),
        BadRequestError, 400, "status_exception", "Default endpoint [.elser-2-elasticsearch] cannot be updated")


# ================================================================================ DELETE


async def test_delete_dry_run_leaves_the_endpoint(es):
    created = await es.inference.put(task_type="completion", inference_id="del-dry", inference_config=OPENAI_CHAT)
    resp = await es.inference.delete(inference_id="del-dry", dry_run=True)
    assert resp.body == {"acknowledged": False, "pipelines": [], "indexes": []}
    got = await es.inference.get(inference_id="del-dry")
    assert got.body == {"endpoints": [created.body]}


async def test_delete_removes_the_endpoint(es):
    await es.inference.put(task_type="completion", inference_id="del-me", inference_config=OPENAI_CHAT)
    resp = await es.inference.delete(inference_id="del-me")
    assert resp.body == {"acknowledged": True, "pipelines": [], "indexes": []}
    assert list(resp.body) == ["acknowledged", "pipelines", "indexes"]
    assert resp.meta.headers["X-Elastic-Product"] == PRODUCT
    await expect_error(es.inference.get(inference_id="del-me"), NotFoundError, 404,
                       "resource_not_found_exception", "Inference endpoint not found [del-me]")
    assert user_endpoints((await es.inference.get()).body) == []
    await expect_error(es.inference.delete(inference_id="del-me"), NotFoundError, 404,
                       "resource_not_found_exception", "Inference endpoint not found [del-me]")


async def test_delete_with_task_type_and_force(es):
    await es.inference.put(task_type="completion", inference_id="del-typed", inference_config=OPENAI_CHAT)
    resp = await es.inference.delete(task_type="completion", inference_id="del-typed", force=True)
    assert resp.body == {"acknowledged": True, "pipelines": [], "indexes": []}
    with pytest.raises(NotFoundError):
        await es.inference.get(inference_id="del-typed")


async def test_id_can_be_reused_after_delete(es):
    await es.inference.put(task_type="completion", inference_id="reuse", inference_config=OPENAI_CHAT)
    await es.inference.delete(inference_id="reuse")
    resp = await es.inference.put(task_type="text_embedding", inference_id="reuse", inference_config=OPENAI_EMBED)
    assert resp.body == openai_embed_public("reuse")


# ================================================================================ errors: ids and task types


async def test_get_unknown_id(es):
    await expect_error(es.inference.get(inference_id="inference_to_get"), NotFoundError, 404,
                       "resource_not_found_exception", "Inference endpoint not found [inference_to_get]")


async def test_get_unknown_id_with_task_type(es):
    await expect_error(es.inference.get(task_type="completion", inference_id="ghost"), NotFoundError, 404,
                       "resource_not_found_exception", "Inference endpoint not found [ghost]")


async def test_delete_unknown_id(es):
    await expect_error(es.inference.delete(inference_id="ghost"), NotFoundError, 404,
                       "resource_not_found_exception", "Inference endpoint not found [ghost]")


async def test_bad_task_type_in_url_on_get(es):
    await expect_error(es.inference.get(task_type="bad", inference_id="x"), BadRequestError, 400,
                       "status_exception", "Unknown task_type [bad]")


async def test_bad_task_type_in_url_on_get_all(es):
    await expect_error(es.inference.get(task_type="bad"), BadRequestError, 400,
                       "status_exception", "Unknown task_type [bad]")


async def test_bad_task_type_in_url_on_put(es):
    await expect_error(es.inference.put(task_type="bad", inference_id="x", inference_config=OPENAI_CHAT),
                       BadRequestError, 400, "status_exception", "Unknown task_type [bad]")


async def test_bad_task_type_in_url_on_delete(es):
    await expect_error(es.inference.delete(task_type="bad", inference_id="x"), BadRequestError, 400,
                       "status_exception", "Unknown task_type [bad]")


async def test_bad_task_type_in_body_on_put(es):
    # ES inference_crud.yml "Test put inference with bad task type"
    await expect_error(es.inference.put(inference_id="elser_model", inference_config={"task_type": "bad",
                                                                                      **OPENAI_CHAT}),
                       BadRequestError, 400, "status_exception", "Unknown task_type [bad]")


async def test_task_type_mismatch_on_get(es):
    await es.inference.put(task_type="text_embedding", inference_id="mm", inference_config=OPENAI_EMBED)
    await expect_error(
        es.inference.get(task_type="sparse_embedding", inference_id="mm"), BadRequestError, 400, "status_exception",
        "Requested task type [sparse_embedding] does not match the inference endpoint's task type [text_embedding]")


async def test_task_type_mismatch_on_delete_keeps_the_endpoint(es):
    await es.inference.put(task_type="text_embedding", inference_id="mm-del", inference_config=OPENAI_EMBED)
    await expect_error(
        es.inference.delete(task_type="completion", inference_id="mm-del"), BadRequestError, 400, "status_exception",
        "Requested task type [completion] does not match the inference endpoint's task type [text_embedding]")
    assert (await es.inference.get(inference_id="mm-del")).body["endpoints"][0]["inference_id"] == "mm-del"


async def test_duplicate_id(es):
    first = await es.inference.put(task_type="text_embedding", inference_id="dup", inference_config=OPENAI_EMBED)
    await expect_error(es.inference.put(task_type="completion", inference_id="dup", inference_config=OPENAI_CHAT),
                       BadRequestError, 400, "resource_already_exists_exception",
                       "Inference endpoint [dup] already exists")
    got = await es.inference.get(inference_id="dup")
    assert got.body == {"endpoints": [first.body]}


@pytest.mark.parametrize("inference_id", [".my-endpoint", ".elser-2-elasticsearch"])
async def test_dot_prefixed_id_is_rejected(es, inference_id):
    with pytest.raises(BadRequestError) as info:
        await es.inference.put(task_type="completion", inference_id=inference_id, inference_config=OPENAI_CHAT)
    assert info.value.meta.status == 400
    assert inference_id in info.value.body["error"]["reason"]
    with pytest.raises(NotFoundError):
        await es.inference.get(inference_id=inference_id)


@pytest.mark.parametrize("inference_id", [".my-endpoint", ".elser-2-elasticsearch"])
async def test_dot_prefixed_id_fails_es_id_validation(es, inference_id):
    await expect_error(
        es.inference.put(task_type="completion", inference_id=inference_id, inference_config=OPENAI_CHAT),
        BadRequestError, 400, "action_request_validation_exception",
        f"Validation Failed: 1: Invalid inference_id; '{inference_id}' can contain lowercase alphanumeric (a-z and "
        f"0-9), hyphens or underscores; must start and end with alphanumeric;")


async def test_invalid_id_is_reported_before_body_task_type(es):
    await expect_error(
        es.inference.put(inference_id="Bad-ID", inference_config=OPENAI_CHAT),
        BadRequestError, 400, "action_request_validation_exception",
        "Validation Failed: 1: Invalid inference_id; 'Bad-ID' can contain lowercase alphanumeric (a-z and 0-9), "
        "hyphens or underscores; must start and end with alphanumeric;")


@pytest.mark.parametrize("inference_id", ["Upper", "trailing-", "-leading", "under_", "sp ace", "a$b", "_all"])
async def test_invalid_id_pattern(es, inference_id):
    await expect_error(
        es.inference.put(task_type="completion", inference_id=inference_id, inference_config=OPENAI_CHAT),
        BadRequestError, 400, "action_request_validation_exception",
        f"Validation Failed: 1: Invalid inference_id; '{inference_id}' can contain lowercase alphanumeric (a-z and "
        f"0-9), hyphens or underscores; must start and end with alphanumeric;")


@pytest.mark.parametrize("inference_id", ["a", "0", "my.endpoint-1_x", "a.b"])
async def test_valid_id_patterns(es, inference_id):
    resp = await es.inference.put(task_type="completion", inference_id=inference_id, inference_config=OPENAI_CHAT)
    assert resp.body["inference_id"] == inference_id


async def test_task_type_conflict_between_url_and_body(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="conflict",
                         inference_config={"task_type": "completion", **OPENAI_CHAT}),
        BadRequestError, 400, "status_exception",
        "Cannot resolve conflicting task_type parameter in the request URL [text_embedding] and the request body "
        "[completion]")


async def test_task_type_any_in_body(es):
    await expect_error(es.inference.put(inference_id="any-task", inference_config={"task_type": "any",
                                                                                   **OPENAI_CHAT}),
                       BadRequestError, 400, "status_exception", "task_type [any] is not valid type for inference")


async def test_task_type_missing_everywhere(es):
    await expect_error(es.inference.put(inference_id="no-task", inference_config=OPENAI_CHAT),
                       BadRequestError, 400, "status_exception", "model is missing required setting [task_type]")


# ================================================================================ errors: services and settings


async def test_unknown_service(es):
    await expect_error(
        es.inference.put(task_type="completion", inference_id="x",
                         inference_config={"service": "nope", "service_settings": {}}),
        BadRequestError, 400, "status_exception", "Unknown service [nope]")


async def test_missing_service(es):
    await expect_error(
        es.inference.put(task_type="completion", inference_id="x",
                         inference_config={"service_settings": {"model_id": "m", "api_key": "k"}}),
        BadRequestError, 400, "status_exception",
        "Inference endpoint configuration is missing the [service] setting")


async def test_service_does_not_support_task(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={"service": "anthropic",
                                           "service_settings": {"model_id": "claude", "api_key": "k"},
                                           "task_settings": {"max_tokens": 10}}),
        BadRequestError, 400, "status_exception",
        "The [anthropic] service does not support task type [text_embedding]")


async def test_missing_required_service_setting(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={"service": "openai", "service_settings": {"api_key": "k"}}),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain the required setting [model_id];")


async def test_missing_required_settings_accumulate(es):
    await expect_error(
        es.inference.put(task_type="rerank", inference_id="x",
                         inference_config={"service": "cohere", "service_settings": {}}),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain the required setting [model_id];"
        "2: [service_settings] does not contain the required setting [api_key];")


async def test_missing_service_settings_object(es):
    await expect_error(
        es.inference.put(task_type="rerank", inference_id="x", inference_config={"service": "cohere"}),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain the required setting [model_id];"
        "2: [service_settings] does not contain the required setting [api_key];")


async def test_missing_required_task_setting(es):
    await expect_error(
        es.inference.put(task_type="completion", inference_id="x",
                         inference_config={"service": "anthropic",
                                           "service_settings": {"model_id": "claude", "api_key": "k"}}),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: [task_settings] does not contain the required setting [max_tokens];")


async def test_wrong_type_in_a_setting(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={"service": "openai",
                                           "service_settings": {**OPENAI_EMBED["service_settings"],
                                                                "dimensions": "abc"}}),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: field [dimensions] is not of the expected type. The value [abc] cannot be converted "
        "to a [Integer];")


async def test_wrong_type_for_service_settings_itself(es):
    # ES removeFromMapOrThrowIfNull/removeAsType: the same text, as a status_exception or a validation_exception
    with pytest.raises(BadRequestError) as info:
        await es.inference.put(task_type="completion", inference_id="x",
                               inference_config={"service": "openai", "service_settings": "model"})
    err = info.value.body["error"]
    assert err["type"] in ("validation_exception", "status_exception")
    assert ("field [service_settings] is not of the expected type. The value [model] cannot be converted to a [Map]"
            in err["reason"])


async def test_invalid_enum_value(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={"service": "openai",
                                           "service_settings": {**OPENAI_EMBED["service_settings"],
                                                                "similarity": "foo"}}),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: [service_settings] Invalid value [foo] received. [similarity] must be one of "
        "[cosine, dot_product, l2_norm];")


async def test_invalid_enum_value_lists_allowed_values_sorted(es):
    config = {"service": "azureaistudio", "service_settings": {
        "target": "http://127.0.0.1:1/score", "provider": "openai", "endpoint_type": "foo", "api_key": "k"}}
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x", inference_config=config),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: [service_settings] Invalid value [foo] received. [endpoint_type] must be one of "
        "[realtime, token];")


async def test_non_positive_integer(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={"service": "openai",
                                           "service_settings": {**OPENAI_EMBED["service_settings"],
                                                                "dimensions": 0}}),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: [service_settings] Invalid value [0]. [dimensions] must be a positive integer;")


async def test_unknown_service_setting(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={"service": "openai",
                                           "service_settings": {**OPENAI_EMBED["service_settings"], "foo": "bar"}}),
        BadRequestError, 400, "status_exception",
        "Configuration contains settings [{foo=bar}] unknown to the [openai] service")


async def test_unknown_task_setting(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={**OPENAI_EMBED, "task_settings": {"foo": True}}),
        BadRequestError, 400, "status_exception",
        "Configuration contains settings [{foo=true}] unknown to the [openai] service")


async def test_unknown_top_level_setting(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={**OPENAI_EMBED, "foo": "bar"}),
        BadRequestError, 400, "status_exception",
        "Configuration contains settings [{foo=bar}] unknown to the [openai] service")


async def test_unknown_key_in_a_nested_setting(es):
    config = {"service": "openai", "service_settings": {**OPENAI_CHAT["service_settings"],
                                                        "rate_limit": {"requests_per_minute": 5, "burst": 2}}}
    await expect_error(
        es.inference.put(task_type="completion", inference_id="x", inference_config=config),
        BadRequestError, 400, "status_exception",
        "Configuration contains unknown settings [{burst=2}] while parsing field [rate_limit] for settings "
        "[service_settings]")


async def test_failed_put_creates_nothing(es):
    with pytest.raises(BadRequestError):
        await es.inference.put(task_type="text_embedding", inference_id="x",
                               inference_config={**OPENAI_EMBED, "foo": "bar"})
    with pytest.raises(NotFoundError):
        await es.inference.get(inference_id="x")
    # and the id is free for a valid PUT
    await es.inference.put(task_type="text_embedding", inference_id="x", inference_config=OPENAI_EMBED)


# ================================================================================ chunking settings (§7)


@pytest.mark.parametrize("chunking, expected", [
    ({}, DEFAULT_CHUNKING),
    ({"strategy": "sentence", "max_chunk_size": 20}, {"strategy": "sentence", "max_chunk_size": 20,
                                                      "sentence_overlap": 1}),
    ({"strategy": "word", "max_chunk_size": 10, "overlap": 5}, {"strategy": "word", "max_chunk_size": 10,
                                                                "overlap": 5}),
    ({"strategy": "none"}, {"strategy": "none"}),
    ({"strategy": "recursive", "max_chunk_size": 200, "separators": ["\n\n", "\n"]},
     {"strategy": "recursive", "max_chunk_size": 200, "separators": ["\n\n", "\n"]}),
])
async def test_valid_chunking_settings_are_echoed(es, chunking, expected):
    resp = await es.inference.put(task_type="text_embedding", inference_id="chunky",
                                  inference_config={**OPENAI_EMBED, "chunking_settings": chunking})
    assert resp.body["chunking_settings"] == expected
    got = await es.inference.get(inference_id="chunky")
    assert got.body["endpoints"][0]["chunking_settings"] == expected


async def test_recursive_separator_group_is_expanded(es):
    resp = await es.inference.put(
        task_type="text_embedding", inference_id="rec",
        inference_config={**OPENAI_EMBED, "chunking_settings": {"strategy": "recursive", "max_chunk_size": 100,
                                                                "separator_group": "plaintext"}})
    cs = resp.body["chunking_settings"]
    assert list(cs) == ["strategy", "max_chunk_size", "separators"]
    assert cs["strategy"] == "recursive" and cs["max_chunk_size"] == 100
    assert cs["separators"] and all(isinstance(s, str) for s in cs["separators"])


@pytest.mark.parametrize("chunking, es_type, reason", [
    ({"max_chunk_size": 100}, "illegal_argument_exception", "Can't generate Chunker without ChunkingStrategy provided"),
    ({"strategy": "paragraph", "max_chunk_size": 100}, "illegal_argument_exception",
     "Invalid chunkingStrategy paragraph"),
    ({"strategy": "sentence", "max_chunk_size": 100, "sentence_overlap": 2}, "validation_exception",
     "Validation Failed: 1: sentence_overlap[2] must be either 0 or 1;"),
    ({"strategy": "sentence", "max_chunk_size": 100, "overlap": 5}, "validation_exception",
     "Validation Failed: 1: Sentence based chunking settings can not have the following settings: [overlap];"),
    ({"strategy": "word", "max_chunk_size": 100, "overlap": 10, "sentence_overlap": 1}, "validation_exception",
     "Validation Failed: 1: Word based chunking settings can not have the following settings: [sentence_overlap];"),
    ({"strategy": "word", "max_chunk_size": 100, "overlap": 0}, "validation_exception",
     "Validation Failed: 1: [chunking_settings] Invalid value [0]. [overlap] must be a positive integer;"),
    ({"strategy": "word", "max_chunk_size": 100}, "validation_exception",
     "Validation Failed: 1: [chunking_settings] does not contain the required setting [overlap];"),
    ({"strategy": "sentence"}, "validation_exception",
     "Validation Failed: 1: [chunking_settings] does not contain the required setting [max_chunk_size];"),
    ({"strategy": "sentence", "max_chunk_size": 10}, "validation_exception", (
        # ServiceUtils (up to 9.x) and InferenceUtils (newest) wordings
        "Validation Failed: 1: [chunking_settings] Invalid value [10.0]. [max_chunk_size] must be a greater than or "
        "equal to [20.0];",
        "Validation Failed: 1: [chunking_settings] Invalid value [10.0]. [max_chunk_size] must be greater than or "
        "equal to [20.0];")),
    ({"strategy": "word", "max_chunk_size": 9, "overlap": 1}, "validation_exception", (
        "Validation Failed: 1: [chunking_settings] Invalid value [9.0]. [max_chunk_size] must be a greater than or "
        "equal to [10.0];",
        "Validation Failed: 1: [chunking_settings] Invalid value [9.0]. [max_chunk_size] must be greater than or "
        "equal to [10.0];")),
    ({"strategy": "recursive", "max_chunk_size": 100, "separators": ["\n"], "separator_group": "markdown"},
     "validation_exception",
     "Validation Failed: 1: Recursive chunking settings can not have both separators and separator_set;"),
    ({"strategy": "recursive", "max_chunk_size": 100, "separators": []}, "validation_exception",
     "Validation Failed: 1: Recursive chunking settings can not have an empty list of separators;"),
])
async def test_invalid_chunking_settings(es, chunking, es_type, reason):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="bad-chunks",
                         inference_config={**OPENAI_EMBED, "chunking_settings": chunking}),
        BadRequestError, 400, es_type, reason)
    with pytest.raises(NotFoundError):
        await es.inference.get(inference_id="bad-chunks")


async def test_word_overlap_above_half_uses_the_from_map_message(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={**OPENAI_EMBED, "chunking_settings": {
                             "strategy": "word", "max_chunk_size": 100, "overlap": 60}}),
        BadRequestError, 400, "validation_exception", (
            "Validation Failed: 1: [chunking_settings] Invalid value [60.0]. [overlap] must be a less than or equal "
            "to [50.0];",
            "Validation Failed: 1: [chunking_settings] Invalid value [60.0]. [overlap] must be less than or equal "
            "to [50.0];"))


async def test_non_positive_max_chunk_size(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={**OPENAI_EMBED, "chunking_settings": {
                             "strategy": "sentence", "max_chunk_size": 0}}),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: [chunking_settings] Invalid value [0]. [max_chunk_size] must be a positive integer;")


async def test_none_chunking_with_extra_keys(es):
    await expect_error(
        es.inference.put(task_type="text_embedding", inference_id="x",
                         inference_config={**OPENAI_EMBED, "chunking_settings": {
                             "strategy": "none", "max_chunk_size": 100}}),
        BadRequestError, 400, "validation_exception",
        "Validation Failed: 1: When chunking is disabled (none), settings can not have the following: "
        "[max_chunk_size];")


async def test_chunking_settings_on_a_completion_task_are_unknown(es):
    await expect_error(
        es.inference.put(task_type="completion", inference_id="x",
                         inference_config={**OPENAI_CHAT, "chunking_settings": {"strategy": "none"}}),
        BadRequestError, 400, "status_exception",
        "Configuration contains settings [{chunking_settings={strategy=none}}] unknown to the [openai] service")


# ================================================================================ raw HTTP: headers, root, params


async def test_product_header_on_every_kind_of_response(es, http, gateway):
    await es.inference.put(task_type="completion", inference_id="hdr", inference_config=OPENAI_CHAT)
    cases = [
        ("GET", "/", None, 200),
        ("GET", "/_inference", None, 200),
        ("GET", "/_inference/hdr", None, 200),
        ("GET", "/_inference/missing", None, 404),
        ("GET", "/_inference/bad/x", None, 400),
        ("PUT", "/_inference/completion/hdr", OPENAI_CHAT, 400),
        ("GET", "/_inference?foo=1", None, 400),
        ("GET", "/no/such/route", None, 400),
        ("PATCH", "/_inference/hdr", None, 405),
        ("DELETE", "/_inference/hdr", None, 200),
    ]
    for method, path, body, status in cases:
        got_status, headers, _, _ = await raw(http, gateway, method, path, body)
        assert got_status == status, (method, path)
        assert headers.get("X-Elastic-Product") == PRODUCT, (method, path)


async def test_vnd_content_type_is_accepted(http, gateway):
    headers = {"Content-Type": VND, "Accept": VND}
    status, resp_headers, body, _ = await raw(http, gateway, "PUT", "/_inference/completion/vnd",
                                              data=json.dumps(OPENAI_CHAT).encode(), headers=headers)
    assert status == 200, body
    assert body["inference_id"] == "vnd"
    assert resp_headers["X-Elastic-Product"] == PRODUCT
    ctype = resp_headers["Content-Type"].split(";")[0].strip()
    assert ctype in ("application/json", "application/vnd.elasticsearch+json")
    status, _, body, _ = await raw(http, gateway, "GET", "/_inference/vnd", headers={"Accept": VND})
    assert status == 200 and body["endpoints"][0]["inference_id"] == "vnd"


async def test_vnd_content_type_without_space_is_accepted(http, gateway):
    headers = {"Content-Type": "application/vnd.elasticsearch+json;compatible-with=9"}
    status, _, body, _ = await raw(http, gateway, "PUT", "/_inference/completion/vnd2",
                                   data=json.dumps(OPENAI_CHAT).encode(), headers=headers)
    assert status == 200, body


async def test_unsupported_content_type_is_rejected(http, gateway):
    status, headers, body, _ = await raw(http, gateway, "PUT", "/_inference/completion/txt",
                                         data=json.dumps(OPENAI_CHAT).encode(), headers={"Content-Type": "text/plain"})
    assert status == 406
    message = "Content-Type header [text/plain] is not supported"
    # ES RestController.sendContentTypeErrorMessage answers the simple form {"error": "<msg>", "status": 406}
    assert body == {"error": message, "status": 406}
    assert headers["X-Elastic-Product"] == PRODUCT


async def test_invalid_json_body_is_a_parse_error(http, gateway):
    status, _, body, _ = await raw(http, gateway, "PUT", "/_inference/completion/broken", data=b"{not json",
                                   headers={"Content-Type": "application/json"})
    assert status == 400
    assert body["status"] == 400
    # the exact ES type for a body that is not JSON was not established (reference §11); it is a parse error
    assert body["error"]["type"] in ("x_content_parse_exception", "parse_exception", "json_parse_exception")
    assert body["error"]["root_cause"][0]["type"] == body["error"]["type"]


async def test_root_answers_like_elasticsearch(es, http, gateway):
    status, headers, body, _ = await raw(http, gateway, "GET", "/")
    assert status == 200
    assert headers["X-Elastic-Product"] == PRODUCT
    assert body["tagline"] == "You Know, for Search"
    assert body["version"]["number"].split(".")[0] == "9"
    assert body["version"]["build_flavor"] == "default"
    for key in ("name", "cluster_name", "cluster_uuid"):
        assert isinstance(body[key], str) and body[key]
    info = await es.info()  # the client's own view of the root
    assert info.body["version"]["number"] == body["version"]["number"]


async def test_head_root(es, http, gateway):
    async with http.head(gateway.make_url("/")) as resp:
        assert resp.status == 200
        assert resp.headers["X-Elastic-Product"] == PRODUCT
        assert await resp.read() == b""
    assert (await es.ping()) is True


@pytest.mark.parametrize("method, path", [
    ("GET", "/_inference?foo=bar"),
    ("GET", "/_inference/x?foo=bar"),
    ("GET", "/_inference/completion/x?foo=bar"),
    ("DELETE", "/_inference/x?foo=bar"),
    ("PUT", "/_inference/completion/x?foo=bar"),
])
async def test_unknown_query_parameter_is_rejected(http, gateway, method, path):
    body = OPENAI_CHAT if method == "PUT" else None
    status, headers, resp, _ = await raw(http, gateway, method, path, body)
    route = path.split("?")[0]
    reason = f"request [{route}] contains unrecognized parameter: [foo]"
    assert status == 400
    assert headers["X-Elastic-Product"] == PRODUCT
    assert resp == {"error": {"root_cause": [{"type": "illegal_argument_exception", "reason": reason}],
                              "type": "illegal_argument_exception", "reason": reason}, "status": 400}


async def test_put_dry_run_parameter_is_unknown_on_put(http, gateway):
    status, _, resp, _ = await raw(http, gateway, "PUT", "/_inference/completion/x?dry_run=true", OPENAI_CHAT)
    assert status == 400
    assert resp["error"]["type"] == "illegal_argument_exception"
    assert resp["error"]["reason"] == "request [/_inference/completion/x] contains unrecognized parameter: [dry_run]"


async def test_generic_params_are_accepted(es):
    await es.inference.put(task_type="completion", inference_id="gen", inference_config=OPENAI_CHAT)
    resp = await es.inference.get(inference_id="gen", error_trace=True, human=True, pretty=True)
    assert resp.body["endpoints"][0]["inference_id"] == "gen"


async def test_bad_boolean_query_value(http, gateway, es):
    await es.inference.put(task_type="completion", inference_id="boolq", inference_config=OPENAI_CHAT)
    status, _, resp, _ = await raw(http, gateway, "DELETE", "/_inference/boolq?dry_run=maybe")
    assert status == 400
    assert resp["error"]["type"] == "illegal_argument_exception"
    assert resp["error"]["reason"] == "Failed to parse value [maybe] as only [true] or [false] are allowed."
    assert (await es.inference.get(inference_id="boolq")).body["endpoints"]


# ================================================================================ concurrency


async def test_concurrent_puts_of_one_id_create_it_once(es):
    configs = [{"service": "openai", "service_settings": {"model_id": f"gpt-{i}", "api_key": "k"}}
               for i in range(20)]
    results = await asyncio.gather(
        *(es.inference.put(task_type="completion", inference_id="racy", inference_config=c) for c in configs),
        return_exceptions=True)
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1
    assert len(losses) == 19
    for err in losses:
        assert isinstance(err, BadRequestError), repr(err)
        assert err.meta.status == 400
        assert err.body["error"]["type"] == "resource_already_exists_exception"
        assert err.body["error"]["reason"] == "Inference endpoint [racy] already exists"
    got = await es.inference.get(inference_id="racy")
    assert got.body == {"endpoints": [wins[0].body]}


async def test_concurrent_puts_of_distinct_ids_all_succeed(es):
    ids = sorted(f"par-{i}" for i in range(20))
    results = await asyncio.gather(
        *(es.inference.put(task_type="completion", inference_id=i, inference_config=OPENAI_CHAT) for i in ids))
    assert sorted(r.body["inference_id"] for r in results) == ids
    listed = user_endpoints((await es.inference.get()).body)
    assert sorted(e["inference_id"] for e in listed) == ids


# ================================================================================ secrets never leave


def _db_bytes(settings) -> bytes:
    db = settings.data_path / "endpoints.db"
    data = db.read_bytes()
    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        data += wal.read_bytes()
    return data


def _plausible(setting: Setting, marker: str | None = None) -> Any:
    if marker is not None:
        return {"k": marker} if setting.kind == "map" else marker
    if setting.choices:
        return setting.choices[0]
    if setting.name in URL_SETTINGS:  # url settings must be http(s) URLs
        return "https://upstream.example/v1/x-value"
    if setting.kind == "object" and setting.fields:
        return {f.name: _plausible(f) for f in setting.fields if f.required}
    return {"str": "x-value", "int": 1, "float": 0.5, "bool": True, "map": {"x": "y"}, "list": ["x-value"],
            "object": {}, "str_or_object": "x-value"}[setting.kind]


def _minimal_body(spec: Service) -> tuple[str, dict[str, Any], list[str]]:
    """A minimal valid PUT for the service's first task (sorted: frozenset order is not stable) whose
    required settings alone pass the service's cross-setting rules."""
    for task in sorted(t.value for t in spec.tasks):
        found = _minimal_for(spec, task)
        if spec.cross_check is None or not spec.cross_check(TaskType(task), dict(found[1]["service_settings"])):
            return found
    raise AssertionError(f"no task of [{spec.name}] is valid with its required settings alone")


def _minimal_for(spec: Service, task: str) -> tuple[str, dict[str, Any], list[str]]:
    not_first = {n for group in spec.one_of for n in group.names[1:]}
    markers = []
    service_settings: dict[str, Any] = {}
    for s in spec.service_settings:
        if not s.applies_to(TaskType(task)):
            continue
        if s.secret:
            if s.name in not_first:
                continue
            marker = f"SECRET-{spec.name}-{s.name}"
            markers.append(marker)
            service_settings[s.name] = _plausible(s, marker)
        elif s.required:
            service_settings[s.name] = _plausible(s)
    task_settings = {s.name: _plausible(s) for s in spec.task_settings
                     if s.required and s.applies_to(TaskType(task))}
    body: dict[str, Any] = {"service": spec.name, "service_settings": service_settings}
    if task_settings:
        body["task_settings"] = task_settings
    return task, body, markers


# services that call providers with credentials (the router calls other endpoints and holds none)
REMOTE_SERVICES = sorted(name for name, spec in SERVICES.items() if not spec.local and not spec.composite)


def test_every_remote_service_has_a_secret():
    # guards the test below against passing vacuously
    assert len(REMOTE_SERVICES) >= 20
    missing = [n for n in REMOTE_SERVICES if not _minimal_body(SERVICES[n])[2]]
    assert missing == []


async def test_get_never_returns_a_secret(http, gateway, gateway_settings):
    puts: dict[str, bytes] = {}
    for name in REMOTE_SERVICES:
        task, body, markers = _minimal_body(SERVICES[name])
        inference_id = f"sec-{name.replace('_', '-')}"
        status, _, resp, content = await raw(http, gateway, "PUT", f"/_inference/{task}/{inference_id}", body)
        assert status == 200, (name, body, resp)
        assert resp["inference_id"] == inference_id and resp["service"] == name and resp["task_type"] == task
        for marker in markers:
            assert marker.encode() not in content, (name, "PUT response")
        puts[inference_id] = content
        status, _, got, got_content = await raw(http, gateway, "GET", f"/_inference/{inference_id}")
        assert status == 200
        assert got == {"endpoints": [resp]}
        for marker in markers:
            assert marker.encode() not in got_content, (name, "GET response")
    status, _, _, all_content = await raw(http, gateway, "GET", "/_inference")
    assert status == 200
    assert b"SECRET-" not in all_content
    db = _db_bytes(gateway_settings)
    for inference_id in puts:
        assert inference_id.encode() in db  # the right file: every endpoint is in it
    assert b"SECRET-" not in db


async def test_put_timeout_must_be_a_time_value(http, gateway):
    status, _, body, _ = await raw(http, gateway, "PUT", "/_inference/completion/t?timeout=abc",
                                   data=json.dumps(OPENAI_CHAT).encode(), headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["type"] == "illegal_argument_exception"
    assert body["error"]["reason"] == ("failed to parse setting [timeout] with value [abc] as a time value: unit is "
                                       "missing or unrecognized")
