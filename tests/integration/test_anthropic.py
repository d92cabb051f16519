"""`/_inference` in front of a simulated Anthropic Messages API (completion and chat_completion)."""

from __future__ import annotations

import json

import openai
import pytest
from elasticsearch import ApiError

from tests.conftest import make_settings
from tests.fakes.anthropic_upstream import FakeAnthropic, rate_limit_headers
from tests.sse import parse_sse



@pytest.fixture
async def upstream(serve_fake):
    return await serve_fake(FakeAnthropic())


@pytest.fixture
def gateway_settings(tmp_path, upstream):
    return make_settings(tmp_path, upstreams={"anthropic": upstream.url})


async def put(http, task: str, inference_id: str, upstream, model: str = "claude-test", api_key: str | None = None,
              **task_settings):
    body = {"service": "anthropic",
            "service_settings": {"api_key": api_key or upstream.api_key, "model_id": model},
            "task_settings": {"max_tokens": 128, **task_settings}}
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def stream(http, path: str, body: dict) -> tuple[int, list[tuple[str, str]]]:
    async with http.post(path, json=body) as resp:
        return resp.status, parse_sse((await resp.read()).decode())


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]


# ------------------------------------------------------------------------------ completion


async def test_completion_with_the_es_client(es, http, upstream):
    await put(http, "completion", "comp", upstream)
    resp = await es.inference.completion(inference_id="comp", input="what is elastic?")
    assert resp.body == {"completion": [{"result": "WHAT IS ELASTIC?"}]}
    assert upstream.requests[-1] == {"model": "claude-test", "messages": [{"role": "user",
                                                                          "content": "what is elastic?"}],
                                     "max_tokens": 128}
    seen = upstream.headers_seen[-1]
    assert seen["x-api-key"] == upstream.api_key and seen["anthropic-version"] == "2026-10-21"
    assert "authorization" not in seen


async def test_sampling_settings_are_refused_not_dropped(es, http, upstream):
    """API version 2026-10-21 answers 400 to temperature, top_p and top_k: the gateway says so first."""
    await put(http, "completion", "comp", upstream, temperature=0.3, top_k=4)
    sent = len(upstream.requests)
    with pytest.raises(ApiError) as exc:
        await es.inference.completion(inference_id="comp", input="x")
    assert exc.value.meta.status == 400 and "[temperature]" in str(exc.value.body)
    await put(http, "completion", "comp2", upstream)
    with pytest.raises(ApiError) as exc:
        await es.inference.completion(inference_id="comp2", input="x", task_settings={"top_p": 0.5})
    assert exc.value.meta.status == 400 and "[top_p]" in str(exc.value.body)
    assert len(upstream.requests) == sent


async def test_completion_task_settings_override_per_request(es, http, upstream):
    await put(http, "completion", "comp", upstream)
    await es.inference.completion(inference_id="comp", input="x", task_settings={"max_tokens": 7})
    assert upstream.requests[-1]["max_tokens"] == 7


async def test_completion_stream(http, upstream):
    await put(http, "completion", "comp", upstream)
    status, events = await stream(http, "/_inference/completion/comp/_stream", {"input": "the quick brown fox"})
    assert status == 200 and events[-1] == ("message", "[DONE]")
    text = "".join(json.loads(d)["completion"][0]["delta"] for _, d in events[:-1])
    assert text == "THE QUICK BROWN FOX"
    assert upstream.requests[-1]["stream"] is True


# ------------------------------------------------------------------------------ chat_completion


async def test_chat_completion_with_tool_use(es, http, upstream):
    await put(http, "chat_completion", "chat", upstream, model="tool-model")
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "weather?"}],
            "tools": TOOLS, "tool_choice": "auto", "max_completion_tokens": 99}
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat", body=body,
                                    headers={"content-type": "application/json", "accept": "application/json"})
    choice = resp.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    calls = choice["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("toolu_01A", "get_weather", {"city": "Paris"}), ("toolu_01B", "get_time", {"tz": "CET"})]
    assert resp.body["usage"]["completion_tokens"] == 9
    sent = upstream.requests[-1]
    assert sent["system"] == "Be brief." and sent["messages"] == [{"role": "user", "content": "weather?"}]
    assert sent["max_tokens"] == 99 and sent["tool_choice"] == {"type": "auto"}
    assert sent["tools"][0] == {"name": "get_weather", "description": "Weather in a city",
                                "input_schema": TOOLS[0]["function"]["parameters"]}


async def test_tool_result_round_trip(es, http, upstream):
    await put(http, "chat_completion", "chat", upstream)
    body = {"messages": [
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather",
                                                                 "arguments": '{"city": "Paris"}'}},
            {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "noon"}], "tools": TOOLS}
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat", body=body,
                                    headers={"content-type": "application/json", "accept": "application/json"})
    assert resp.body["choices"][0]["message"]["content"] == "RESULTS: toolu_01A=sunny, toolu_01B=noon"
    sent = upstream.requests[-1]["messages"]
    assert sent[1]["content"][-2:] == [
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}]
    assert sent[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "noon"}]}


async def test_chat_stream_with_tool_calls_and_one_usage(http, upstream):
    await put(http, "chat_completion", "chat", upstream, model="tool-model")
    body = {"messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    status, events = await stream(http, "/_inference/chat_completion/chat/_stream", body)
    assert status == 200 and events[-1] == ("message", "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "msg_01Stream" for c in chunks)
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", [])]
    starts = [tc for tc in calls if "id" in tc]
    assert [(tc["index"], tc["id"], tc["function"]["name"]) for tc in starts] == [
        (0, "toolu_01A", "get_weather"), (1, "toolu_01B", "get_time")]
    for index, expected in ((0, {"city": "Paris"}), (1, {"tz": "CET"})):
        args = "".join(tc["function"].get("arguments", "") for tc in calls if tc["index"] == index)
        assert json.loads(args) == expected
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert text == "Checking."
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")]
    assert finishes == ["tool_calls"]
    usages = [c["usage"] for c in chunks if c.get("usage")]
    # input from message_start; output = the last cumulative message_delta count (25), not 10 + 25
    prompt = 1 + 7  # the fake's input_tokens: one word plus 7
    assert usages == [{"prompt_tokens": prompt, "completion_tokens": 25, "total_tokens": prompt + 25}]
    assert upstream.requests[-1]["tool_choice"] == {"type": "tool", "name": "get_weather"}


async def test_stream_cut_before_message_stop_is_an_in_band_error(http, upstream):
    await put(http, "completion", "comp", upstream, model="cut-stream")
    status, events = await stream(http, "/_inference/completion/comp/_stream", {"input": "one two three"})
    assert status == 200
    assert [e for e, _ in events] == ["message", "error"]
    assert json.loads(events[-1][1])["status"] == 502


async def test_in_stream_overloaded_error_event(http, upstream):
    await put(http, "chat_completion", "chat", upstream, model="overloaded-stream")
    status, events = await stream(http, "/_inference/chat_completion/chat/_stream",
                                  {"messages": [{"role": "user", "content": "one two three"}]})
    assert status == 200 and events[-1][0] == "error" and ("message", "[DONE]") not in events
    err = json.loads(events[-1][1])["error"]
    assert "Overloaded" in err["message"] and err["type"] == "overloaded_error"


# ------------------------------------------------------------------------------ faults


async def test_401_keeps_its_status_and_the_es_message(es, http, upstream):
    await put(http, "completion", "comp", upstream, api_key="sk-ant-wrong")
    with pytest.raises(ApiError) as exc:
        await es.inference.completion(inference_id="comp", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [comp] status [401]. "
        "Error message: [invalid x-api-key]")
    assert "sk-ant-wrong" not in json.dumps(exc.value.body)


async def test_429_with_rate_limit_headers_is_retried(es, http, upstream):
    await put(http, "completion", "comp", upstream)
    upstream.fail_next(429, "Number of request tokens has exceeded your per-minute rate limit",
                       headers=rate_limit_headers("0"))
    resp = await es.inference.completion(inference_id="comp", input="again")
    assert resp.body == {"completion": [{"result": "AGAIN"}]}
    assert len(upstream.requests) == 2


async def test_529_overloaded_is_retried(es, http, upstream):
    await put(http, "completion", "comp", upstream)
    upstream.fail_next(529, "Overloaded")
    resp = await es.inference.completion(inference_id="comp", input="later")
    assert resp.body == {"completion": [{"result": "LATER"}]}
    assert len(upstream.requests) == 2


async def test_400_is_not_retried_and_keeps_the_message(http, upstream):
    await put(http, "completion", "comp", upstream)
    upstream.fail_next(400, "messages: text content blocks must be non-empty", times=3)
    async with http.post("/_inference/completion/comp", json={"input": "x"}) as resp:
        body = await resp.json()
    assert resp.status == 400 and len(upstream.requests) == 1
    assert body["error"]["reason"].endswith("Error message: [messages: text content blocks must be non-empty]")


async def test_unsupported_parameter_is_a_clear_400(http, upstream):
    # ES refuses `strict` on tools (AnthropicUnifiedChatCompletionRequestEntity); the gateway passes it on, since
    # the Messages API takes it (anthropic SDK ToolParam.strict), and refuses what has no equivalent
    await put(http, "chat_completion", "chat", upstream)
    body = {"messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f", "strict": True}}], "tool_choice": "sometimes"}
    async with http.post("/_inference/chat_completion/chat", json=body) as resp:
        err = (await resp.json())["error"]
    assert resp.status == 400 and "tool_choice" in err["message"]
    assert upstream.requests == []


# ------------------------------------------------------------------------------ the OpenAI-compatible facade


@pytest.fixture
async def oai(gateway):
    client = openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="x", max_retries=0)
    yield client
    await client.close()


async def test_openai_sdk_chat(http, upstream, oai):
    await put(http, "chat_completion", "chat", upstream)
    resp = await oai.chat.completions.create(model="chat", max_tokens=12, user="u-1",
                                             messages=[{"role": "system", "content": "Terse."},
                                                       {"role": "user", "content": "hello there"}])
    assert resp.choices[0].message.content == "HELLO THERE" and resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens == 9
    sent = upstream.requests[-1]
    assert sent["system"] == "Terse." and sent["max_tokens"] == 12 and sent["metadata"] == {"user_id": "u-1"}


async def test_openai_sdk_stream_with_tools(http, upstream, oai):
    await put(http, "chat_completion", "chat", upstream, model="tool-model")
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    finish, usage = None, None
    async with await oai.chat.completions.create(model="chat", stream=True, stream_options={"include_usage": True},
                                                 tools=TOOLS, messages=[{"role": "user", "content": "w?"}]) as events:
        async for chunk in events:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or []:
                    if tc.function and tc.function.name:
                        names[tc.index] = tc.function.name
                    args[tc.index] = args.get(tc.index, "") + ((tc.function and tc.function.arguments) or "")
    assert names == {0: "get_weather", 1: "get_time"}
    assert json.loads(args[0]) == {"city": "Paris"} and json.loads(args[1]) == {"tz": "CET"}
    assert finish == "tool_calls" and usage.completion_tokens == 25 and usage.prompt_tokens == 8


async def test_openai_sdk_seed_is_rejected_clearly(http, upstream, oai):
    await put(http, "chat_completion", "chat", upstream)
    with pytest.raises(openai.BadRequestError) as exc:
        await oai.chat.completions.create(model="chat", seed=1, messages=[{"role": "user", "content": "x"}])
    assert "seed" in str(exc.value) and upstream.requests == []
