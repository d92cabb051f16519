"""`watsonxai` through `/_inference` (elasticsearch client, raw SSE) and `/v1` (openai SDK), in front of a
simulated watsonx.ai whose IAM endpoint issues the bearer tokens its API accepts."""

from __future__ import annotations

import json

import openai
import pytest
from elasticsearch import ApiError, BadRequestError

from adapters.watsonxai import IamTokenCache, WatsonxAIAdapter
from tests.conftest import make_settings
from tests.fakes.watsonx_upstream import FakeWatsonx, fake_vector
from tests.sse import parse_sse

VERSION = "2024-05-02"


@pytest.fixture
async def upstream(serve_fake):
    return await serve_fake(FakeWatsonx())


@pytest.fixture(autouse=True)
def iam(monkeypatch, upstream):
    # Tokens are cached per adapter class: each test gets its own cache. The IAM call reaches the fake through
    # the `upstreams` override below, as the service's own calls would.
    monkeypatch.setattr(WatsonxAIAdapter, "tokens", IamTokenCache())


@pytest.fixture
def gateway_settings(tmp_path, upstream):
    # the API URL is the endpoint's own `url` setting (explicit), so it points at the fake directly; the
    # override below names the service for any URL the adapter builds itself
    return make_settings(tmp_path, upstreams={"watsonxai": upstream.url})


async def put(http, upstream, task: str, inference_id: str, model: str = "ibm/granite-3-8b-instruct",
              api_key: str | None = None, task_settings: dict | None = None):
    body: dict = {"service": "watsonxai", "service_settings": {
        "api_key": api_key or upstream.api_key, "url": upstream.url, "model_id": model,
        "project_id": "63dc4cf1-252f-424b-b52d-5cdd9814987f", "api_version": VERSION}}
    if task_settings:
        body["task_settings"] = task_settings
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert upstream.api_key not in text
        return json.loads(text)


async def stream(http, path: str, body: dict) -> tuple[int, list[tuple[str, str]]]:
    async with http.post(path, json=body) as resp:
        return resp.status, parse_sse((await resp.read()).decode())


# ------------------------------------------------------------------------------ embeddings


async def test_text_embedding_exchanges_the_key_once(es, http, upstream):
    await put(http, upstream, "text_embedding", "wx-emb", model="ibm/slate-30m-english-rtrvr")
    await put(http, upstream, "text_embedding", "wx-emb2", model="ibm/slate-30m-english-rtrvr")
    texts = ["watsonx first", "watsonx second"]
    resp = await es.inference.text_embedding(inference_id="wx-emb", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    for vec, text in zip(vectors, texts):
        assert vec == pytest.approx(fake_vector(text), abs=1e-6)
    assert upstream.requests[-1] == {"inputs": texts, "model_id": "ibm/slate-30m-english-rtrvr",
                                     "project_id": "63dc4cf1-252f-424b-b52d-5cdd9814987f"}
    assert upstream.paths[-1] == "/ml/v1/text/embeddings" and upstream.queries[-1] == {"version": VERSION}
    await es.inference.text_embedding(inference_id="wx-emb", input="again")
    await es.inference.text_embedding(inference_id="wx-emb2", input="same key, other endpoint")
    assert upstream.exchanges == 1


async def test_inputs_beyond_1000_are_split(es, http, upstream):
    await put(http, upstream, "text_embedding", "wx-emb")
    texts = [f"sentence {i}" for i in range(1200)]
    resp = await es.inference.text_embedding(inference_id="wx-emb", input=texts)
    assert len(resp.body["text_embedding"]) == 1200
    assert resp.body["text_embedding"][1100]["embedding"] == pytest.approx(fake_vector(texts[1100]), abs=1e-6)
    assert sorted(len(r["inputs"]) for r in upstream.requests) == [200, 1000]


async def test_input_type_is_rejected(es, http, upstream):
    await put(http, upstream, "text_embedding", "wx-emb")
    with pytest.raises(BadRequestError) as exc:
        await es.inference.text_embedding(inference_id="wx-emb", input="x", input_type="ingest")
    assert "The input_type option is not supported by this service" in exc.value.body["error"]["reason"]
    assert upstream.requests == []


# ------------------------------------------------------------------------------ rerank


async def test_rerank_top_n_documents_and_truncation(es, http, upstream):
    await put(http, upstream, "rerank", "wx-rr", model="cross-encoder/ms-marco-minilm-l-12-v2",
              task_settings={"truncate_input_tokens": 256})
    docs = ["luke", "star wars main character", "leia", "wars"]
    resp = await es.inference.rerank(inference_id="wx-rr", input=docs, query="star wars main character",
                                     top_n=2, return_documents=True)
    assert resp.body["rerank"] == [{"index": 1, "relevance_score": 2.5, "text": "star wars main character"},
                                   {"index": 3, "relevance_score": -0.5, "text": "wars"}]
    sent = upstream.requests[-1]
    assert sent["inputs"] == [{"text": d} for d in docs] and sent["query"] == "star wars main character"
    assert sent["parameters"] == {"truncate_input_tokens": 256, "return_options": {"inputs": True, "top_n": 2}}
    assert upstream.paths[-1] == "/ml/v1/text/rerank"


# ------------------------------------------------------------------------------ completion and chat


async def test_completion(es, http, upstream):
    await put(http, upstream, "completion", "wx-comp")
    resp = await es.inference.completion(inference_id="wx-comp", input="what is watsonx?")
    assert resp.body == {"completion": [{"result": "WHAT IS WATSONX?"}]}
    sent = upstream.requests[-1]
    assert sent["messages"] == [{"role": "user", "content": "what is watsonx?"}]
    assert sent["model_id"] == "ibm/granite-3-8b-instruct" and "stream" not in sent
    assert upstream.paths[-1] == "/ml/v1/text/chat"


async def test_chat_completion_tool_round_trip(es, http, upstream):
    await put(http, upstream, "chat_completion", "wx-chat", model="tool-model")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    headers = {"content-type": "application/json", "accept": "application/json"}
    resp = await es.perform_request("POST", "/_inference/chat_completion/wx-chat",
                                    body={"messages": messages, "tools": tools, "tool_choice": "auto"},
                                    headers=headers)
    choice = resp.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    sent = upstream.requests[-1]
    assert sent["tools"] == tools and sent["tool_choice_option"] == "auto" and "tool_choice" not in sent
    messages += [{"role": "assistant", "tool_calls": [call]},
                 {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    resp = await es.perform_request("POST", "/_inference/chat_completion/wx-chat",
                                    body={"messages": messages, "tools": tools}, headers=headers)
    assert resp.body["choices"][0]["message"]["content"] == "It is sunny."
    assert resp.body["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    assert upstream.requests[-1]["messages"][2] == {"role": "tool", "content": "sunny", "tool_call_id": call["id"]}


async def test_completion_stream_ends_without_done_from_watsonx(http, upstream):
    await put(http, upstream, "completion", "wx-comp")
    status, events = await stream(http, "/_inference/completion/wx-comp/_stream", {"input": "abcdefgh"})
    assert status == 200
    assert events[-1] == ("message", "[DONE]")
    deltas = [json.loads(d)["completion"][0]["delta"] for _, d in events[:-1]]
    assert "".join(deltas) == "ABCDEFGH"
    assert upstream.paths[-1] == "/ml/v1/text/chat_stream"


async def test_chat_stream_tool_calls_and_usage(http, upstream):
    await put(http, upstream, "chat_completion", "wx-chat", model="tool-model")
    status, events = await stream(http, "/_inference/chat_completion/wx-chat/_stream",
                                  {"messages": [{"role": "user", "content": "weather?"}], "max_completion_tokens": 40})
    assert status == 200 and events[-1] == ("message", "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert calls[0]["id"] == "chatcmpl-tool-1" and calls[0]["function"]["name"] == "get_weather"
    assert all("name" not in tc.get("function", {}) for tc in calls[1:])
    assert json.loads("".join(tc["function"].get("arguments", "") for tc in calls)) == {"city": "Paris"}
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    assert sum(1 for c in chunks if c.get("usage")) == 1
    assert upstream.requests[-1]["max_tokens"] == 40


async def test_cut_stream_is_an_in_band_error(http, upstream):
    await put(http, upstream, "completion", "wx-comp", model="cut-stream")
    status, events = await stream(http, "/_inference/completion/wx-comp/_stream", {"input": "abcdefgh"})
    assert status == 200
    assert events[-1][0] == "error" and ("message", "[DONE]") not in events
    assert json.loads(events[-1][1])["status"] == 502


async def test_in_stream_error_event(http, upstream):
    await put(http, upstream, "completion", "wx-comp", model="error-stream")
    status, events = await stream(http, "/_inference/completion/wx-comp/_stream", {"input": "abcdefgh"})
    assert events[-1][0] == "error"
    assert "Model crashed" in events[-1][1]


# ------------------------------------------------------------------------------ auth and faults


async def test_wrong_api_key_fails_at_iam_with_the_es_message(es, http, upstream):
    await put(http, upstream, "text_embedding", "wx-emb", api_key="not-the-key")
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="wx-emb", input="x")
    assert exc.value.meta.status == 400
    assert exc.value.body["error"]["reason"] == (
        "Received a bad request status code for request to generate Bearer Token from inference entity id [wx-emb] "
        "status [400]. Error message: [Provided API key could not be found.]")
    assert "not-the-key" not in json.dumps(exc.value.body)
    assert upstream.requests == []


async def test_revoked_token_is_401_then_a_fresh_token_is_fetched(es, http, upstream):
    await put(http, upstream, "text_embedding", "wx-emb")
    await es.inference.text_embedding(inference_id="wx-emb", input="x")
    upstream.revoke_tokens()
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="wx-emb", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [wx-emb] status [401]. "
        "Error message: [Failed to authenticate the request due to invalid token: Failed to parse and verify token]")
    resp = await es.inference.text_embedding(inference_id="wx-emb", input="x")
    assert len(resp.body["text_embedding"]) == 1 and upstream.exchanges == 2


async def test_429_is_retried(es, http, upstream):
    await put(http, upstream, "text_embedding", "wx-emb")
    upstream.fail_next(429, "rate_limit_reached", "Rate limit reached", headers={"Retry-After": "0.1"})
    resp = await es.inference.text_embedding(inference_id="wx-emb", input="x")
    assert len(resp.body["text_embedding"]) == 1
    assert len(upstream.requests) == 2


async def test_iam_5xx_is_retried(es, http, upstream):
    await put(http, upstream, "text_embedding", "wx-emb")
    upstream.iam_faults.append(503)
    resp = await es.inference.text_embedding(inference_id="wx-emb", input="x")
    assert len(resp.body["text_embedding"]) == 1 and upstream.exchanges == 1


async def test_watsonx_400_error_message(http, upstream):
    await put(http, upstream, "completion", "wx-comp")
    upstream.fail_next(400, "model_not_supported", "Model 'x' is not supported")
    async with http.post("/_inference/completion/wx-comp", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 400
    assert body["error"]["reason"] == ("Received a bad request status code for request from inference entity id "
                                       "[wx-comp] status [400]. Error message: [Model 'x' is not supported]")


# ------------------------------------------------------------------------------ the openai SDK on /v1


async def test_openai_sdk_embeddings_and_chat(client, http, upstream):
    await put(http, upstream, "text_embedding", "wx-emb")
    await put(http, upstream, "chat_completion", "wx-chat")
    emb = await client.embeddings.create(model="wx-emb", input=["one", "two"], encoding_format="float")
    assert emb.data[1].embedding == pytest.approx(fake_vector("two"), abs=1e-6)
    chat = await client.chat.completions.create(model="wx-chat", messages=[{"role": "user", "content": "hi there"}],
                                                temperature=0.2)
    assert chat.choices[0].message.content == "HI THERE"
    assert upstream.requests[-1]["temperature"] == 0.2
    pieces = []
    async with await client.chat.completions.create(model="wx-chat", stream=True,
                                                    messages=[{"role": "user", "content": "stream me"}]) as events:
        async for chunk in events:
            pieces.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(pieces) == "STREAM ME"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="wx-chat", user="u-1",
                                             messages=[{"role": "user", "content": "hi"}])
