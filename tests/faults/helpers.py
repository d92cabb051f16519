"""Assertions shared by the fault suite: each surface's error shape, SSE parsing, and 'still serving'."""

from __future__ import annotations

import json
from typing import Any

from tests.sse import openai_events, parse_sse

SECRET = "sk-fault-secret"

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


# ---------------------------------------------------------------------- error shapes


def assert_es_envelope(body: Any, status: int) -> dict:
    """`{"error": {"root_cause": [{type, reason}], "type", "reason"}, "status"}` (es-inference-api §5.1)."""
    assert isinstance(body, dict) and set(body) == {"error", "status"}, body
    assert body["status"] == status, body
    err = body["error"]
    assert isinstance(err["type"], str) and isinstance(err["reason"], str) and err["reason"], body
    assert err["root_cause"] == [{"type": err["type"], "reason": err["reason"]}], body
    assert SECRET not in json.dumps(body) and "Traceback" not in err["reason"]
    return err


def assert_openai_error(body: Any) -> dict:
    """`{"error": {"message", "type", "param", "code"}}` (OpenAI)."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), err
    assert SECRET not in json.dumps(body) and "Traceback" not in err["message"]
    return err


def assert_chat_error(body: Any) -> dict:
    """ES chat_completion errors are OpenAI-style: `{"error": {"code", "message", "type"[, "param"]}}` (§5.3)."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert {"code", "message", "type"} <= set(err) <= {"code", "message", "type", "param"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert SECRET not in json.dumps(body) and "Traceback" not in err["message"]
    return err


# ---------------------------------------------------------------------- SSE


def es_stream_error(raw: bytes, status: int | None = None) -> dict:
    """An ES completion stream that ended with one `error` event and no `[DONE]`: returns the error."""
    events = parse_sse(raw)
    assert events and events[-1][0] == "error", events[-3:]
    assert all(e == "message" for e, _ in events[:-1]) and ("message", "[DONE]") not in events
    body = json.loads(events[-1][1])
    return assert_es_envelope(body, status if status is not None else body.get("status"))


def es_chat_stream_error(raw: bytes) -> dict:
    events = parse_sse(raw)
    assert events and events[-1][0] == "error", events[-3:]
    assert ("message", "[DONE]") not in events
    return assert_chat_error(json.loads(events[-1][1]))


def openai_stream_error(raw: bytes) -> dict:
    events = openai_events(raw)
    assert events and "[DONE]" not in events, events[-3:]
    return assert_openai_error(json.loads(events[-1]))


def es_completion_text(raw: bytes) -> str:
    events = parse_sse(raw)
    assert events[-1] == ("message", "[DONE]"), events[-2:]
    return "".join(json.loads(d)["completion"][0]["delta"] for _, d in events[:-1])


def openai_chat_text(raw: bytes) -> str:
    events = openai_events(raw)
    assert events[-1] == "[DONE]", events[-2:]
    return "".join((c["choices"][0]["delta"].get("content") or "") for c in map(json.loads, events[:-1])
                   if c["choices"])


# ---------------------------------------------------------------------- the gateway still serves


async def still_serving(http, raw) -> None:
    """After a fault: good requests on both surfaces, streamed and not, through the same upstream."""
    raw.clear()
    async with http.post("/_inference/text_embedding/emb", json={"input": ["a", "bb"]}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert [v["embedding"] for v in body["text_embedding"]] == [[0.25, -0.5, 1.0], [0.25, -0.5, 2.0]]
    async with http.post("/_inference/completion/comp/_stream", json={"input": "x"}) as resp:
        assert resp.status == 200
        assert es_completion_text(await resp.read()) == "Hello"
    async with http.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT}) as resp:
        assert resp.status == 200
        assert openai_chat_text(await resp.read()) == "Hello"
