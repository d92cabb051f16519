"""The pass-through relay (`proxy.wire.openai_relay`) over upstream streams cut at every byte, in the
framings providers write: the client must get the upstream's events, each with its model rewritten,
whatever the reads were, and the usage counted once."""

from __future__ import annotations

import json

import pytest

from adapters.openai_compat import OpenAIStreamParser
from proxy.errors import GatewayError, StreamCut
from proxy.wire.openai_relay import ChatRelay
from tests.sse import openai_events


def chunk(i: int, **extra) -> dict:
    return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 7, "model": "up-model",
            "choices": [{"index": 0, "delta": {"content": f"t{i} \"data: [DONE]\"\n"}, "finish_reason": None}],
            **extra}


USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
COMPACT = [chunk(i) for i in range(4)] + [{**chunk(9), "choices": [], "usage": USAGE}]
NULLS = [chunk(i, usage=None) for i in range(4)] + [{**chunk(9), "choices": [], "usage": USAGE}]
LAST_CARRIES_USAGE = [chunk(i) for i in range(3)] + [chunk(3, usage=USAGE)]  # Mistral, Fireworks


def sse(events: list[dict], sep: str = "\n", spaced: bool = False, comment: bool = False) -> bytes:
    dump = (lambda e: json.dumps(e)) if spaced else (lambda e: json.dumps(e, separators=(",", ":")))
    out = ": keep-alive" + sep * 2 if comment else ""
    out += "".join(f"data: {dump(e)}{sep}{sep}" for e in events) + f"data: [DONE]{sep}{sep}"
    return out.encode()


def relay(pieces: list[bytes], include_usage: bool) -> tuple[bytes, list, GatewayError | None]:
    r, parser = ChatRelay("client-name", include_usage), OpenAIStreamParser()
    data, usage = b"", []
    for piece in [*pieces, None]:
        out = r.feed(piece, parser) if piece is not None else r.close(parser)
        data += out.data
        usage += out.usage
        if out.error is not None:
            return data, usage, out.error
    return data, usage, None


def expected(events: list[dict], include_usage: bool) -> list[dict]:
    out = []
    for e in events:
        e = {**e, "model": "client-name"}
        if not include_usage and isinstance(e.get("usage"), dict):
            del e["usage"]
            if not e["choices"]:
                continue
        out.append(e)
    return out


@pytest.mark.parametrize("events", [COMPACT, NULLS, LAST_CARRIES_USAGE], ids=["compact", "usage-nulls", "last-usage"])
@pytest.mark.parametrize("framing", [{}, {"spaced": True}, {"sep": "\r\n"}, {"comment": True}],
                         ids=["lf", "spaced", "crlf", "comment"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_every_split_gives_the_upstream_events_with_the_client_model(events, framing, include_usage):
    raw = sse(events, **framing)
    want = expected(events, include_usage)
    for cut in range(len(raw) + 1):
        data, usage, err = relay([raw[:cut], raw[cut:]], include_usage)
        assert err is None
        assert [json.loads(e) for e in openai_events(data)] == want, cut
        assert [u.completion_tokens for u in usage] == [4], cut


def test_one_byte_at_a_time():
    raw = sse(NULLS)
    data, usage, err = relay([raw[i:i + 1] for i in range(len(raw))], True)
    assert err is None and [json.loads(e) for e in openai_events(data)] == expected(NULLS, True)
    assert len(usage) == 1


def test_an_error_event_ends_the_stream_after_what_came_before():
    raw = sse(COMPACT[:2]).replace(b"data: [DONE]\n\n", b'data: {"error":{"message":"overloaded"}}\n\n')
    data, usage, err = relay([raw], True)
    assert "overloaded" in err.reason and len(openai_events(data)) == 2


@pytest.mark.parametrize("bad", [b"data: not json\n\n", b'data: {"choices": [{"delta": {"content": 5}}]}\n\n'])
def test_a_malformed_event_is_an_error(bad):
    data, _, err = relay([sse(COMPACT[:1])[:-len(b"data: [DONE]\n\n")] + bad + sse(COMPACT[1:2])], True)
    assert "malformed" in err.reason and len(openai_events(data)) == 1


def test_a_stream_without_done_is_cut():
    raw = sse(COMPACT)[:-len(b"data: [DONE]\n\n")]
    data, _, err = relay([raw], True)
    assert isinstance(err, StreamCut) and len(openai_events(data)) == len(COMPACT)
