"""The OpenAI Agents SDK on the gateway, with its Responses model (its default) and Chat Completions model."""

from __future__ import annotations

import pytest

agents = pytest.importorskip("agents")
import openai  # noqa: E402

agents.set_tracing_disabled(True)


@pytest.fixture
async def client(base):
    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0) as c:
        yield c


def model(kind, name, client):
    if kind == "responses":
        return agents.OpenAIResponsesModel(model=name, openai_client=client)
    return agents.OpenAIChatCompletionsModel(model=name, openai_client=client)


@pytest.mark.parametrize("kind", ["responses", "chat_completions"])
async def test_agent_answers(client, kind):
    agent = agents.Agent(name="echo", instructions="be loud", model=model(kind, "chat", client))
    result = await agents.Runner.run(agent, "hello")
    assert result.final_output == "BE LOUD HELLO"


@pytest.mark.parametrize("kind", ["responses", "chat_completions"])
async def test_agent_uses_a_tool_without_parallel_calls(client, upstream, kind):
    seen = []

    @agents.function_tool
    def weather(city: str) -> str:
        """Weather in a city."""
        seen.append(city)
        return f"rain in {city}"

    agent = agents.Agent(name="w", model=model(kind, "agent", client), tools=[weather],
                         model_settings=agents.ModelSettings(parallel_tool_calls=False))
    result = await agents.Runner.run(agent, "weather in Paris?")
    assert seen == ["Paris"] and result.final_output == "RESULT: rain in Paris"
    assert upstream.requests[0]["parallel_tool_calls"] is False


async def test_streamed_run(client):
    agent = agents.Agent(name="s", model=model("responses", "chat", client))
    run = agents.Runner.run_streamed(agent, "abc")
    deltas = [e.data.delta async for e in run.stream_events()
              if e.type == "raw_response_event" and e.data.type == "response.output_text.delta"]
    assert "".join(deltas) == "<0>A<1>B<2>C<3><4>" and run.final_output == "".join(deltas)
