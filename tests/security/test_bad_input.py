"""Bodies nested deep enough to exhaust a recursive parser, numbers out of range and overlong ids
are clear 400s in the surface's own format, with nothing in the log but the access line."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from tests.faults.helpers import assert_es_envelope, assert_openai_error


@pytest.fixture
async def http(gateway):
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/")),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        body = {"service": "openai", "service_settings": {"api_key": "sk-bad-input", "model_id": "m",
                                                          "url": "http://127.0.0.1:9/v1/embeddings"}}
        async with session.put("/_inference/text_embedding/emb", json=body) as resp:
            assert resp.status == 200
        yield session


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


ES_ROUTES = [("PUT", "/_inference/text_embedding/deep"), ("POST", "/_inference/text_embedding/emb"),
             ("PUT", "/_inference/emb/_update"), ("POST", "/_inference/completion/emb/_stream")]
OPENAI_ROUTES = [("POST", "/v1/embeddings"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
                 ("POST", "/v1/rerank")]


@pytest.mark.parametrize("depth", [101, 1_000, 100_000])
async def test_deep_nesting_is_a_400_in_the_surface_format(http, caplog, depth):
    caplog.set_level(logging.INFO)
    body = nested(depth)
    for method, path in ES_ROUTES:
        async with http.request(method, path, data=body, headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400, (path, await resp.text())
            err = assert_es_envelope(await resp.json(), 400)
            assert err["type"] == "x_content_parse_exception"
            assert err["reason"] == f"Document nesting depth ({depth}) exceeds the maximum allowed (100)"
    for method, path in OPENAI_ROUTES:
        async with http.request(method, path, data=body, headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400, (path, await resp.text())
            assert_openai_error(await resp.json())["type"] == "invalid_request_error"
    assert "RecursionError" not in caplog.text and "Traceback" not in caplog.text


async def test_nesting_within_the_limit_and_brackets_in_strings_are_fine(http):
    # 100 levels of arrays inside one input string's neighbour, and brackets inside strings that do not nest
    body = {"model": "emb", "input": "[" * 5000 + "{" * 5000, "user": "x"}
    async with http.post("/v1/embeddings", json=body) as resp:
        assert resp.status != 400 or "nesting" not in await resp.text()
    task_settings: dict = {}
    for _ in range(98):
        task_settings = {"x": task_settings}
    async with http.post("/_inference/text_embedding/emb", json={"input": "hi", "task_settings": task_settings}) \
            as resp:
        assert "nesting depth" not in await resp.text()


@pytest.mark.parametrize("dimensions", [-1, 0, 10**25, 2**31])
async def test_dimensions_out_of_range_are_refused(http, dimensions):
    # a JSON integer: 1e25 written as a float is refused by its type already
    raw = b'{"model": "emb", "input": "hi", "dimensions": %d}' % dimensions
    async with http.post("/v1/embeddings", data=raw, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        err = assert_openai_error(await resp.json())
    assert err["type"] == "invalid_request_error" and err["param"] == "dimensions", err


async def test_inference_ids_longer_than_elasticsearch_stores_are_refused(http):
    body = {"service": "openai", "service_settings": {"api_key": "sk-bad-input", "model_id": "m"}}
    # ES keeps an endpoint as document `model_<id>`, and a document id has at most 512 bytes
    longest = "a" * (512 - len("model_"))
    async with http.put(f"/_inference/text_embedding/{longest}", json=body) as resp:
        assert resp.status == 200, await resp.text()
    for too_long in ("b" * (len(longest) + 1), "c" * 8000):
        async with http.put(f"/_inference/text_embedding/{too_long}", json=body) as resp:
            assert resp.status == 400
            err = assert_es_envelope(await resp.json(), 400)
        n = len(too_long) + len("model_")
        message = f"id [model_{too_long}] is too long, must be no longer than 512 bytes but was: {n}"
        assert err["type"] == "action_request_validation_exception"
        assert err["reason"] == f"Validation Failed: 1: {message};2: {message};"
        async with http.get(f"/_inference/{too_long}") as resp:
            assert resp.status == 404
