"""The pass-through stream (`proxy.wire.openai_relay`) as the official `openai` SDK reads it.

An `openai` endpoint behind `/v1/chat/completions` relays the upstream's own chunks with only the
model rewritten. The oracle is the same SDK reading the simulated upstream directly: every chunk must
be the upstream's, field for field, but for `model`, the name the client asked for.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import openai
import pytest

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
ASK = [{"role": "user", "content": "abc"}]


@pytest.fixture
async def endpoints(base, upstream):
    """One endpoint per behaviour of the simulated upstream, named after the model it calls."""
    async with aiohttp.ClientSession(base_url=base) as session:
        for model in ("deepseek-reasoner", "tool-model", "error-stream", "slow-stream", "cut-stream"):
            body = {"service": "openai", "service_settings": {"api_key": upstream.api_key, "model_id": model,
                                                              "url": f"{upstream.url}/v1/chat/completions"}}
            async with session.put(f"/_inference/chat_completion/ep-{model}", json=body) as resp:
                assert resp.status == 200, await resp.text()
    return base


@pytest.fixture
async def client(endpoints):
    async with openai.AsyncOpenAI(base_url=f"{endpoints}/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture
async def direct(upstream):
    async with openai.AsyncOpenAI(base_url=f"{upstream.url}/v1", api_key=upstream.api_key, max_retries=0) as c:
        yield c


async def chunks(client, model: str, **kwargs) -> list:
    stream = await client.chat.completions.create(model=model, messages=ASK, stream=True, **kwargs)
    return [c async for c in stream]


async def tokens(base: str, endpoint: str) -> tuple[float, float]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    found = dict(re.findall(rf'inference_proxy_tokens_total\{{direction="(\w+)",endpoint="{endpoint}"\}} ([0-9.]+)',
                            text))
    return float(found.get("in", 0)), float(found.get("out", 0))


@pytest.mark.parametrize("model", ["deepseek-reasoner", "tool-model"])
async def test_chunks_are_the_upstreams_with_the_model_the_client_named(client, direct, model):
    kwargs = {"stream_options": {"include_usage": True}, "tools": TOOLS}
    relayed = await chunks(client, f"ep-{model}", **kwargs)
    expected = await chunks(direct, model, **kwargs)
    assert relayed[0].id == "chatcmpl-fake"  # the upstream's id: passed through, not translated
    assert [c.model for c in relayed] == [f"ep-{model}"] * len(expected)
    assert ([c.model_dump(exclude={"model"}) for c in relayed]
            == [c.model_dump(exclude={"model"}) for c in expected])
    assert relayed[-1].usage.completion_tokens == 5 and relayed[-1].choices == []
    if model == "deepseek-reasoner":  # fields the translated stream has no place for reach the client
        assert "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                       for c in relayed if c.choices) == "The user says hi; answer in caps."


async def test_tool_call_stream_assembles_as_from_the_upstream(client):
    calls: dict[int, dict] = {}
    finish = None
    for c in await chunks(client, "agent", tools=TOOLS):
        for tc in c.choices[0].delta.tool_calls or ():
            call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = tc.id or call["id"]
            call["name"] += tc.function.name or ""
            call["arguments"] += tc.function.arguments or ""
        finish = c.choices[0].finish_reason or finish
    assert calls == {0: {"id": "call_1", "name": "lookup", "arguments": '{"city": "Paris"}'}}
    assert finish == "tool_calls"


async def test_usage_is_counted_and_left_out_unless_asked_for(client, endpoints):
    before = await tokens(endpoints, "chat")
    relayed = await chunks(client, "chat")
    assert all(c.choices for c in relayed) and all(c.usage is None for c in relayed)
    assert "".join(c.choices[0].delta.content or "" for c in relayed) == "<0>A<1>B<2>C<3><4>"
    after = await tokens(endpoints, "chat")
    assert (after[0] - before[0], after[1] - before[1]) == (3, 5)  # the gateway asked the upstream for it
    asked = await chunks(client, "chat", stream_options={"include_usage": True})
    assert asked[-1].usage.model_dump(exclude_none=True) == {"prompt_tokens": 3, "completion_tokens": 5,
                                                             "total_tokens": 8}
    assert (await tokens(endpoints, "chat"))[1] - after[1] == 5


async def test_an_upstream_error_mid_stream_raises_in_the_sdk_after_what_came_before(client):
    seen = []
    stream = await client.chat.completions.create(model="ep-error-stream", messages=ASK, stream=True)
    with pytest.raises(openai.APIError, match="The server had an error"):
        async for c in stream:
            seen.append(c.choices[0].delta.content)
    assert seen == ["", "<0>A", "<1>B"]


async def test_a_stream_cut_before_done_is_an_error(client):
    with pytest.raises(openai.APIError, match="ended before it was complete"):
        await chunks(client, "ep-cut-stream")


async def test_client_disconnect_cancels_the_upstream(client, upstream):
    upstream.stream_events = 50
    stream = await client.chat.completions.create(model="ep-slow-stream", messages=ASK, stream=True)
    first = await anext(aiter(stream))
    assert first.model == "ep-slow-stream"
    await stream.close()
    await asyncio.wait_for(upstream.closed.wait(), 1.0)
    assert upstream.disconnects == 1


async def test_a_legacy_functions_client_gets_the_translated_stream(client):
    relayed = await chunks(client, "agent", functions=[TOOLS[0]["function"]])
    assert relayed[0].id != "chatcmpl-fake"  # the gateway's own id: translated
    call = "".join(c.choices[0].delta.function_call.arguments or "" for c in relayed
                   if c.choices[0].delta.function_call)
    assert call == '{"city": "Paris"}' and relayed[-1].choices[0].finish_reason == "function_call"
