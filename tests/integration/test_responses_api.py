"""`/v1/responses` driven by the official `openai` SDK's Responses client, in front of an OpenAI-format
chat upstream and an Anthropic one: any chat endpoint answers as the Responses API."""

from __future__ import annotations

import json

import aiohttp
import openai
import pytest
from openai.types.responses import ResponseInputMessageItem, ResponseOutputMessage

from tests.conftest import make_settings
from tests.integration.conftest import oai, put


@pytest.fixture
def gateway_settings(tmp_path, claude):
    return make_settings(tmp_path, upstreams={"anthropic": claude.url})


@pytest.fixture
async def endpoints(http, upstream, claude):
    await put(http, "chat_completion", "chat", oai(upstream))
    await put(http, "chat_completion", "tools", oai(upstream, "tool-model"))
    await put(http, "chat_completion", "claude", {"service": "anthropic", "service_settings": {
        "api_key": claude.api_key, "model_id": "claude-test"}, "task_settings": {"max_tokens": 64}})


WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}


async def test_text_response_and_its_request(client, endpoints, upstream):
    resp = await client.responses.create(model="chat", input="hello there", instructions="be loud",
                                         max_output_tokens=30, temperature=0.3)
    assert resp.object == "response" and resp.status == "completed" and resp.id.startswith("resp_")
    assert resp.output_text == "BE LOUD HELLO THERE"
    assert resp.usage.input_tokens == 3 and resp.usage.output_tokens == 1 and resp.usage.total_tokens == 4
    sent = upstream.requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "be loud"}, {"role": "user", "content": "hello there"}]
    assert sent["max_completion_tokens"] == 30 and sent["temperature"] == 0.3


async def test_store_get_delete_and_previous_response_id(client, endpoints, upstream):
    first = await client.responses.create(model="chat", input="first", instructions="only once")
    again = await client.responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == "ONLY ONCE FIRST"
    second = await client.responses.create(model="chat", input="second", previous_response_id=first.id)
    # the earlier turns come back; the earlier instructions do not (as OpenAI documents)
    assert upstream.requests[-1]["messages"] == [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ONLY ONCE FIRST"},
        {"role": "user", "content": "second"}]
    assert second.previous_response_id == first.id
    await client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError) as exc:
        await client.responses.create(model="chat", input="x", previous_response_id=first.id)
    assert exc.value.param == "previous_response_id"
    unstored = await client.responses.create(model="chat", input="not kept", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)


async def test_function_calls_and_their_outputs(client, endpoints, upstream):
    resp = await client.responses.create(model="tools", input="weather in Paris?", tools=[WEATHER],
                                         parallel_tool_calls=False)
    call = resp.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_1"
    assert json.loads(call.arguments) == {"city": "Paris"}
    sent = upstream.requests[-1]
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER["parameters"],
        "strict": True}}]
    assert sent["parallel_tool_calls"] is False
    await client.responses.create(model="chat", previous_response_id=resp.id, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert upstream.requests[-1]["messages"] == [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}]


async def test_stream_events_text(client, endpoints):
    stream = await client.responses.create(model="chat", input="abcde", stream=True)
    events = [e async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "<0>A<1>B<2>C<3>D<4>E"
    done = events[-1].response
    assert done.output_text == text and done.usage.output_tokens == 5


async def test_stream_helper_function_call_and_stored(client, endpoints):
    async with client.responses.stream(model="tools", input="weather?", tools=[WEATHER]) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.function_call_arguments.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == '{"city": "Paris"}'
    call = final.output[0]
    assert call.type == "function_call" and call.arguments == '{"city": "Paris"}'
    assert (await client.responses.retrieve(final.id)).output[0].call_id == call.call_id


async def test_anthropic_upstream_through_responses(client, endpoints, claude):
    resp = await client.responses.create(model="claude", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "hi claude"}]}], reasoning={"effort": "low"}, max_output_tokens=2000)
    assert resp.output_text == "HI CLAUDE"
    assert claude.requests[-1]["thinking"] == {"type": "enabled", "budget_tokens": 1024}


async def test_top_logprobs_come_back_on_the_text(client, endpoints, upstream):
    resp = await client.responses.create(model="chat", input="hi", top_logprobs=2)
    assert upstream.requests[-1]["logprobs"] is True and upstream.requests[-1]["top_logprobs"] == 2
    assert resp.output[0].content[0].logprobs[0].token == "H"
    assert resp.output[0].content[0].logprobs[0].logprob == -0.25


async def test_what_cannot_be_honoured_is_refused_by_name(client, endpoints):
    for kwargs, param in (({"tools": [{"type": "web_search"}]}, "tools"), ({"background": True}, "background"),
                          ({"include": ["reasoning.encrypted_content"]}, "include")):
        with pytest.raises(openai.BadRequestError) as exc:
            await client.responses.create(model="chat", input="x", **kwargs)
        assert exc.value.param == param


async def test_error_after_the_stream_started_fails_the_response(http, upstream, endpoints):
    await put(http, "chat_completion", "cut", oai(upstream, "cut-stream"))
    async with http.post("/v1/responses", json={"model": "cut", "stream": True, "input": "abcdef"}) as resp:
        raw = (await resp.read()).decode()
    events = [block.split("\n")[0][len("event: "):] for block in raw.strip().split("\n\n")]
    assert resp.status == 200 and events[0] == "response.created"
    assert events[-2:] == ["error", "response.failed"] and "response.completed" not in events
    failed = json.loads(raw.strip().split("\n\n")[-1].split("\ndata: ")[1])
    assert failed["response"]["status"] == "failed" and failed["response"]["error"]["message"]
    async with http.get(f"/v1/responses/{failed['response']['id']}") as got:
        assert got.status == 404  # a failed stream is not stored


async def test_a_stored_response_belongs_to_the_key_that_made_it(gateway, endpoints):
    from proxy import appkeys
    from proxy.keys import encoded

    ring = gateway.app[appkeys.KEYS]
    alice = encoded(*await ring.create("alice", "alice", roles=["inference_user"]))
    bob = encoded(*await ring.create("bob", "bob", roles=["inference_user"]))
    base = str(gateway.make_url("/v1"))
    async with openai.AsyncOpenAI(base_url=base, api_key=alice, max_retries=0) as a, \
            openai.AsyncOpenAI(base_url=base, api_key=bob, max_retries=0) as b:
        mine = await a.responses.create(model="chat", input="secret plan")
        assert (await a.responses.retrieve(mine.id)).output_text == "SECRET PLAN"
        with pytest.raises(openai.NotFoundError):
            await b.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            await b.responses.create(model="chat", input="x", previous_response_id=mine.id)
        with pytest.raises(openai.NotFoundError):
            await b.responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            await b.responses.input_items.list(mine.id)
        assert [i.content[0].text async for i in a.responses.input_items.list(mine.id)] == ["secret plan"]
        await a.responses.delete(mine.id)


async def test_input_items_list_the_conversation(client, endpoints, upstream, gateway):
    first = await client.responses.create(model="chat", input="first", instructions="not an item")
    image = "data:image/png;base64,iVBORw0KGgo="
    second = await client.responses.create(model="chat", previous_response_id=first.id, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                     {"type": "input_image", "image_url": image}]}])
    # the SDK's own pager parses each page (ResponseItemList) and follows `after` while `has_more`
    items = [i async for i in client.responses.input_items.list(second.id, order="asc", limit=1)]
    assert [(i.type, i.role) for i in items] == [("message", "user"), ("message", "assistant"), ("message", "user")]
    assert isinstance(items[0], ResponseInputMessageItem) and items[0].content[0].text == "first"
    assert isinstance(items[1], ResponseOutputMessage) and items[1].id == first.output[0].id
    assert items[1].content[0].text == "NOT AN ITEM FIRST"  # the fake upstream echoes every message
    assert items[2].content[1].type == "input_image" and items[2].content[1].image_url is None
    page = await client.responses.input_items.list(second.id, include=["message.input_image.image_url"])
    assert page.object == "list" and page.has_more is False
    assert [i.id for i in page.data] == [i.id for i in reversed(items)]  # newest first by default
    assert (page.first_id, page.last_id) == (items[2].id, items[0].id)
    assert page.data[0].content[1].image_url == image
    older = await client.responses.input_items.list(second.id, after=items[2].id, limit=1)
    assert [i.id for i in older.data] == [items[1].id] and older.has_more is True
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/"))) as http:
        async with http.get(f"/v1/responses/{second.id}/input_items", params={"order": "asc",
                                                                               "before": items[2].id}) as resp:
            assert [i["id"] for i in (await resp.json())["data"]] == [items[0].id, items[1].id]
    for kwargs, param in (({"limit": 0}, "limit"), ({"order": "up"}, "order"), ({"after": "msg_x"}, "after"),
                          ({"include": ["reasoning.encrypted_content"]}, "include")):
        with pytest.raises(openai.BadRequestError) as exc:
            await client.responses.input_items.list(second.id, **kwargs)
        assert exc.value.param == param
    with pytest.raises(openai.NotFoundError):
        await client.responses.input_items.list("resp_missing")
