"""The `/v1` facade driven by the official `openai` SDK, in front of a simulated OpenAI upstream."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.fakes.openai_upstream import fake_vector


async def put(http, task, inference_id, settings, service="openai"):
    async with http.put(f"/_inference/{task}/{inference_id}",
                        json={"service": service, "service_settings": settings}) as resp:
        assert resp.status == 200, await resp.text()


def settings(upstream, path, model="gpt-test"):
    return {"api_key": upstream.api_key, "model_id": model, "url": f"{upstream.url}{path}"}


@pytest.fixture
async def endpoints(http, upstream):
    await put(http, "text_embedding", "emb", settings(upstream, "/v1/embeddings"))
    await put(http, "chat_completion", "chat", settings(upstream, "/v1/chat/completions"))
    await put(http, "chat_completion", "tools", settings(upstream, "/v1/chat/completions", "tool-model"))
    await put(http, "completion", "comp", settings(upstream, "/v1/chat/completions"))
    await put(http, "rerank", "rr", {"api_key": upstream.api_key, "url": f"{upstream.url}/v1/rerank"},
              service="openshift_ai")


async def test_models_list_and_retrieve(client, endpoints):
    models = await client.models.list()
    by_id = {m.id: m for m in models.data}
    assert set(by_id) == {"emb", "chat", "tools", "comp", "rr"}
    assert by_id["emb"].owned_by == "openai" and by_id["emb"].model_extra["task_type"] == "text_embedding"
    assert (await client.models.retrieve("rr")).owned_by == "openshift_ai"
    with pytest.raises(openai.NotFoundError) as exc:
        await client.models.retrieve("nope")
    assert exc.value.code == "model_not_found"


async def test_embeddings_float_and_base64_agree(client, endpoints):
    texts = ["first text", "second text"]
    as_float = await client.embeddings.create(model="emb", input=texts, encoding_format="float")
    as_base64 = await client.embeddings.create(model="emb", input=texts)  # the SDK asks for base64 by default
    for f, b, text in zip(as_float.data, as_base64.data, texts):
        assert f.embedding == pytest.approx(fake_vector(text), abs=1e-6)
        assert b.embedding == pytest.approx(f.embedding, abs=1e-6)
    assert as_float.model == "emb" and as_float.usage.prompt_tokens == 4


async def test_embeddings_dimensions_and_user_are_forwarded(client, endpoints, upstream):
    resp = await client.embeddings.create(model="emb", input="hello", dimensions=4, user="u-1",
                                          encoding_format="float")
    assert len(resp.data[0].embedding) == 4
    assert upstream.requests[-1] == {"input": ["hello"], "model": "gpt-test", "dimensions": 4, "user": "u-1"}


async def test_token_ids_reach_an_upstream_that_takes_them_and_are_decoded_for_others(client, http, endpoints,
                                                                                       upstream):
    # 15339 "hello", 1917 " world" in cl100k_base (what tiktoken.get_encoding("cl100k_base").encode gives)
    await client.embeddings.create(model="emb", input=[[15339, 1917], [15339]], encoding_format="float")
    assert upstream.requests[-1]["input"] == [[15339, 1917], [15339]]  # OpenAI's API takes token arrays
    await client.embeddings.create(model="emb", input=[15339, 1917], encoding_format="float")
    assert upstream.requests[-1]["input"] == [[15339, 1917]]
    # a vLLM model behind OpenShift AI has a vocabulary of its own: the ids are decoded with the client's
    await put(http, "text_embedding", "vllm-emb", settings(upstream, "/v1/embeddings"), service="openshift_ai")
    await client.embeddings.create(model="vllm-emb", input=[[15339, 1917], [15339]], encoding_format="float")
    assert upstream.requests[-1]["input"] == ["hello world", "hello"]
    with pytest.raises(openai.BadRequestError) as exc:
        await client.embeddings.create(model="emb", input=[[10**7]])
    assert "check_embedding_ctx_length=False" in exc.value.message and exc.value.param == "input"


async def test_chat_non_streaming(client, endpoints, upstream):
    resp = await client.chat.completions.create(
        model="chat", messages=[{"role": "system", "content": "be loud"}, {"role": "user", "content": "hi"}],
        max_tokens=20, temperature=0.5, top_p=0.9, stop=["x"], seed=7,
        response_format={"type": "json_object"})
    assert resp.choices[0].message.content == "BE LOUD HI"
    assert resp.model == "chat" and resp.usage.total_tokens == 4
    sent = upstream.requests[-1]
    assert sent["max_completion_tokens"] == 20 and sent["temperature"] == 0.5 and sent["top_p"] == 0.9
    assert sent["stop"] == ["x"] and sent["seed"] == 7 and sent["response_format"] == {"type": "json_object"}


async def test_chat_stream_text_and_usage(client, endpoints):
    stream = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "abcde"}],
                                                  stream=True, stream_options={"include_usage": True})
    text, usage, finish = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "<0>A<1>B<2>C<3>D<4>E" and finish == "stop"
    assert usage.completion_tokens == 5 and usage.total_tokens == 8


async def test_chat_stream_tool_calls_reassemble(client, endpoints):
    stream = await client.chat.completions.create(
        model="tools", messages=[{"role": "user", "content": "weather in Paris?"}], stream=True,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        tool_choice="auto")
    calls: dict[int, dict] = {}
    async for chunk in stream:
        assert chunk.usage is None  # not asked for
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = tc.id or call["id"]
            call["name"] += tc.function.name or ""
            call["arguments"] += tc.function.arguments or ""
    assert calls == {0: {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}}


async def test_legacy_completions(client, endpoints):
    resp = await client.completions.create(model="comp", prompt="say hi", max_tokens=5)
    assert resp.choices[0].text == "SAY HI" and resp.object == "text_completion"
    stream = await client.completions.create(model="comp", prompt="abcde", stream=True)
    pieces = [c.choices[0].text async for c in stream if c.choices]
    assert "".join(pieces) == "<0>A<1>B<2>C<3>D<4>E"


def test_sync_client(gateway, endpoints):
    async def noop():  # the gateway runs in the test loop; the sync client runs in a worker thread
        pass

    def call():
        with openai.OpenAI(base_url=str(gateway.make_url("/v1")), api_key="x", max_retries=0) as c:
            return c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "sync"}])

    loop = asyncio.get_event_loop()
    resp = loop.run_until_complete(asyncio.to_thread(call))
    assert resp.choices[0].message.content == "SYNC"


async def test_rerank_cohere_shape(http, endpoints):
    for path in ("/v1/rerank", "/rerank", "/v2/rerank"):
        async with http.post(path, json={"model": "rr", "query": "star wars", "documents": ["a", "star wars", "wars"],
                                         "top_n": 2, "return_documents": True}) as resp:
            body = await resp.json()
        assert resp.status == 200
        assert [r["index"] for r in body["results"]] == [1, 2]
        assert body["results"][0] == {"index": 1, "relevance_score": 1.0, "document": {"text": "star wars"}}


@pytest.mark.parametrize("status, exc_type", [
    (401, openai.AuthenticationError), (403, openai.PermissionDeniedError), (409, openai.ConflictError),
    (422, openai.UnprocessableEntityError), (429, openai.RateLimitError), (500, openai.InternalServerError),
])
async def test_upstream_statuses_map_to_sdk_exceptions(client, endpoints, upstream, status, exc_type):
    # a Retry-After beyond the request's deadline makes the gateway answer at once instead of retrying
    upstream.fail_next(status, "upstream said no", times=10, headers={"Retry-After": "1000"})
    with pytest.raises(exc_type) as exc:
        await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}],
                                             timeout=3)
    assert "upstream said no" in exc.value.message
    if status == 500:
        assert exc.value.status_code == 502


async def test_gateway_side_errors(client, endpoints):
    with pytest.raises(openai.NotFoundError) as exc:
        await client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
    assert exc.value.code == "model_not_found" and exc.value.param == "model"
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], n=2)
    assert exc.value.param == "n"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="emb", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="chat", input="x")


async def test_unknown_fields_are_passed_to_an_openai_upstream(client, endpoints, upstream):
    resp = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "ok"}],
                                                extra_body={"some_vendor_field": {"a": 1}}, presence_penalty=0)
    assert resp.choices[0].message.content == "OK"
    assert upstream.requests[-1]["some_vendor_field"] == {"a": 1}


async def test_error_after_the_stream_started_is_in_band(http, upstream, endpoints):
    await put(http, "chat_completion", "cut", settings(upstream, "/v1/chat/completions", "cut-stream"))
    async with http.post("/v1/chat/completions", json={"model": "cut", "stream": True,
                                                      "messages": [{"role": "user", "content": "abcdef"}]}) as resp:
        assert resp.status == 200
        frames = [f for f in (await resp.text()).split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert "data: [DONE]" not in frames
    last = json.loads(frames[-1][6:])
    assert last["error"]["type"] == "upstream_error"


async def test_disconnect_mid_stream_cancels_the_upstream(http, upstream, endpoints):
    await put(http, "chat_completion", "slow", settings(upstream, "/v1/chat/completions", "slow-stream"))
    upstream.stream_events = 50
    resp = await http.post("/v1/chat/completions", json={"model": "slow", "stream": True,
                                                         "messages": [{"role": "user", "content": "abc"}]})
    await resp.content.readuntil(b"\n\n")
    resp.close()
    await asyncio.wait_for(upstream.closed.wait(), 1.0)
    assert upstream.disconnects == 1


async def test_unknown_v1_route_is_an_openai_error(http):
    async with http.post("/v1/nothing", json={}) as resp:
        body = await resp.json()
    assert resp.status == 404 and body["error"]["type"] == "not_found_error"
