"""Chat Completions parameters as apps send them, through the official `openai` SDK: passed on to an
OpenAI-format upstream, mapped for Anthropic, refused by name where a provider has no equivalent;
usage details, model aliases, bounded retries and the rate-limit 429."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import make_settings
from tests.integration.conftest import oai, put


@pytest.fixture
def gateway_settings(tmp_path, claude):
    return make_settings(tmp_path, upstreams={"anthropic": claude.url},
                         model_aliases={"meta-llama/Llama-3.1-8B-Instruct": "chat", "GPT-4o": "chat"},
                         endpoint_max_retries={"flaky": 1})


@pytest.fixture
async def endpoints(http, upstream, claude):
    await put(http, "chat_completion", "chat", oai(upstream))
    await put(http, "chat_completion", "details", oai(upstream, "details"))
    await put(http, "chat_completion", "claude", {"service": "anthropic", "service_settings": {
        "api_key": claude.api_key, "model_id": "claude-test"}, "task_settings": {"max_tokens": 64}})


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


async def test_standard_parameters_reach_an_openai_upstream(client, endpoints, upstream):
    await client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], tools=[TOOL], parallel_tool_calls=False,
        frequency_penalty=0.5, presence_penalty=-0.5, logit_bias={"50256": -100}, reasoning_effort="low",
        service_tier="default", metadata={"app": "t"}, store=False, prediction={"type": "content", "content": "x"},
        extra_body={"top_k": 4, "repetition_penalty": 1.1, "prompt_cache_key": "k1", "safety_identifier": "s1"})
    sent = upstream.requests[-1]
    assert sent["parallel_tool_calls"] is False
    assert sent["frequency_penalty"] == 0.5 and sent["presence_penalty"] == -0.5
    assert sent["logit_bias"] == {"50256": -100} and sent["reasoning_effort"] == "low"
    assert sent["service_tier"] == "default" and sent["metadata"] == {"app": "t"} and sent["store"] is False
    assert sent["prediction"] == {"type": "content", "content": "x"}
    assert (sent["top_k"], sent["repetition_penalty"], sent["prompt_cache_key"], sent["safety_identifier"]) == (
        4, 1.1, "k1", "s1")


async def test_answers_the_gateway_cannot_carry_are_refused(client, endpoints):
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}],
                                             modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"})
    assert exc.value.param in ("audio", "modalities")
    await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}],
                                         modalities=["text"])
    with pytest.raises(openai.BadRequestError) as exc:  # its citations (annotations) would be lost
        await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}],
                                             web_search_options={})
    assert exc.value.param == "web_search_options"


async def test_logprobs_come_back(client, endpoints):
    resp = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}],
                                                logprobs=True, top_logprobs=2)
    assert resp.choices[0].logprobs.content[0].token == "H"
    assert resp.choices[0].logprobs.content[0].logprob == -0.25


async def test_legacy_functions_become_tools_and_answer_as_function_call(client, http, endpoints, upstream):
    await put(http, "chat_completion", "tools", oai(upstream, "tool-model"))
    fn = TOOL["function"]
    resp = await client.chat.completions.create(model="tools", messages=[{"role": "user", "content": "weather?"}],
                                                functions=[fn], function_call={"name": "get_weather"})
    sent = upstream.requests[-1]
    assert sent["tools"] == [TOOL] and sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "functions" not in sent and "function_call" not in sent
    choice = resp.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    assert choice.message.function_call.arguments == '{"city": "Paris"}'
    stream = await client.chat.completions.create(model="tools", messages=[{"role": "user", "content": "w?"}],
                                                  functions=[fn], stream=True)
    name, args, finish = "", "", None
    async for chunk in stream:
        delta = chunk.choices[0].delta
        if delta.function_call:
            name += delta.function_call.name or ""
            args += delta.function_call.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, args, finish) == ("get_weather", '{"city": "Paris"}', "function_call")


async def test_usage_details_and_zero_counts_are_kept(client, endpoints):
    resp = await client.chat.completions.create(model="details", messages=[{"role": "user", "content": "hi"}])
    usage = resp.usage
    assert usage.completion_tokens == 0 and "completion_tokens" in usage.model_fields_set
    assert usage.prompt_tokens_details.cached_tokens == 1920
    assert usage.completion_tokens_details.reasoning_tokens == 0


async def test_anthropic_maps_what_it_has_and_refuses_the_rest_by_name(client, endpoints, claude):
    await client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}], tools=[TOOL], parallel_tool_calls=False)
    sent = claude.requests[-1]
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    for kwargs, param in (({"logit_bias": {"1": 1}}, "logit_bias"), ({"frequency_penalty": 0.2}, "frequency_penalty"),
                          ({"extra_body": {"repetition_penalty": 1.1}}, "repetition_penalty"),
                          ({"service_tier": "flex"}, "service_tier")):
        before = len(claude.requests)
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                                 **kwargs)
        assert exc.value.param == param and "[anthropic]" in exc.value.message
        assert len(claude.requests) == before  # refused before anything was sent


async def test_aliases_reach_their_endpoint_and_are_listed(client, endpoints):
    resp = await client.chat.completions.create(model="meta-llama/Llama-3.1-8B-Instruct",
                                                messages=[{"role": "user", "content": "via alias"}])
    assert resp.choices[0].message.content == "VIA ALIAS" and resp.model == "meta-llama/Llama-3.1-8B-Instruct"
    models = {m.id: m for m in (await client.models.list()).data}
    assert models["GPT-4o"].model_extra["alias_of"] == "chat"
    assert (await client.models.retrieve("meta-llama/Llama-3.1-8B-Instruct")).model_extra["alias_of"] == "chat"


async def test_retries_are_bounded_by_count(client, http, endpoints, upstream):
    await put(http, "chat_completion", "flaky", oai(upstream))
    upstream.fail_next(500, "still broken", times=20)
    before = len(upstream.requests)
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "x"}])
    assert len(upstream.requests) - before == 2  # one try and the endpoint's one retry
    assert time.monotonic() - started < 10
    upstream.faults.clear()
    upstream.fail_next(500, "broken", times=20)
    before = len(upstream.requests)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    assert len(upstream.requests) - before == 3  # the gateway default: two retries, as the official SDKs do
    upstream.faults.clear()


async def test_rate_limit_429_says_the_limit(client, http, upstream, endpoints):
    # embeddings: one request a minute is a slot 60 s away, beyond the 30 s default deadline: refused at once
    await put(http, "text_embedding", "limited", {"service": "openai", "service_settings": {
        "api_key": upstream.api_key, "model_id": "e", "url": f"{upstream.url}/v1/embeddings",
        "rate_limit": {"requests_per_minute": 1}}})
    await client.embeddings.create(model="limited", input="x")
    with pytest.raises(openai.RateLimitError) as exc:
        await client.embeddings.create(model="limited", input="x")
    assert "rate limit of inference endpoint [limited] ([1] requests per minute) was reached" in exc.value.message
    assert int(exc.value.response.headers["Retry-After"]) >= 1
