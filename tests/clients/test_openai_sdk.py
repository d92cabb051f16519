"""The official `openai` SDK as apps use it: sync, async, streams, tools, `.parse`, the Responses client."""

from __future__ import annotations

import asyncio

import openai
import pydantic
import pytest


class Shout(pydantic.BaseModel):
    CITY: str  # the simulated upstream answers the prompt upper-cased


@pytest.fixture
async def client(base):
    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0) as c:
        yield c


async def test_async_text_stream_and_usage(client):
    resp = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "HI"
    stream = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "abc"}],
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "<0>A<1>B<2>C<3><4>"
    assert chunks[-1].usage.completion_tokens == 5


def test_sync_client(base):
    def call():
        with openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0) as c:
            return c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "sync"}])

    loop = asyncio.get_event_loop()  # the gateway serves from this loop; the sync client runs in a thread
    assert loop.run_until_complete(asyncio.to_thread(call)).choices[0].message.content == "SYNC"


async def test_parse_with_a_pydantic_model(client, upstream):
    done = await client.chat.completions.parse(model="chat", response_format=Shout,
                                               messages=[{"role": "user", "content": '{"city": "paris"}'}])
    assert done.choices[0].message.parsed == Shout(CITY="PARIS")
    assert upstream.requests[-1]["response_format"]["type"] == "json_schema"


async def test_tools_round_trip(client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [{"role": "user", "content": "weather?"}]
    first = await client.chat.completions.create(model="agent", messages=messages, tools=tools,
                                                 parallel_tool_calls=False)
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup" and first.choices[0].finish_reason == "tool_calls"
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "rain"}]
    second = await client.chat.completions.create(model="agent", messages=messages, tools=tools)
    assert second.choices[0].message.content == "RESULT: rain"


async def test_responses_client(client):
    resp = await client.responses.create(model="chat", input="respond")
    assert resp.output_text == "RESPOND"
    follow = await client.responses.create(model="chat", input="again", previous_response_id=resp.id)
    assert follow.output_text == "RESPOND RESPOND AGAIN"
