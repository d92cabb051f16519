"""Reasoning on `chat_completion` (ES `org.elasticsearch.inference.completion.Reasoning` in the request,
`Message.reasoning` in answers and chunk deltas), through the official client and the raw SSE stream."""

from __future__ import annotations

import json

import pytest

from tests.fakes.openai_upstream import REASONING
from tests.integration.test_es_perform import parse_sse


async def _chat(es, upstream, service="openai", inference_id="chat", model="gpt-5"):
    await es.inference.put(task_type="chat_completion", inference_id=inference_id, inference_config={
        "service": service, "service_settings": {"api_key": upstream.api_key,
                                                 "model_id": model,
                                                 "url": f"{upstream.url}/v1/chat/completions"}})


async def _stream(http, gateway, inference_id, body):
    async with http.post(gateway.make_url(f"/_inference/chat_completion/{inference_id}/_stream"), json=body) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_effort_maps_to_openai_reasoning_effort(es, http, gateway, upstream):
    await _chat(es, upstream)
    status, _, raw = await _stream(http, gateway, "chat", {"messages": [{"role": "user", "content": "hi"}],
                                                           "reasoning": {"effort": "HIGH"}})
    assert status == 200 and parse_sse(raw.decode())[-1] == ("message", "[DONE]")
    assert upstream.requests[-1]["reasoning_effort"] == "high"


async def test_reasoning_is_streamed_back_in_the_es_delta(es, http, gateway, upstream):
    await _chat(es, upstream, service="deepseek", inference_id="r1", model="deepseek-reasoner")
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": "HI", "reasoning": "earlier thoughts"},
               {"role": "user", "content": "hi"}]
    status, _, raw = await _stream(http, gateway, "r1", {"messages": history})
    assert status == 200
    deltas = [json.loads(d)["choices"][0]["delta"] for e, d in parse_sse(raw.decode())[:-1]
              if json.loads(d)["choices"]]
    thoughts = [d["reasoning"] for d in deltas if "reasoning" in d]
    assert thoughts == REASONING
    assert all(list(d) == ["reasoning"] for d in deltas if "reasoning" in d)
    # DeepSeek refuses reasoning_content in input messages: an earlier turn's reasoning is not resent
    assert all("reasoning" not in m and "reasoning_content" not in m for m in upstream.requests[-1]["messages"])
    # non-streaming: the message carries it too
    async with http.post(gateway.make_url("/_inference/chat_completion/r1"),
                         json={"messages": [{"role": "user", "content": "hi"}]}) as r:
        body = await r.json()
    assert body["choices"][0]["message"]["reasoning"] == "".join(REASONING)


@pytest.mark.parametrize("reasoning, reason", [
    ({}, "Required one of fields [effort, max_tokens, enabled], but none were specified. "),
    ({"effort": "high", "max_tokens": 100}, "The following fields are not allowed together: [effort, max_tokens] "),
    ({"enabled": False}, "Either [effort] or [max_tokens] must not be null, or [enabled] must be true."),
    ({"effort": "extreme"}, "Unrecognized type [extreme] in [effort], must be one of "
                            "[xhigh, high, medium, low, minimal, none]"),
    ({"effort": "low", "summary": "long"}, "Unrecognized type [long] in [summary], must be one of "
                                           "[auto, concise, detailed]"),
])
async def test_reasoning_is_validated_as_elasticsearch_does(es, http, gateway, upstream, reasoning, reason):
    await _chat(es, upstream)
    status, ctype, raw = await _stream(http, gateway, "chat", {"messages": [{"role": "user", "content": "hi"}],
                                                               "reasoning": reasoning})
    assert status == 400 and ctype.startswith("application/json")  # parsed before the stream opens
    error = json.loads(raw)["error"]
    assert error["reason"].endswith("[UnifiedCompletionRequest] failed to parse field [reasoning]")
    assert error["caused_by"]["reason"] == reason
    assert upstream.requests == []


async def test_reasoning_a_provider_cannot_take_is_refused_clearly(es, http, gateway, upstream):
    # DeepSeek reasons by model choice (deepseek-reasoner); its Chat Completions take no reasoning setting
    await _chat(es, upstream, service="deepseek", inference_id="d", model="deepseek-chat")
    status, _, raw = await _stream(http, gateway, "d", {"messages": [{"role": "user", "content": "hi"}],
                                                        "reasoning": {"effort": "low"}})
    assert status == 400
    text = raw.decode()
    assert "The [deepseek] service does not support the [reasoning] parameter" in text
    await _chat(es, upstream, inference_id="o")  # OpenAI takes an effort, not a token budget
    status, _, raw = await _stream(http, gateway, "o", {"messages": [{"role": "user", "content": "hi"}],
                                                        "reasoning": {"max_tokens": 500}})
    assert status == 400 and "[reasoning.max_tokens]" in raw.decode()
    assert upstream.requests == []
