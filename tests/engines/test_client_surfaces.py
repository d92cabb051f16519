"""The Anthropic Messages API and the Responses API answered by a local model (real weights)."""

from __future__ import annotations

import pytest

CHAT = ".smollm2-135m-instruct-chat-elasticsearch"
QUESTION = "What is the capital of France? Answer in one sentence."


async def test_messages_api_streams_from_a_local_model(local_gateway):
    import anthropic

    async with anthropic.AsyncAnthropic(base_url=local_gateway.url, api_key="unused", max_retries=0,
                                        timeout=120) as client:
        async with client.messages.stream(model=CHAT, max_tokens=40,
                                          messages=[{"role": "user", "content": QUESTION}]) as stream:
            pieces = [t async for t in stream.text_stream]
            final = await stream.get_final_message()
    assert len(pieces) >= 5 and "Paris" in "".join(pieces)
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


async def test_responses_api_from_a_local_model(local_gateway):
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=f"{local_gateway.url}/v1", api_key="unused", max_retries=0,
                           timeout=120) as client:
        first = await client.responses.create(model=CHAT, input=QUESTION, max_output_tokens=40)
        assert "Paris" in first.output_text and first.usage.output_tokens > 0
        with pytest.raises(Exception) as exc:  # a parameter the engines do not map is refused by name
            await client.responses.create(model=CHAT, input="x", reasoning={"effort": "low"})
        assert "[reasoning_effort]" in str(exc.value)
