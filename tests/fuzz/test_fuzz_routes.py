"""Property-based tests: generated paths, query strings, headers and bodies against every route of
both surfaces, on one live gateway (see harness.py).

For every exchange (`ThreadedGateway.exchange`): never a 5xx, never a traceback in a body, every
error in its surface's format (the ES envelope or one of ES's simple forms on `/_inference` and
elsewhere, an OpenAI error on `/v1`), and `GET /_inference` unchanged after every rejected write
(and after every read). An accepted write is undone before the next example.

Runs are deterministic (`derandomize=True`, no example database) and bounded: 60 examples per
property by default. FUZZ_EXAMPLES=2000 FUZZ_RANDOM=1 explores further, with fresh seeds.
"""

from __future__ import annotations

import json
import os
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import strategies as S
from .harness import Req, ThreadedGateway

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("FUZZ_RANDOM"), print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

METHODS = st.sampled_from(["GET", "PUT", "POST", "DELETE"])


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    with ThreadedGateway(tmp_path_factory.mktemp("fuzz")) as gateway:
        yield gateway


def q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


# ---------------------------------------------------------------------- anything, anywhere


@fuzz
@given(data=st.data())
def test_inference_routes_survive_anything(gw, data):
    method = data.draw(METHODS, "method")
    tail = data.draw(S.segments(max_size=4), "path")
    path = "/_inference" + tail + data.draw(S.query_strings(), "query")
    req = Req(method, path, data.draw(S.ANY_BODY, "body"), data.draw(S.headers(), "headers"))
    gw.exchange(req)


@fuzz
@given(data=st.data())
def test_v1_routes_survive_anything(gw, data):
    method = data.draw(METHODS, "method")
    route = data.draw(st.sampled_from(["/v1/models", "/v1/embeddings", "/v1/chat/completions", "/v1/completions",
                                       "/v1/rerank", "/v2/rerank", "/rerank", "/v1", "/v1/models/"]), "route")
    path = route + data.draw(S.segments(max_size=2), "tail") + data.draw(S.query_strings(), "query")
    req = Req(method, path, data.draw(S.ANY_BODY, "body"), data.draw(S.headers(), "headers"))
    gw.exchange(req)


@fuzz
@given(data=st.data())
def test_any_path_survives_anything(gw, data):
    method = data.draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]), "method")
    path = (data.draw(S.segments(min_size=1, max_size=5), "path") or "/") + data.draw(S.query_strings(), "query")
    req = Req(method, path, data.draw(S.ANY_BODY, "body"), data.draw(S.headers(json_body=False), "headers"))
    gw.exchange(req)


# ---------------------------------------------------------------------- structured writes


@fuzz
@given(data=st.data())
def test_create_with_catalogue_shaped_configs(gw, data):
    url_task, body = data.draw(S.endpoint_configs(gw.stub_url), "config")
    inference_id = data.draw(S.ID_LIKE | S.IDS, "inference_id")
    path = f"/_inference/{q(url_task)}/{q(inference_id)}" if url_task else f"/_inference/{q(inference_id)}"
    path += data.draw(st.sampled_from(["", "?timeout=30s", "?timeout=bogus", "?bogus=1"]), "query")
    reply = gw.exchange(Req("PUT", path, json.dumps(body).encode(), {"Content-Type": "application/json"}))
    if reply.status == 200:
        created = reply.json()
        assert created["inference_id"] == inference_id
        assert "api_key" not in json.dumps(created.get("service_settings", {}))


@fuzz
@given(data=st.data())
def test_update_with_catalogue_shaped_bodies(gw, data):
    inference_id = data.draw(st.sampled_from(S.FIXTURE_IDS + ["missing"]), "inference_id")
    task, fixture = gw.fixtures.get(inference_id, ("text_embedding", {"service": "openai"}))
    body = data.draw(S.update_bodies(fixture["service"], gw.stub_url), "body")
    form = data.draw(st.sampled_from(["id", "task", "other-task"]), "form")
    if form == "id":
        path = f"/_inference/{q(inference_id)}/_update"
    else:
        url_task = task if form == "task" else data.draw(S.TASK_WORDS)
        path = f"/_inference/{q(url_task)}/{q(inference_id)}/_update"
    gw.exchange(Req("PUT", path, json.dumps(body).encode(), {"Content-Type": "application/json"}))


@fuzz
@given(data=st.data())
def test_delete_with_generated_parameters(gw, data):
    inference_id = data.draw(S.IDS, "inference_id")
    task = data.draw(st.none() | S.TASK_WORDS, "task")
    path = f"/_inference/{q(task)}/{q(inference_id)}" if task else f"/_inference/{q(inference_id)}"
    gw.exchange(Req("DELETE", path + data.draw(S.query_strings(), "query"), data.draw(S.ANY_BODY, "body")))


# ---------------------------------------------------------------------- structured performs


@fuzz
@given(data=st.data())
def test_es_perform_with_shaped_bodies(gw, data):
    inference_id = data.draw(st.sampled_from(S.FIXTURE_IDS), "inference_id")
    task, fixture = gw.fixtures[inference_id]
    chat = task == "chat_completion"
    bent = S.ES_CHAT_BODY if chat else S.es_inference_body(fixture["service"], gw.stub_url)
    body = data.draw(st.one_of(S.es_clean_body(task), bent), "body")
    form = data.draw(st.sampled_from(["id", "task", "stream", "task-stream", "wrong-task"]), "form")
    path = {"id": f"/_inference/{inference_id}", "task": f"/_inference/{task}/{inference_id}",
            "stream": f"/_inference/{inference_id}/_stream",
            "task-stream": f"/_inference/{task}/{inference_id}/_stream",
            "wrong-task": f"/_inference/{q(data.draw(S.TASK_WORDS))}/{inference_id}"}[form]
    path += data.draw(st.sampled_from(["", "?timeout=5s", "?timeout=0s", "?timeout=x", "?pretty", "?bogus"]),
                      "query")
    gw.exchange(Req("POST", path, json.dumps(body).encode(), data.draw(S.headers(), "headers")))


@fuzz
@given(data=st.data())
def test_v1_with_shaped_bodies(gw, data):
    route, strategy = data.draw(st.sampled_from([
        ("/v1/chat/completions", S.V1_CHAT), ("/v1/completions", S.V1_COMPLETIONS),
        ("/v1/embeddings", S.V1_EMBEDDINGS), ("/v1/rerank", S.V1_RERANK), ("/rerank", S.V1_RERANK),
    ]), "route")
    body = data.draw(strategy, "body")
    gw.exchange(Req("POST", route, json.dumps(body).encode(), data.draw(S.headers(), "headers")))


def test_the_harness_reaches_the_stub(gw):
    """Sanity: valid requests pass validation and reach the stub (its 400, its answers, its stream)."""
    before = gw.stub_calls
    reply = gw.exchange(Req("POST", "/_inference/completion/anth-comp", b'{"input": "x"}',
                            {"Content-Type": "application/json"}))
    assert reply.status == 400, reply
    assert reply.json()["error"]["reason"].startswith("Received a bad request status code")
    reply = gw.exchange(Req("POST", "/_inference/emb", b'{"input": ["x", "y"]}', {"Content-Type": "application/json"}))
    assert reply.status == 200 and len(reply.json()["text_embedding"]) == 2
    reply = gw.exchange(Req("POST", "/v1/chat/completions", json.dumps(
        {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()))
    assert reply.status == 200 and reply.body.endswith(b"data: [DONE]\n\n")
    reply = gw.exchange(Req("POST", "/_inference/rerank/rr", b'{"input": ["x", "y"], "query": "q"}'))
    assert reply.status == 200 and [r["index"] for r in reply.json()["rerank"]] == [0, 1]
    assert gw.stub_calls == before + 4
