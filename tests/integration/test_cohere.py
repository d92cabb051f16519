"""`/_inference` (and the OpenAI-compatible `/v1`) in front of a simulated Cohere v2 API."""

from __future__ import annotations

import json

import openai
import pytest
from elasticsearch import ApiError

from tests.conftest import make_settings
from tests.fakes.cohere_upstream import TRIAL_HEADERS, FakeCohere, fake_binary, fake_int8, fake_vector
from tests.sse import parse_sse



@pytest.fixture
async def upstream(serve_fake):
    return await serve_fake(FakeCohere())


@pytest.fixture
def gateway_settings(tmp_path, upstream):
    return make_settings(tmp_path, upstreams={"cohere": upstream.url})


async def put(http, task: str, inference_id: str, upstream, model: str = "embed-english-v3.0",
              api_key: str | None = None, task_settings: dict | None = None, **service):
    body = {"service": "cohere", "service_settings": {"api_key": api_key or upstream.api_key, "model_id": model,
                                                      **service}}
    if task_settings:
        body["task_settings"] = task_settings
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def stream(http, path: str, body: dict) -> tuple[int, list[tuple[str, str]]]:
    async with http.post(path, json=body) as resp:
        return resp.status, parse_sse((await resp.read()).decode())


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


# ------------------------------------------------------------------------------ text_embedding


async def test_text_embedding_with_the_es_client(es, http, upstream):
    await put(http, "text_embedding", "emb", upstream, task_settings={"truncate": "END"})
    texts = ["The sky above the port", "was the color of television"]
    resp = await es.inference.text_embedding(inference_id="emb", input=texts, input_type="ingest")
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    for vec, text in zip(vectors, texts):
        assert vec == pytest.approx(fake_vector(text), abs=1e-6)
    assert upstream.requests[-1] == {"model": "embed-english-v3.0", "texts": texts, "input_type": "search_document",
                                     "embedding_types": ["float"], "truncate": "END"}
    await es.inference.text_embedding(inference_id="emb", input="q")
    assert upstream.requests[-1]["input_type"] == "search_query"  # ES's v2 default when none is given


async def test_stored_input_type_is_used_when_the_request_has_none(es, http, upstream):
    await put(http, "text_embedding", "emb", upstream, task_settings={"input_type": "clustering"})
    await es.inference.text_embedding(inference_id="emb", input="x")
    assert upstream.requests[-1]["input_type"] == "clustering"
    await es.inference.text_embedding(inference_id="emb", input="x", input_type="classification")
    assert upstream.requests[-1]["input_type"] == "classification"


@pytest.mark.parametrize("embedding_type, key, maker, wire", [
    ("byte", "text_embedding_bytes", fake_int8, "int8"),
    ("int8", "text_embedding_bytes", fake_int8, "int8"),
    ("bit", "text_embedding_bits", fake_binary, "binary"),
    ("binary", "text_embedding_bits", fake_binary, "binary")])
async def test_byte_and_bit_embeddings(es, http, upstream, embedding_type, key, maker, wire):
    await put(http, "text_embedding", "emb", upstream, embedding_type=embedding_type)
    resp = await es.inference.text_embedding(inference_id="emb", input=["alpha", "beta"])
    assert [item["embedding"] for item in resp.body[key]] == [maker("alpha"), maker("beta")]
    assert upstream.requests[-1]["embedding_types"] == [wire]


async def test_inputs_beyond_96_are_split_and_reassembled(es, http, upstream):
    await put(http, "text_embedding", "emb", upstream)
    texts = [f"sentence number {i}" for i in range(200)]
    resp = await es.inference.inference(inference_id="emb", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    assert len(vectors) == 200
    assert vectors[150] == pytest.approx(fake_vector(texts[150]), abs=1e-6)
    assert sorted(len(r["texts"]) for r in upstream.requests) == [8, 96, 96]


# ------------------------------------------------------------------------------ rerank


async def test_rerank_with_the_es_client(es, http, upstream):
    await put(http, "rerank", "rr", upstream, model="rerank-v3.5", task_settings={"top_n": 3})
    docs = ["luke", "star wars main character", "leia", "wars"]
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="star wars main character",
                                     top_n=2, return_documents=True)
    ranked = resp.body["rerank"]
    assert [r["index"] for r in ranked] == [1, 3]
    assert ranked[0] == {"index": 1, "relevance_score": 1.0, "text": "star wars main character"}
    assert upstream.requests[-1] == {"model": "rerank-v3.5", "query": "star wars main character",
                                     "documents": docs, "top_n": 2}
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="leia")
    assert len(resp.body["rerank"]) == 3 and all("text" not in r for r in resp.body["rerank"])
    assert upstream.requests[-1]["top_n"] == 3  # the stored task setting


# ------------------------------------------------------------------------------ completion and chat


async def test_completion_with_the_es_client(es, http, upstream):
    await put(http, "completion", "comp", upstream, model="command-a-03-2025")
    resp = await es.inference.completion(inference_id="comp", input="what is elastic?")
    assert resp.body == {"completion": [{"result": "WHAT IS ELASTIC?"}]}
    assert upstream.requests[-1] == {"model": "command-a-03-2025", "stream": False,
                                     "messages": [{"role": "user", "content": "what is elastic?"}]}


async def test_completion_stream(http, upstream):
    await put(http, "completion", "comp", upstream, model="command-a-03-2025")
    status, events = await stream(http, "/_inference/completion/comp/_stream", {"input": "the quick brown fox"})
    assert status == 200 and events[-1] == ("message", "[DONE]")
    text = "".join(json.loads(d)["completion"][0]["delta"] for _, d in events[:-1])
    assert text == "THE QUICK BROWN FOX"
    assert upstream.requests[-1]["stream"] is True


async def test_chat_completion_with_tool_calls(es, http, upstream):
    await put(http, "chat_completion", "chat", upstream, model="tool-model")
    body = {"messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS, "tool_choice": "required",
            "max_completion_tokens": 40, "temperature": 0.2, "top_p": 0.8, "stop": ["END"]}
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat", body=body,
                                    headers={"content-type": "application/json", "accept": "application/json"})
    choice = resp.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["id"] == "get_weather_1"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert resp.body["usage"] == {"prompt_tokens": 71, "completion_tokens": 7, "total_tokens": 78}
    sent = upstream.requests[-1]
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "REQUIRED"
    assert sent["max_tokens"] == 40 and sent["temperature"] == 0.2 and sent["p"] == 0.8
    assert sent["stop_sequences"] == ["END"]


async def test_tool_result_round_trip(es, http, upstream):
    await put(http, "chat_completion", "chat", upstream, model="command-a-03-2025")
    body = {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "get_weather_1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "get_weather_1", "content": "sunny"}], "tools": TOOLS}
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat", body=body,
                                    headers={"content-type": "application/json", "accept": "application/json"})
    assert resp.body["choices"][0]["message"]["content"] == "RESULTS: get_weather_1=sunny"
    sent = upstream.requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "tool_calls": [{"id": "get_weather_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert sent[2] == {"role": "tool", "tool_call_id": "get_weather_1", "content": "sunny"}


async def test_chat_stream_with_tool_calls_and_one_usage(http, upstream):
    await put(http, "chat_completion", "chat", upstream, model="tool-model")
    status, events = await stream(http, "/_inference/chat_completion/chat/_stream",
                                  {"messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS})
    assert status == 200 and events[-1] == ("message", "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert [(tc["index"], tc["id"], tc["function"]["name"]) for tc in calls if "id" in tc] == [
        (0, "get_weather_1", "get_weather"), (1, "get_time_2", "get_time")]
    for index, expected in ((0, {"city": "Paris"}), (1, {"tz": "CET"})):
        assert json.loads("".join(tc["function"].get("arguments", "") for tc in calls
                                  if tc["index"] == index)) == expected
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")] == ["tool_calls"]
    assert [c["usage"] for c in chunks if c.get("usage")] == [
        {"prompt_tokens": 71, "completion_tokens": 7, "total_tokens": 78}]


async def test_stream_cut_before_message_end_is_an_in_band_error(http, upstream):
    await put(http, "completion", "comp", upstream, model="cut-stream")
    status, events = await stream(http, "/_inference/completion/comp/_stream", {"input": "one two three"})
    assert status == 200
    assert [e for e, _ in events] == ["message", "error"]
    assert json.loads(events[-1][1])["status"] == 502


# ------------------------------------------------------------------------------ faults


async def test_401_keeps_its_status_and_the_es_message(es, http, upstream):
    await put(http, "text_embedding", "emb", upstream, api_key="co-wrong")
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [emb] status [401]. "
        "Error message: [invalid api token]")
    assert "co-wrong" not in json.dumps(exc.value.body)


async def test_429_is_retried(es, http, upstream):
    await put(http, "text_embedding", "emb", upstream)
    upstream.fail_next(429, "You are using a Trial key, which is limited to 40 API calls / minute.",
                       headers=TRIAL_HEADERS)
    resp = await es.inference.text_embedding(inference_id="emb", input="x")
    assert len(resp.body["text_embedding"]) == 1 and len(upstream.requests) == 2


async def test_400_message_is_passed_on(http, upstream):
    await put(http, "text_embedding", "emb", upstream)
    upstream.fail_next(400, "invalid request: model 'x' not found")
    async with http.post("/_inference/text_embedding/emb", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 400 and len(upstream.requests) == 1
    assert body["error"]["reason"].endswith("Error message: [invalid request: model 'x' not found]")


# ------------------------------------------------------------------------------ the OpenAI-compatible facade


@pytest.fixture
async def oai(gateway):
    client = openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="x", max_retries=0)
    yield client
    await client.close()


async def test_openai_sdk_embeddings(http, upstream, oai):
    await put(http, "text_embedding", "emb", upstream)
    resp = await oai.embeddings.create(model="emb", input=["hello", "world"])
    assert [d.embedding for d in resp.data] == [pytest.approx(fake_vector("hello"), abs=1e-6),
                                                pytest.approx(fake_vector("world"), abs=1e-6)]
    assert upstream.requests[-1]["input_type"] == "search_query"


async def test_openai_sdk_chat_and_stream(http, upstream, oai):
    await put(http, "chat_completion", "chat", upstream, model="command-a-03-2025")
    resp = await oai.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello there"}],
                                             seed=3)
    assert resp.choices[0].message.content == "HELLO THERE" and resp.choices[0].finish_reason == "stop"
    assert upstream.requests[-1]["seed"] == 3
    pieces, usage = [], None
    async with await oai.chat.completions.create(model="chat", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "a b c"}]) as events:
        async for chunk in events:
            pieces.extend(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
    assert "".join(pieces) == "A B C"
    assert usage is not None and usage.prompt_tokens == 71 and usage.completion_tokens == 7
