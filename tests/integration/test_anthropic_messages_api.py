"""`/v1/messages` driven by the official `anthropic` SDK, in front of an OpenAI-format upstream and an
Anthropic one: any chat endpoint answers in the Messages API's format."""

from __future__ import annotations

import anthropic
import pytest

from proxy import appkeys
from proxy.keys import encoded
from tests.conftest import make_settings
from tests.integration.conftest import oai, put


@pytest.fixture
def gateway_settings(tmp_path, claude):
    return make_settings(tmp_path, upstreams={"anthropic": claude.url},
                         model_aliases={"claude-sonnet-4-5": "chat"})


@pytest.fixture
async def client(gateway):
    async with anthropic.AsyncAnthropic(base_url=str(gateway.make_url("/")), api_key="unused",
                                        max_retries=0) as c:
        yield c


@pytest.fixture
async def endpoints(http, upstream, claude):
    await put(http, "chat_completion", "chat", oai(upstream))
    await put(http, "chat_completion", "tools", oai(upstream, "tool-model"))
    await put(http, "chat_completion", "claude", {"service": "anthropic", "service_settings": {
        "api_key": claude.api_key, "model_id": "claude-test"}, "task_settings": {"max_tokens": 64}})
    await put(http, "text_embedding", "emb", {"service": "openai", "service_settings": {
        "api_key": upstream.api_key, "model_id": "e", "url": f"{upstream.url}/v1/embeddings"}})


WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


async def test_text_message_from_an_openai_upstream(client, endpoints, upstream):
    # temperature is gone from anthropic 2.17's create(); older clients still send it
    msg = await client.messages.create(model="chat", max_tokens=50, system="be loud", extra_body={"temperature": 0.2},
                                       stop_sequences=["zz"], metadata={"user_id": "u-1"},
                                       messages=[{"role": "user", "content": "hi"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "chat"
    assert msg.content[0].type == "text" and msg.content[0].text == "BE LOUD HI"
    assert msg.stop_reason == "end_turn" and msg.usage.input_tokens == 3 and msg.usage.output_tokens == 1
    sent = upstream.requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "be loud"}, {"role": "user", "content": "hi"}]
    assert sent["max_completion_tokens"] == 50 and sent["temperature"] == 0.2 and sent["stop"] == ["zz"]
    assert sent["user"] == "u-1"


async def test_alias_reaches_the_endpoint(client, endpoints):
    msg = await client.messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                       messages=[{"role": "user", "content": "aliased"}])
    assert msg.content[0].text == "ALIASED"


async def test_streamed_text_with_the_sdk_helpers(client, endpoints):
    async with client.messages.stream(model="chat", max_tokens=50,
                                      messages=[{"role": "user", "content": "abcde"}]) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "<0>A<1>B<2>C<3>D<4>E"
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 3 and final.usage.output_tokens == 5


async def test_raw_stream_event_order(client, endpoints):
    stream = await client.messages.create(model="tools", max_tokens=50, stream=True, tools=[WEATHER],
                                          messages=[{"role": "user", "content": "weather in Paris?"}])
    kinds = [event.type async for event in stream]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 1


async def test_tool_use_plain_and_streamed(client, endpoints, upstream):
    msg = await client.messages.create(model="tools", max_tokens=50, tools=[WEATHER],
                                       tool_choice={"type": "auto", "disable_parallel_tool_use": True},
                                       messages=[{"role": "user", "content": "weather in Paris?"}])
    block = msg.content[0]
    assert msg.stop_reason == "tool_use" and block.type == "tool_use"
    assert block.name == "get_weather" and block.input == {"city": "Paris"} and block.id == "call_1"
    sent = upstream.requests[-1]
    assert sent["tools"] == [{"type": "function", "function": {"name": "get_weather",
                                                               "description": "Weather in a city",
                                                               "parameters": WEATHER["input_schema"]}}]
    assert sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is False
    async with client.messages.stream(model="tools", max_tokens=50, tools=[WEATHER],
                                      messages=[{"role": "user", "content": "weather?"}]) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


async def test_tool_results_and_images_reach_the_upstream(client, endpoints, upstream):
    await client.messages.create(model="chat", max_tokens=20, tools=[WEATHER], messages=[
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "iVBORw0KGgo="}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "checking"},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                                     {"type": "text", "text": "and?"}]}])
    sent = upstream.requests[-1]["messages"]
    assert sent[0] == {"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}
    assert sent[1] == {"role": "assistant", "content": "checking", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"}
    assert sent[3] == {"role": "user", "content": "and?"}


async def test_anthropic_upstream_keeps_thinking_and_parallel_settings(client, endpoints, claude):
    msg = await client.messages.create(model="claude", max_tokens=4000,
                                       thinking={"type": "enabled", "budget_tokens": 1024},
                                       tools=[WEATHER], tool_choice={"type": "any", "disable_parallel_tool_use": True},
                                       messages=[{"role": "user", "content": "hello"}])
    assert msg.content[0].type == "text"
    sent = claude.requests[-1]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


async def test_count_tokens(client, endpoints):
    counted = await client.messages.count_tokens(model="chat", messages=[{"role": "user", "content": "how long?"}])
    assert counted.input_tokens == 3  # the upstream's own count of the prompt


async def test_errors_in_anthropic_shape(client, http, endpoints, upstream):
    with pytest.raises(anthropic.NotFoundError) as exc:
        await client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as exc:
        await client.messages.create(model="emb", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["error"]["type"] == "invalid_request_error"
    upstream.fail_next(500, "upstream broke", times=10, headers={"Retry-After": "1000"})
    with pytest.raises(anthropic.InternalServerError) as exc:
        await client.messages.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert "upstream broke" in exc.value.message
    upstream.faults.clear()
    async with http.post("/v1/messages", json={"model": "chat", "messages": [{"role": "user", "content": "x"}]}) as r:
        body = await r.json()
    assert r.status == 400 and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as exc:
        await client.messages.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "x"}],
                                     inference_geo="eu")
    assert "inference_geo" in exc.value.message


async def test_error_after_the_stream_started_is_an_error_event(http, upstream, endpoints):
    await put(http, "chat_completion", "cut", oai(upstream, "cut-stream"))
    async with http.post("/v1/messages", json={"model": "cut", "max_tokens": 10, "stream": True,
                                               "messages": [{"role": "user", "content": "abcdef"}]}) as resp:
        raw = (await resp.read()).decode()
    assert resp.status == 200 and "event: message_start" in raw
    assert raw.rstrip().split("\n\n")[-1].startswith("event: error") and "message_stop" not in raw


async def test_x_api_key_is_a_gateway_key(gateway, endpoints):
    key = encoded(*await gateway.app[appkeys.KEYS].create("app", "app", roles=["inference_user"]))
    base = str(gateway.make_url("/"))
    async with anthropic.AsyncAnthropic(base_url=base, api_key=key, max_retries=0) as ok:
        msg = await ok.messages.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "k"}])
        assert msg.content[0].text == "K"
    async with anthropic.AsyncAnthropic(base_url=base, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError) as exc:
            await bad.messages.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "k"}])
    assert exc.value.body["error"]["type"] == "authentication_error"
