"""litellm as a client of the gateway (its `openai/` provider with `api_base`)."""

from __future__ import annotations

import pytest

litellm = pytest.importorskip("litellm")


async def test_completion_stream_and_embedding(base):
    args = {"api_base": f"{base}/v1", "api_key": "unused"}
    resp = await litellm.acompletion(model="openai/chat", messages=[{"role": "user", "content": "hi"}], **args)
    assert resp.choices[0].message.content == "HI" and resp.usage.total_tokens == 4
    stream = await litellm.acompletion(model="openai/chat", messages=[{"role": "user", "content": "abc"}],
                                       stream=True, **args)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "<0>A<1>B<2>C<3><4>"
    emb = await litellm.aembedding(model="openai/emb", input=["hello"], **args)
    assert len(emb.data[0]["embedding"]) == 8


async def test_tools_and_extra_params(base, upstream):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    resp = await litellm.acompletion(model="openai/agent", api_base=f"{base}/v1", api_key="unused",
                                     messages=[{"role": "user", "content": "weather?"}], tools=tools,
                                     parallel_tool_calls=False, top_k=3)
    assert resp.choices[0].message.tool_calls[0].function.name == "lookup"
    sent = upstream.requests[-1]
    assert sent["parallel_tool_calls"] is False and sent["top_k"] == 3
