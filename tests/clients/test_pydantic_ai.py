"""pydantic-ai agents on the gateway, through its Chat Completions and Responses models."""

from __future__ import annotations

import pytest

pytest.importorskip("pydantic_ai")
from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402


def provider(base):
    return OpenAIProvider(base_url=f"{base}/v1", api_key="unused")


@pytest.mark.parametrize("kind", [OpenAIChatModel, OpenAIResponsesModel])
async def test_agent_text_and_stream(base, kind):
    agent = Agent(kind("chat", provider=provider(base)))
    assert (await agent.run("hello agent")).output == "HELLO AGENT"
    async with agent.run_stream("abc") as run:
        text = await run.get_output()
    assert text == "<0>A<1>B<2>C<3><4>"


@pytest.mark.parametrize("kind", [OpenAIChatModel, OpenAIResponsesModel])
async def test_agent_calls_a_tool(base, kind):
    agent = Agent(kind("agent", provider=provider(base)))
    seen = []

    @agent.tool_plain
    def weather(city: str) -> str:
        """Weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    result = await agent.run("weather in Paris?")
    assert seen == ["Paris"] and result.output == "RESULT: sunny in Paris"
