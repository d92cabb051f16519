"""The OpenAI wire format as the gateway speaks it on `/v1`: request bodies, answers, chunks, errors."""

from __future__ import annotations

import base64
import struct
from typing import Any

import msgspec

from ..errors import GatewayError, UpstreamError
from ..types import ChatDelta, ChatResult, ToolCall, Usage

_encoder = msgspec.json.Encoder()
_float_list = msgspec.json.Decoder(list[float])

# ------------------------------------------------------------------------------ requests


class EmbeddingsBody(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[Any]  # strings, or token ids (rejected: the backends take text)
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class MessageBody(msgspec.Struct, kw_only=True):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatBody(msgspec.Struct, kw_only=True):
    model: str
    messages: list[MessageBody]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


class CompletionsBody(msgspec.Struct, kw_only=True):
    model: str
    prompt: str | list[str]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


class RerankDocument(msgspec.Struct):
    text: str


class RerankBody(msgspec.Struct, kw_only=True):
    model: str
    query: str
    documents: list[str | RerankDocument]
    top_n: int | None = None
    return_documents: bool | None = None


# OpenAI parameters the gateway cannot honour: rejected when set to anything but their no-op value,
# never silently dropped. Fields OpenAI does not define at all are accepted and logged.
UNSUPPORTED_CHAT_PARAMS: dict[str, Any] = {
    "frequency_penalty": 0, "presence_penalty": 0, "logit_bias": None, "logprobs": False, "top_logprobs": None,
    "parallel_tool_calls": True, "modalities": None, "audio": None, "prediction": None, "reasoning_effort": None,
    "service_tier": None, "store": False, "metadata": None, "functions": None, "function_call": None,
    "web_search_options": None, "best_of": 1, "echo": False, "suffix": None,
}

# ------------------------------------------------------------------------------ answers


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


class _TextChoice(msgspec.Struct):
    text: str
    index: int
    logprobs: None
    finish_reason: str | None


class TextCompletion(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[_TextChoice]
    usage: Usage | None = None


def render_text_completion(result: ChatResult, model: str, created: int) -> bytes:
    return _encoder.encode(TextCompletion(result.id or "cmpl", "text_completion", result.created or created, model,
                                          [_TextChoice(result.content or "", 0, None, result.finish_reason)],
                                          result.usage))


class _EmbeddingItem(msgspec.Struct):
    object: str
    index: int
    embedding: msgspec.Raw | list[float] | list[int] | str


class _EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct):
    object: str
    data: list[_EmbeddingItem]
    model: str
    usage: _EmbeddingUsage


def to_base64(vector: msgspec.Raw | list[float]) -> str:
    """Little-endian float32, as the `openai` SDK decodes `encoding_format="base64"`."""
    values = _float_list.decode(vector) if isinstance(vector, msgspec.Raw) else vector
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def render_embeddings(vectors: list[Any], model: str, usage: Usage | None, encoding_format: str) -> bytes:
    if encoding_format == "base64":
        items = [_EmbeddingItem("embedding", i, to_base64(v)) for i, v in enumerate(vectors)]
    else:
        items = [_EmbeddingItem("embedding", i, v) for i, v in enumerate(vectors)]
    tokens = usage.prompt_tokens if usage else 0
    return _encoder.encode(EmbeddingList("list", items, model, _EmbeddingUsage(tokens, usage.total_tokens
                                                                                 if usage else tokens)))


# ------------------------------------------------------------------------------ chunks


class _ChunkDelta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _ChunkChoice(msgspec.Struct):
    index: int
    delta: _ChunkDelta
    finish_reason: str | None


class _Chunk(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[_ChunkChoice]
    usage: Usage | None = None


class _TextChunkChoice(msgspec.Struct):
    text: str
    index: int
    logprobs: None
    finish_reason: str | None


class _TextChunk(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[_TextChunkChoice]
    usage: Usage | None = None


DONE_FRAME = b"data: [DONE]\n\n"


def _frame(value: Any) -> bytes:
    return b"data: " + _encoder.encode(value) + b"\n\n"


def chat_chunk_frame(delta: ChatDelta, stream_id: str, model: str, created: int, include_usage: bool,
                     tool_calls: list[dict[str, Any]] | None) -> bytes | None:
    has_choice = (delta.content is not None or delta.role is not None or tool_calls or delta.refusal is not None
                  or delta.finish_reason is not None)
    if has_choice:
        choice = _ChunkChoice(0, _ChunkDelta(delta.role, delta.content, delta.refusal, tool_calls), delta.finish_reason)
        chunk = _Chunk(stream_id, "chat.completion.chunk", created, model, [choice],
                       delta.usage if include_usage else None)
        return _frame(chunk)
    if delta.usage is not None and include_usage:
        return _frame(_Chunk(stream_id, "chat.completion.chunk", created, model, [], delta.usage))
    return None


def text_chunk_frame(delta: ChatDelta, stream_id: str, model: str, created: int, include_usage: bool) -> bytes | None:
    if delta.content is not None or delta.finish_reason is not None:
        choice = _TextChunkChoice(delta.content or "", 0, None, delta.finish_reason)
        return _frame(_TextChunk(stream_id, "text_completion", created, model, [choice],
                                 delta.usage if include_usage else None))
    if delta.usage is not None and include_usage:
        return _frame(_TextChunk(stream_id, "text_completion", created, model, [], delta.usage))
    return None


# ------------------------------------------------------------------------------ errors

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 501: "not_implemented_error",
          502: "upstream_error", 503: "service_unavailable_error"}


def status_for(err: GatewayError) -> int:
    """Upstream 5xx answers are 502 here: an OpenAI client should see a gateway failure, and retry."""
    if isinstance(err, UpstreamError) and err.upstream_status >= 500:
        return 502
    return err.status


_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def error_body(err: GatewayError) -> dict[str, Any]:
    status = status_for(err)
    code = getattr(err, "openai_code", None) or getattr(err, "provider_code", None) or _CODES.get(status)
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": err.reason, "type": kind, "param": err.param, "code": code}}


def error_frame(err: GatewayError) -> bytes:
    return _frame(error_body(err))


def encode(value: Any) -> bytes:
    return _encoder.encode(value)
