"""`googleaistudio` through `/_inference` (elasticsearch client) and `/v1` (openai SDK), in front of a
simulated Gemini API."""

from __future__ import annotations

import json

import openai
import pytest
from elasticsearch import ApiError

from tests.conftest import make_settings
from tests.fakes.google_upstream import TOOL_ARGS, FakeGoogleAiStudio, fake_vector, google_error, rate_limited
from tests.sse import parse_sse



@pytest.fixture
async def upstream(serve_fake):
    return await serve_fake(FakeGoogleAiStudio())


@pytest.fixture
def gateway_settings(tmp_path, upstream):
    return make_settings(tmp_path, upstreams={"googleaistudio": upstream.url})


async def put(http, task: str, inference_id: str, model: str = "gemini-2.5-flash", api_key: str = "AIza-test-key",
              **settings):
    body = {"service": "googleaistudio", "service_settings": {"api_key": api_key, "model_id": model, **settings}}
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def stream(http, path: str, body: dict) -> tuple[int, list[tuple[str, str]]]:
    async with http.post(path, json=body) as resp:
        return resp.status, parse_sse((await resp.read()).decode())


# ------------------------------------------------------------------------------ text_embedding


async def test_text_embedding_with_the_es_client(es, http, upstream):
    await put(http, "text_embedding", "emb", "text-embedding-004", dimensions=6)
    texts = ["The sky above the port", "was the color of television"]
    resp = await es.inference.text_embedding(inference_id="emb", input=texts, input_type="search")
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    for vec, text in zip(vectors, texts):
        assert vec == pytest.approx(fake_vector(text, 6), abs=1e-6)
    assert upstream.embed_requests[-1] == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": t}], "role": "user"}, "taskType": "RETRIEVAL_QUERY",
         "outputDimensionality": 6} for t in texts]}
    assert upstream.urls[-1].endswith("/v1beta/models/text-embedding-004:batchEmbedContents")  # no key in the URL


async def test_more_than_100_inputs_are_split_into_batches(es, http, upstream):
    await put(http, "text_embedding", "emb", "text-embedding-004", rate_limit={"requests_per_minute": 60000})
    texts = [f"sentence {i}" for i in range(230)]
    resp = await es.inference.text_embedding(inference_id="emb", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    assert len(vectors) == 230
    assert vectors[0] == pytest.approx(fake_vector(texts[0]), abs=1e-6)
    assert vectors[229] == pytest.approx(fake_vector(texts[229]), abs=1e-6)
    assert sorted(len(r["requests"]) for r in upstream.embed_requests) == [30, 100, 100]


# ------------------------------------------------------------------------------ completion and chat


async def test_completion_with_the_es_client(es, http, upstream):
    await put(http, "completion", "comp")
    resp = await es.inference.completion(inference_id="comp", input="what is elastic?")
    assert resp.body == {"completion": [{"result": "WHAT IS ELASTIC?"}]}
    assert upstream.requests[-1] == {"contents": [{"role": "user", "parts": [{"text": "what is elastic?"}]}]}


async def test_chat_completion_tool_call_round_trip(es, http, upstream):
    await put(http, "chat_completion", "chat", "tool-model")
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}}]
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "weather in Paris?"}]
    headers = {"content-type": "application/json", "accept": "application/json"}
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat", headers=headers,
                                    body={"messages": messages, "tools": tools, "max_completion_tokens": 64})
    choice = resp.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": TOOL_ARGS}  # byte for byte
    first = upstream.requests[-1]
    assert first["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    fn = tools[0]["function"]
    assert first["tools"] == [{"functionDeclarations": [{"name": fn["name"], "description": fn["description"],
                                                          "parametersJsonSchema": fn["parameters"]}]}]
    assert first["generationConfig"] == {"maxOutputTokens": 64}

    messages += [{"role": "assistant", "content": "", "tool_calls": [call]},
                 {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21}'}]
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat", headers=headers,
                                    body={"messages": messages, "tools": tools})
    assert resp.body["choices"][0]["message"]["content"] == 'RESULT [{"temp_c": 21}]'
    assert resp.body["choices"][0]["finish_reason"] == "stop"
    second = upstream.requests[-1]["contents"]
    assert second[1]["role"] == "model"
    assert second[1]["parts"][0]["functionCall"] == {"name": "get_weather", "args": json.loads(TOOL_ARGS)}
    assert second[2] == {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                         "response": {"temp_c": 21}}}]}


async def test_completion_stream_frames(http, upstream):
    await put(http, "completion", "comp")
    status, events = await stream(http, "/_inference/completion/comp/_stream", {"input": "abcdefgh"})
    assert status == 200
    assert events[-1] == ("message", "[DONE]")
    deltas = [json.loads(d)["completion"][0]["delta"] for _, d in events[:-1]]
    assert "".join(deltas) == "ABCDEFGH" and len(deltas) == 4
    assert upstream.urls[-1].split("?")[1] == "alt=sse"


async def test_chat_stream_tool_call_and_usage_reported_once(http, upstream):
    await put(http, "chat_completion", "chat", "tool-model")
    body = {"messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    status, events = await stream(http, "/_inference/chat_completion/chat/_stream", body)
    assert status == 200 and events[-1] == ("message", "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert calls == [{"index": 0, "id": "get_weather", "type": "function",
                      "function": {"name": "get_weather", "arguments": TOOL_ARGS}}]
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")] == ["tool_calls"]
    usages = [c["usage"] for c in chunks if c.get("usage")]
    assert usages == [{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}]


async def test_chat_stream_text_with_thinking_tokens(http, upstream):
    await put(http, "chat_completion", "chat", "thinking")
    upstream.sim.stream_pieces = 3
    status, events = await stream(http, "/_inference/chat_completion/chat/_stream",
                                  {"messages": [{"role": "user", "content": "one two three"}]})
    chunks = [json.loads(d) for _, d in events[:-1]]
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert text == "ONE TWO THREE"
    # cumulative usage in every upstream chunk: reported once, with thought tokens in completion_tokens
    assert [c["usage"] for c in chunks if c.get("usage")] == [
        {"prompt_tokens": 3, "completion_tokens": 3 + 7, "total_tokens": 13}]


@pytest.mark.parametrize("model", ["cut-stream", "error-stream"])
async def test_broken_streams_end_with_an_error_event(http, upstream, model):
    await put(http, "completion", "comp", model)
    upstream.sim.stream_pieces = 6
    status, events = await stream(http, "/_inference/completion/comp/_stream", {"input": "abcdefghijkl"})
    assert status == 200
    assert events[-1][0] == "error" and ("message", "[DONE]") not in events
    assert json.loads(events[-1][1])["status"] in (400, 502)


# ------------------------------------------------------------------------------ errors


async def test_invalid_key_is_google_400_with_es_message_and_no_key_echoed(es, http, upstream):
    await put(http, "text_embedding", "emb", "text-embedding-004", api_key="AIza-wrong-key")
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert exc.value.meta.status == 400
    assert exc.value.body["error"]["reason"] == (
        "Received a bad request status code for request from inference entity id [emb] status [400]. "
        "Error message: [API key not valid. Please pass a valid API key.]")
    assert "AIza-wrong-key" not in json.dumps(exc.value.body)


async def test_401_keeps_its_status_and_es_message(es, http, upstream):
    await put(http, "completion", "comp")
    upstream.fail_next(401, google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"))
    with pytest.raises(ApiError) as exc:
        await es.inference.completion(inference_id="comp", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [comp] status [401]. "
        "Error message: [Request had invalid authentication credentials.]")


async def test_404_message_does_not_echo_the_key(http, upstream):
    await put(http, "text_embedding", "emb", "text-embedding-004")
    upstream.fail_next(404, google_error(404, "models/nope is not found for API version v1beta", "NOT_FOUND"))
    async with http.post("/_inference/text_embedding/emb", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 404
    assert body["error"]["reason"] == (
        f"Resource not found at [{upstream.url}/v1beta/models/text-embedding-004:batchEmbedContents] for request "
        f"from inference entity id [emb] status [404]. Error message: [models/nope is not found for API version "
        f"v1beta]")
    assert "AIza" not in json.dumps(body)


async def test_429_resource_exhausted_is_retried(es, http, upstream):
    await put(http, "completion", "comp")
    upstream.fail_next(429, rate_limited("0s"))
    resp = await es.inference.completion(inference_id="comp", input="again")
    assert resp.body == {"completion": [{"result": "AGAIN"}]}
    assert len(upstream.requests) == 2


async def test_400_from_the_model_is_not_retried(http, upstream):
    await put(http, "completion", "comp")
    upstream.fail_next(400, google_error(400, "Invalid value at 'generation_config'", "INVALID_ARGUMENT"), times=3)
    async with http.post("/_inference/completion/comp", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 400 and body["error"]["reason"].endswith("Error message: [Invalid value at "
                                                                   "'generation_config']")
    assert len(upstream.requests) == 1


# ------------------------------------------------------------------------------ the openai SDK on /v1


@pytest.fixture
async def client(gateway):
    async with openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="x", max_retries=0) as c:
        yield c


async def test_openai_sdk_embeddings_and_chat(client, http, upstream):
    await put(http, "text_embedding", "emb", "text-embedding-004")
    await put(http, "chat_completion", "chat")
    resp = await client.embeddings.create(model="emb", input=["hello world"], encoding_format="float", dimensions=4)
    assert resp.data[0].embedding == pytest.approx(fake_vector("hello world", 4), abs=1e-6)
    chat = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi there"}],
                                                temperature=0.2, stop=["zz"])
    assert chat.choices[0].message.content == "HI THERE" and chat.choices[0].finish_reason == "stop"
    assert upstream.requests[-1]["generationConfig"] == {"temperature": 0.2,
                                                         "stopSequences": ["zz"]}
    pieces = []
    usage = None
    async with await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "abc def"}],
                                                    stream=True, stream_options={"include_usage": True}) as s:
        async for chunk in s:
            pieces.extend(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
    assert "".join(pieces) == "ABC DEF"
    assert usage is not None and usage.total_tokens == 4


async def test_openai_sdk_rejects_unsupported_user(client, http, upstream):
    await put(http, "chat_completion", "chat")
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], user="u")
    assert "[user]" in str(exc.value)
