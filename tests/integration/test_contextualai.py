"""`contextualai` rerank through `/_inference` (official `elasticsearch` client) and `/v1/rerank`, in front of
a simulated Contextual AI API reached through the gateway's origin override."""

from __future__ import annotations

import pytest
from elasticsearch import ApiError

from tests.conftest import make_settings
from tests.fakes.contextualai_upstream import FakeContextual

MODEL = "ctxl-rerank-v2-instruct-multilingual"
DOCS = ["luke", "star wars main character", "leia", "wars"]


@pytest.fixture
async def ctxl(serve_fake):
    return await serve_fake(FakeContextual())


@pytest.fixture
def gateway_settings(tmp_path, ctxl):
    return make_settings(tmp_path, upstreams={"contextualai": ctxl.url})


async def put(es, inference_id: str, api_key: str, **extra) -> dict:
    resp = await es.inference.put_contextualai(task_type="rerank", contextualai_inference_id=inference_id,
                                               service="contextualai",
                                               service_settings={"api_key": api_key, "model_id": MODEL}, **extra)
    return resp.body


async def test_rerank_with_instruction_and_documents(es, ctxl):
    await put(es, "rr", ctxl.api_key, task_settings={"instruction": "prefer leia", "top_k": 3})
    resp = await es.inference.rerank(inference_id="rr", input=DOCS, query="star wars", return_documents=True)
    # the instruction's bonus lifts "leia" above "luke"; texts come from the request, Contextual sends none
    assert resp.body["rerank"] == [{"index": 1, "relevance_score": 1.0, "text": "star wars main character"},
                                   {"index": 2, "relevance_score": 0.5, "text": "leia"},
                                   {"index": 3, "relevance_score": 0.5, "text": "wars"}]
    assert ctxl.requests[-1] == {"query": "star wars", "documents": DOCS, "model": MODEL, "top_n": 3,
                                 "instruction": "prefer leia"}


async def test_request_top_n_and_task_settings_override(es, ctxl):
    await put(es, "rr", ctxl.api_key, task_settings={"top_k": 3})
    resp = await es.inference.rerank(inference_id="rr", input=DOCS, query="leia", top_n=1,
                                     task_settings={"instruction": "prefer wars"})
    assert resp.body["rerank"] == [{"index": 2, "relevance_score": 1.0}]
    assert ctxl.requests[-1]["top_n"] == 1 and ctxl.requests[-1]["instruction"] == "prefer wars"


async def test_upstream_401_and_429(es, ctxl):
    await put(es, "bad", "wrong-key")
    with pytest.raises(ApiError) as exc:
        await es.inference.rerank(inference_id="bad", input=DOCS, query="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [bad] status [401]. "
        "Error message: [Invalid authentication credentials]")
    await put(es, "rr", ctxl.api_key)
    ctxl.rate_limit_next("0.2")
    resp = await es.inference.rerank(inference_id="rr", input=DOCS, query="leia")
    assert resp.body["rerank"][0]["index"] == 2
    assert len(ctxl.requests) == 3  # one 401, one 429, one success


async def test_v1_rerank(es, http, ctxl):
    await put(es, "rr", ctxl.api_key)
    async with http.post("/v1/rerank", json={"model": "rr", "query": "wars", "documents": DOCS, "top_n": 2,
                                             "return_documents": True}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert [(r["index"], r["document"]["text"]) for r in body["results"]] == [(1, "star wars main character"),
                                                                             (3, "wars")]
