"""Performing inference through `/_inference` in front of a simulated OpenAI-format upstream."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from elasticsearch import ApiError, BadRequestError

from tests.fakes.openai_upstream import fake_vector
from tests.sse import parse_sse



async def put(http, task: str, inference_id: str, service_settings: dict, service: str = "openai", **extra):
    body = {"service": service, "service_settings": service_settings, **extra}
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def openai_settings(upstream, path: str, model: str = "gpt-test", **kw) -> dict:
    return {"api_key": upstream.api_key, "model_id": model, "url": f"{upstream.url}{path}", **kw}


# ------------------------------------------------------------------------------ text_embedding


async def test_text_embedding_with_the_es_client(es, http, upstream):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings", "text-embedding-3-small"))
    texts = ["The sky above the port", "was the color of television", "tuned to a dead channel"]
    resp = await es.inference.text_embedding(inference_id="emb", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    # the fake answers in reverse order: the gateway must restore input order by `index`
    for vec, text in zip(vectors, texts):
        assert vec == pytest.approx(fake_vector(text), abs=1e-6)
    assert upstream.requests[-1] == {"input": texts, "model": "text-embedding-3-small"}


async def test_embedding_inputs_beyond_the_batch_limit_are_split_and_reassembled(es, http, upstream):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings",
                                                             rate_limit={"requests_per_minute": 60000}))
    texts = [f"sentence number {i}" for i in range(2048 + 300)]
    resp = await es.inference.inference(inference_id="emb", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    assert len(vectors) == len(texts)
    assert vectors[0] == pytest.approx(fake_vector(texts[0]), abs=1e-6)
    assert vectors[2100] == pytest.approx(fake_vector(texts[2100]), abs=1e-6)
    assert sorted(len(r["input"]) for r in upstream.requests) == [300, 2048]


async def test_dimensions_setting_is_sent_and_input_type_rejected(es, http, upstream):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings", dimensions=4))
    resp = await es.inference.text_embedding(inference_id="emb", input="hello")
    assert len(resp.body["text_embedding"][0]["embedding"]) == 4
    assert upstream.requests[-1]["dimensions"] == 4
    with pytest.raises(BadRequestError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="hello", input_type="search")
    assert exc.value.body["error"]["reason"] == ("Validation Failed: 1: Invalid input_type [search]. "
                                                 "The input_type option is not supported by this service;")


# ------------------------------------------------------------------------------ completion, chat, rerank


async def test_completion_with_the_es_client(es, http, upstream):
    await put(http, "completion", "comp", openai_settings(upstream, "/v1/chat/completions"))
    resp = await es.inference.completion(inference_id="comp", input="what is elastic?")
    assert resp.body == {"completion": [{"result": "WHAT IS ELASTIC?"}]}
    sent = upstream.requests[-1]
    assert sent["messages"] == [{"role": "user", "content": "what is elastic?"}] and "n" not in sent


async def test_non_streaming_chat_completion_returns_an_openai_object(es, http, upstream):
    await put(http, "chat_completion", "chat", openai_settings(upstream, "/v1/chat/completions", "tool-model"))
    body = {"messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat", body=body,
                                    headers={"content-type": "application/json", "accept": "application/json"})
    assert resp.body["object"] == "chat.completion"
    choice = resp.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert resp.body["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert upstream.requests[-1]["tools"] == body["tools"]


async def test_rerank_with_the_es_client(es, http, upstream):
    await put(http, "rerank", "rr", {"api_key": upstream.api_key, "url": f"{upstream.url}/v1/rerank",
                                     "model_id": "reranker"}, service="openshift_ai")
    docs = ["luke", "star wars main character", "leia", "wars"]
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="star wars main character",
                                     top_n=2, return_documents=True)
    ranked = resp.body["rerank"]
    assert [r["index"] for r in ranked] == [1, 3]
    assert ranked[0] == {"index": 1, "relevance_score": 1.0, "text": "star wars main character"}
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="leia")
    assert all("text" not in r for r in resp.body["rerank"]) and len(resp.body["rerank"]) == 4


# ------------------------------------------------------------------------------ request validation


@pytest.mark.parametrize("body, reason", [
    ({"input": None}, "Validation Failed: 1: Field [input] cannot be null;"),
    ({"input": []}, "Validation Failed: 1: Field [input] cannot be an empty array;"),
    ({"input": "x", "top_n": 2}, "Validation Failed: 1: Field [top_n] cannot be specified for task type "
                                 "[text_embedding];"),
])
async def test_inference_body_validation(http, upstream, body, reason):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings"))
    async with http.post("/_inference/text_embedding/emb", json=body) as resp:
        assert resp.status == 400
        err = (await resp.json())["error"]
    assert err["type"] == "action_request_validation_exception" and err["reason"] == reason


async def test_unknown_field_and_task_mismatch(http, upstream):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings"))
    async with http.post("/_inference/emb", data=b'{"input":"x","inptu":1}',
                         headers={"Content-Type": "application/json"}) as resp:
        err = (await resp.json())["error"]
    assert resp.status == 400 and err["type"] == "x_content_parse_exception"
    assert err["reason"] == "[1:14] [cluster:internal/xpack/inference] unknown field [inptu] did you mean [input]?"
    async with http.post("/_inference/completion/emb", json={"input": "x"}) as resp:
        err = (await resp.json())["error"]
    assert resp.status == 400
    assert err["reason"] == ("Incompatible task_type, the requested type [completion] does not match the model "
                             "type [text_embedding]")


# ------------------------------------------------------------------------------ streaming


async def test_completion_stream_frames_exactly(http, upstream):
    await put(http, "completion", "comp", openai_settings(upstream, "/v1/chat/completions"))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "abcde"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["X-Elastic-Product"] == "Elasticsearch"
        raw = (await resp.read()).decode()
    events = parse_sse(raw)
    assert all(e == "message" for e, _ in events)
    assert events[-1] == ("message", "[DONE]")
    deltas = [json.loads(d)["completion"][0]["delta"] for _, d in events[:-1]]
    assert "".join(deltas) == "<0>A<1>B<2>C<3>D<4>E"
    assert events[0][1] == '{"completion":[{"delta":"<0>A"}]}'


async def test_chat_stream_tool_calls_and_usage(http, upstream):
    await put(http, "chat_completion", "chat", openai_settings(upstream, "/v1/chat/completions", "tool-model"))
    body = {"messages": [{"role": "user", "content": "weather?"}], "max_completion_tokens": 50}
    async with http.post("/_inference/chat_completion/chat/_stream", json=body) as resp:
        assert resp.status == 200
        events = parse_sse((await resp.read()).decode())
    assert events[-1] == ("message", "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all(list(c)[:2] == ["id", "choices"] and c["object"] == "chat.completion.chunk" for c in chunks)
    args = "".join(tc["function"].get("arguments", "") for c in chunks for ch in c["choices"]
                   for tc in ch["delta"].get("tool_calls", []))
    assert json.loads(args) == {"city": "Paris"}
    first_call = next(tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", []))
    assert first_call == {"index": 0, "id": "call_1", "function": {"arguments": "", "name": "get_weather"},
                          "type": "function"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5,
                                                                   "total_tokens": 8}
    assert upstream.requests[-1]["max_completion_tokens"] == 50
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}


async def test_stream_route_without_task_uses_the_endpoint_task(http, upstream):
    await put(http, "chat_completion", "chat", openai_settings(upstream, "/v1/chat/completions"))
    async with http.post("/_inference/chat/_stream", json={"messages": [{"role": "user", "content": "hi"}]}) as resp:
        events = parse_sse((await resp.read()).decode())
    assert json.loads(events[1][1])["choices"][0]["delta"]["content"].startswith("<0>")


async def test_streaming_not_allowed_is_405_error_event(http, upstream):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings"))
    async with http.post("/_inference/emb/_stream", json={"input": "x"}) as resp:
        assert resp.status == 405
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse((await resp.read()).decode())
    assert len(events) == 1 and events[0][0] == "error"
    err = json.loads(events[0][1])
    assert err["status"] == 405
    assert err["error"]["reason"] == ("Streaming is not allowed for service [openai] and task [text_embedding]. "
                                      "Supported tasks: [chat_completion, completion]")


async def test_error_before_the_stream_is_a_status_and_one_error_event(http, upstream):
    await put(http, "chat_completion", "chat", openai_settings(upstream, "/v1/chat/completions"))
    upstream.fail_next(403, "Organization is not authorized")
    async with http.post("/_inference/chat_completion/chat/_stream",
                         json={"messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.status == 403
        events = parse_sse((await resp.read()).decode())
    assert [e for e, _ in events] == ["error"]
    assert json.loads(events[0][1]) == {"error": {
        "code": "forbidden", "message": "Received a permission denied error status code for request from inference "
                                        "entity id [chat] status [403]. Error message: [Organization is not "
                                        "authorized]", "type": "invalid_request_error"}}


async def test_stream_cut_by_the_upstream_is_an_in_band_error(http, upstream):
    await put(http, "completion", "comp", openai_settings(upstream, "/v1/chat/completions", "cut-stream"))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "abcdef"}) as resp:
        assert resp.status == 200
        events = parse_sse((await resp.read()).decode())
    assert [e for e, _ in events] == ["message", "message", "error"]
    assert ("message", "[DONE]") not in events
    assert json.loads(events[-1][1])["status"] == 502


# ------------------------------------------------------------------------------ upstream faults


async def test_upstream_401_keeps_its_status_and_es_message(es, http, upstream):
    settings = openai_settings(upstream, "/v1/embeddings")
    settings["api_key"] = "sk-wrong"
    await put(http, "text_embedding", "emb", settings)
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"] == {
        "root_cause": [{"type": "status_exception", "reason": exc.value.body["error"]["reason"]}],
        "type": "status_exception",
        "reason": "Received an authentication error status code for request from inference entity id [emb] status "
                  "[401]. Error message: [Incorrect API key provided]"}
    assert "sk-wrong" not in json.dumps(exc.value.body)


async def test_429_with_retry_after_is_retried(es, http, upstream):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings"))
    upstream.fail_next(429, "slow down", headers={"Retry-After": "0.3"})
    started = time.monotonic()
    resp = await es.inference.text_embedding(inference_id="emb", input="x")
    assert time.monotonic() - started >= 0.3
    assert len(resp.body["text_embedding"]) == 1
    assert len(upstream.requests) == 2


async def test_persistent_500_becomes_400_after_retries_within_the_timeout(http, upstream):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings"))
    upstream.fail_next(500, "internal", times=100)
    async with http.post("/_inference/text_embedding/emb?timeout=1s", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 400
    assert body["error"]["reason"] == ("Received a server error status code for request from inference entity id "
                                       "[emb] status [500]. Error message: [internal]")
    assert 2 <= len(upstream.requests) < 20


async def test_400_is_not_retried(http, upstream):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings"))
    upstream.fail_next(400, "bad input", times=5)
    async with http.post("/_inference/text_embedding/emb", json={"input": "x"}) as resp:
        assert resp.status == 400
    assert len(upstream.requests) == 1


async def test_malformed_upstream_json_is_a_clean_502(http, upstream):
    await put(http, "completion", "comp", openai_settings(upstream, "/v1/chat/completions", "malformed"))
    async with http.post("/_inference/completion/comp", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 502
    assert body["error"]["reason"] == "The upstream service sent a malformed response"


async def test_unreachable_upstream_is_502(http):
    await put(http, "text_embedding", "emb", {"api_key": "k", "model_id": "m", "url": "http://127.0.0.1:9/x"})
    async with http.post("/_inference/text_embedding/emb?timeout=1s", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 502
    assert "Failed to reach the upstream service" in body["error"]["reason"]


async def test_rate_limit_answers_429_when_no_slot_fits_the_timeout(http, upstream):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings",
                                                             rate_limit={"requests_per_minute": 1}))
    async with http.post("/_inference/text_embedding/emb?timeout=2s", json={"input": "x"}) as resp:
        assert resp.status == 200
    async with http.post("/_inference/text_embedding/emb?timeout=2s", json={"input": "x"}) as resp:
        body = await resp.json()
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) > 50
    assert body["error"]["reason"] == "Request timed out after [2s] for inference id [emb]"
    assert len(upstream.requests) == 1


# ------------------------------------------------------------------------------ disconnects


async def test_client_disconnect_mid_stream_closes_the_upstream(gateway, http, upstream):
    await put(http, "completion", "comp", openai_settings(upstream, "/v1/chat/completions", "slow-stream"))
    upstream.stream_events = 50
    resp = await http.post("/_inference/completion/comp/_stream", json={"input": "abc"})
    assert resp.status == 200
    await resp.content.readuntil(b"\n\n")
    resp.close()  # the client goes away mid-answer
    await asyncio.wait_for(upstream.closed.wait(), 1.0)
    assert upstream.disconnects == 1


async def test_client_disconnect_during_a_non_streaming_call_cancels_the_upstream(http, upstream):
    await put(http, "completion", "comp", openai_settings(upstream, "/v1/chat/completions", "slow"))
    with pytest.raises(asyncio.TimeoutError):
        async with http.post("/_inference/completion/comp", json={"input": "abc"},
                             timeout=aiohttp.ClientTimeout(total=0.3)) as resp:
            await resp.read()
    await asyncio.wait_for(upstream.closed.wait(), 1.0)
    assert upstream.disconnects == 1


async def test_an_upstream_echoing_the_key_never_reaches_the_client(es, http, upstream):
    await put(http, "text_embedding", "emb", openai_settings(upstream, "/v1/embeddings"))
    upstream.fail_next(400, f"bad key {upstream.api_key} given")
    with pytest.raises(BadRequestError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert upstream.api_key not in json.dumps(exc.value.body)
    assert "bad key [redacted] given" in exc.value.body["error"]["reason"]


async def test_every_chat_chunk_choice_carries_its_index(http, upstream):
    """ES `ChatCompletionChunk.Choice.toXContentChunked` writes `index` always, 0 included."""
    await put(http, "chat_completion", "chat", openai_settings(upstream, "/v1/chat/completions"))
    async with http.post("/_inference/chat_completion/chat/_stream",
                         json={"messages": [{"role": "user", "content": "hi"}]}) as resp:
        events = parse_sse((await resp.read()).decode())
    choices = [ch for _, d in events[:-1] for ch in json.loads(d)["choices"]]
    assert choices and all(ch["index"] == 0 and list(ch)[-1] == "index" for ch in choices)


@pytest.mark.parametrize("path, body, reason", [
    ("/_inference/chat_completion/chat/_stream?nope=1", {"messages": [{"role": "user", "content": "hi"}]},
     "request [/_inference/chat_completion/chat/_stream] contains unrecognized parameter: [nope]"),
    ("/_inference/chat_completion/chat/_stream", {"messages": "not a list"},
     "[UnifiedCompletionRequest] messages doesn't support values of type: VALUE_STRING"),
    ("/_inference/chat_completion/chat/_stream", {"messages": [], "unknown": 1},
     "[UnifiedCompletionRequest] unknown field [unknown]"),
    ("/_inference/chat_completion/chat/_stream?timeout=soon", {"messages": [{"role": "user", "content": "hi"}]},
     "failed to parse setting [timeout] with value [soon] as a time value: unit is missing or unrecognized"),
])
async def test_errors_found_while_parsing_a_stream_request_are_json(http, upstream, path, body, reason):
    """ES parses parameters and body in the REST handler, before the action whose listener frames failures as
    SSE (`ServerSentEventsRestActionListener.onFailure`): those errors are the JSON envelope."""
    await put(http, "chat_completion", "chat", openai_settings(upstream, "/v1/chat/completions"))
    async with http.post(path, json=body) as resp:
        assert resp.status == 400
        assert resp.headers["Content-Type"].startswith("application/json")
        error = (await resp.json())["error"]
    assert error["reason"].endswith(reason)
    assert "root_cause" in error  # the ES envelope, not the chat-style one
    assert upstream.requests == []
