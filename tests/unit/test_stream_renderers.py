"""The chat stream renderers write a batch of deltas (`frames`) as the general chunk writer writes each delta
on its own: runs of text pieces are written around one encode each, and must not differ by a byte."""

from __future__ import annotations

import random

import msgspec
import pytest

from proxy.types import ChatDelta, FunctionCall, ToolCallDelta, Usage
from proxy.wire import es, openai

TEXTS = ["tok ", "", "caf\u00e9 \u65e5\u672c \U0001f642", 'a "q" \\ \n\t\x01 </script>', '","', "\u2028"]


def deltas() -> list[ChatDelta]:
    call = ToolCallDelta(index=0, id="call_1", type="function", function=FunctionCall(name="f", arguments='{"a"'))
    out = [ChatDelta(role="assistant", content="", id="c1", model="m")]
    out += [ChatDelta(content=t, id="c1", model="m") for t in TEXTS]
    out += [ChatDelta(content="other id", id="c2", model="m"), ChatDelta(content="other model", id="c2", model="m2"),
            ChatDelta(content="no id"), ChatDelta(content="no id again")]
    out += [ChatDelta(reasoning="thinking", id="c2"), ChatDelta(content="x", reasoning="y"),
            ChatDelta(tool_calls=[call]), ChatDelta(refusal="no"), ChatDelta(content="with logprobs",
                                                                               logprobs=msgspec.Raw(b'{"content":[]}')),
            ChatDelta(content="t", id="c1", model="m"), ChatDelta(finish_reason="stop", content="last"),
            ChatDelta(usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3), id="c1", model="m")]
    return out


def batches(items: list[ChatDelta], seed: int) -> list[list[ChatDelta]]:
    rnd = random.Random(seed)
    out, i = [], 0
    while i < len(items):
        n = rnd.randint(1, 6)
        out.append(items[i:i + n])
        i += n
    return out


@pytest.mark.parametrize("seed", range(20))
def test_es_chat_stream_frames_as_each_delta_alone(seed):
    items = deltas()
    random.Random(seed).shuffle(items)
    renderer = es.ChatStream("stream-id", "the-model")
    expected = b"".join(es.chat_chunk_frame(d, "stream-id", "the-model") for d in items)
    assert b"".join(renderer.frames(b) for b in batches(items, seed)) == expected
    assert renderer.frame(ChatDelta(content="one")) == es.chat_chunk_frame(ChatDelta(content="one"), "stream-id",
                                                                             "the-model")


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("seed", range(10))
def test_openai_chat_stream_frames_as_each_delta_alone(seed, include_usage, legacy):
    items = deltas()
    random.Random(seed).shuffle(items)
    renderer = openai.ChatStream("the-model", include_usage, legacy)
    expected = b"".join(filter(None, (openai.chat_chunk_frame(d, renderer.id, "the-model", renderer.created,
                                                              include_usage, legacy) for d in items)))
    assert b"".join(renderer.frames(b) for b in batches(items, seed)) == expected
    assert renderer.frame(ChatDelta(role="assistant")) == openai.chat_chunk_frame(
        ChatDelta(role="assistant"), renderer.id, "the-model", renderer.created, include_usage, legacy)
    assert renderer.frames([]) == b"" and renderer.frame(ChatDelta()) is None


def test_text_stream_writes_text_completion_events():
    renderer = openai.TextStream("the-model", False)
    items = [ChatDelta(content="a"), ChatDelta(content="b"), ChatDelta(finish_reason="stop")]
    expected = b"".join(openai.text_chunk_frame(d, renderer.id, "the-model", renderer.created, False) for d in items)
    assert renderer.frames(items) == expected
