"""The OpenAI wire format as the gateway answers it: chat.completion objects and chunks."""

from __future__ import annotations

from typing import Any

import msgspec

from ..types import ChatResult, ToolCall, Usage

_encoder = msgspec.json.Encoder()


class _Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | None
    tool_calls: list[ToolCall] | None = None


class _Choice(msgspec.Struct):
    index: int
    message: _Message
    finish_reason: str | None


class ChatCompletion(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[_Choice]
    usage: Usage | None = None


def chat_completion(result: ChatResult, model: str) -> ChatCompletion:
    message = _Message("assistant", result.content, result.tool_calls or None)
    return ChatCompletion(result.id, "chat.completion", result.created, result.model or model,
                          [_Choice(0, message, result.finish_reason)], result.usage)


def render_chat_completion(result: ChatResult, model: str) -> bytes:
    return _encoder.encode(chat_completion(result, model))


def encode(value: Any) -> bytes:
    return _encoder.encode(value)
