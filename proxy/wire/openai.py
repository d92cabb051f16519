"""The OpenAI wire format as the gateway speaks it on `/v1`: request bodies, answers, chunks, errors."""

from __future__ import annotations

import base64
import logging
import os
import struct
import time
import uuid
from typing import Annotated, Any

import msgspec

from .. import token_ids
from ..errors import GatewayError, NotFoundError, StatusError, UpstreamError
from ..types import (ChatDelta, ChatMessage, ChatRequest, ChatResult, ContentPart, EmbedRequest, FunctionCall,
                     FunctionDef, FunctionName, NamedToolChoice, RerankRequest, RerankResult, TaskType, Tool, ToolCall,
                     ToolChoice, Usage)
from ..validation import check_input_limits
from . import FrameByFrame

log = logging.getLogger("proxy.openai")

_encoder = msgspec.json.Encoder()
_float_list = msgspec.json.Decoder(list[float])

# ------------------------------------------------------------------------------ requests


class EmbeddingsBody(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[Any]  # strings, or token ids (passed on or decoded to text: EmbedRequest.token_ids)
    encoding_format: str = "float"
    # OpenAI: an integer of at least 1; the upper bound is Java's Integer.MAX_VALUE, the type of ES `dimensions`
    dimensions: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    user: str | None = None


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class MessageBody(msgspec.Struct, kw_only=True):
    role: str
    content: str | list[ContentPart] | None = None
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
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    reasoning_effort: str | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # deprecated by OpenAI in favour of tools / tool_choice, which they become
    functions: list[FunctionDef] | None = None
    function_call: str | FunctionName | None = None


class CompletionsBody(msgspec.Struct, kw_only=True):
    model: str
    prompt: str | list[str]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
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


# Legacy-completions parameters that a chat upstream cannot honour: refused unless set to their no-op value.
UNSUPPORTED_COMPLETION_PARAMS: dict[str, Any] = {"logprobs": None, "best_of": 1, "echo": False, "suffix": None}
# Answers with parts the canonical answer does not carry (`message.audio`, web search `annotations`): refused.
UNSUPPORTED_CHAT_PARAMS: dict[str, Any] = {"audio": None, "modalities": ["text"], "web_search_options": None}


def legacy_functions(body: ChatBody) -> tuple[list[Tool] | None, ToolChoice | None]:
    """`functions` / `function_call` as the `tools` / `tool_choice` that replaced them."""
    tools = body.tools
    choice = body.tool_choice
    if body.functions:
        tools = (tools or []) + [Tool(function=f) for f in body.functions]
    if body.function_call is not None and choice is None:
        if isinstance(body.function_call, FunctionName):
            choice = NamedToolChoice(function=body.function_call)
        else:
            choice = body.function_call  # "auto" / "none"
    return tools, choice




class InvalidRequest(StatusError):
    status = 400
    es_type = "invalid_request_error"


class ModelNotFound(NotFoundError):
    openai_code = "model_not_found"


def decode_with_extra(raw: bytes, struct_type: type,
                      unsupported: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """A request body as `struct_type`, and the fields it does not define (a client's `extra_body`,
    OpenAI-only parameters), which the caller passes on or refuses: never drops. OpenAI-style errors for
    bad JSON, wrong types and unsupported parameters."""
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # invalid UTF-8 in a string is a client error too
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object")
    for name, noop in (unsupported or {}).items():
        if name in data and data[name] is not None and data[name] != noop:
            raise InvalidRequest(f"The parameter [{name}] is not supported by this gateway", param=name)
    known = set(struct_type.__struct_fields__)
    extra = {k: v for k, v in data.items() if k not in known and k not in (unsupported or {})}
    try:
        return msgspec.convert({k: v for k, v in data.items() if k in known}, struct_type), extra
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = text.rpartition("`$.")[2].rstrip("`") if "`$." in text else None
        raise InvalidRequest(f"Invalid request: {text}", param=param) from None


def decode(raw: bytes, struct_type: type, path: str, unsupported: dict[str, Any] | None = None) -> Any:
    """A body whose undefined fields are logged and ignored, as OpenAI ignores them (embeddings, rerank)."""
    body, extra = decode_with_extra(raw, struct_type, unsupported)
    if extra:
        log.info("ignoring unknown request fields %s on %s", sorted(extra), path)
    return body


# ------------------------------------------------------------------------------ to canonical requests


def to_embed_request(body: EmbeddingsBody, task: TaskType, max_inputs: int, max_input_chars: int) -> EmbedRequest:
    if task == TaskType.SPARSE_EMBEDDING:
        raise InvalidRequest(f"The model `{body.model}` produces sparse embeddings, which the OpenAI embeddings "
                             f"format cannot carry; use POST /_inference/sparse_embedding/{body.model}", param="model")
    if body.encoding_format not in ("float", "base64"):
        raise InvalidRequest("encoding_format must be [float] or [base64]", param="encoding_format")
    inputs = [body.input] if isinstance(body.input, str) else body.input
    if not inputs:
        raise InvalidRequest("input cannot be an empty array", param="input")
    ids = None
    if all(isinstance(i, int) for i in inputs):  # one input as token ids
        ids = [inputs]
    elif all(isinstance(i, list) for i in inputs):  # several, as token ids
        ids = inputs
    elif not all(isinstance(i, str) for i in inputs):
        raise InvalidRequest("input must be a string, an array of strings, or token ids", param="input")
    if ids is not None:
        inputs = token_ids.decode(ids)  # also checks every id
    check_input_limits(inputs, max_inputs, max_input_chars)
    return EmbedRequest(inputs=list(inputs), dimensions=body.dimensions, user=body.user, token_ids=ids)


def _stop(stop: str | list[str] | None) -> list[str] | None:
    return [stop] if isinstance(stop, str) else stop


def _check_n(n: int | None) -> None:
    if n is not None and n != 1:
        raise InvalidRequest("Only n=1 is supported", param="n")


def to_chat_request(body: ChatBody, extra: dict[str, Any]) -> ChatRequest:
    """`extra`: the body's fields that ChatBody does not define, passed on (`ChatRequest.extra`)."""
    _check_n(body.n)
    if not body.messages:
        raise InvalidRequest("messages cannot be an empty array", param="messages")
    messages = [ChatMessage(role=m.role, content=m.content, name=m.name, tool_call_id=m.tool_call_id,
                            tool_calls=m.tool_calls) for m in body.messages]
    tools, tool_choice = legacy_functions(body)
    return ChatRequest(messages=messages, max_tokens=body.max_completion_tokens or body.max_tokens,
                       temperature=body.temperature, top_p=body.top_p, stop=_stop(body.stop), seed=body.seed,
                       tools=tools, tool_choice=tool_choice, response_format=body.response_format,
                       user=body.user, stream=body.stream, parallel_tool_calls=body.parallel_tool_calls,
                       reasoning_effort=body.reasoning_effort, frequency_penalty=body.frequency_penalty,
                       presence_penalty=body.presence_penalty, logit_bias=body.logit_bias, logprobs=body.logprobs,
                       top_logprobs=body.top_logprobs, extra=extra)


def completions_to_chat_request(body: CompletionsBody, extra: dict[str, Any]) -> ChatRequest:
    _check_n(body.n)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise InvalidRequest("Only a single prompt is supported", param="prompt")
    return ChatRequest(messages=[ChatMessage(role="user", content=prompts[0])], max_tokens=body.max_tokens,
                       temperature=body.temperature, top_p=body.top_p, stop=_stop(body.stop), seed=body.seed,
                       user=body.user, stream=body.stream, frequency_penalty=body.frequency_penalty,
                       presence_penalty=body.presence_penalty, logit_bias=body.logit_bias, extra=extra)


def to_rerank_request(body: RerankBody, max_inputs: int, max_input_chars: int) -> RerankRequest:
    if not body.documents:
        raise InvalidRequest("documents cannot be an empty array", param="documents")
    docs = [d if isinstance(d, str) else d.text for d in body.documents]
    check_input_limits(docs, max_inputs, max_input_chars)
    return RerankRequest(query=body.query, documents=docs, top_n=body.top_n, return_documents=body.return_documents)


# ------------------------------------------------------------------------------ answers


class _PromptDetails(msgspec.Struct):
    cached_tokens: int


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int


class WireUsage(msgspec.Struct, omit_defaults=True):
    """OpenAI's `CompletionUsage`: the counts are always written, 0 included; the details when known."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None


def wire_usage(usage: Usage | None) -> WireUsage | None:
    if usage is None:
        return None
    return WireUsage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
                     None if usage.cached_tokens is None else _PromptDetails(usage.cached_tokens),
                     None if usage.reasoning_tokens is None else _CompletionDetails(usage.reasoning_tokens))


class _Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | None
    reasoning: str | None = None  # what a reasoning model returned alongside (ES `Message.reasoning`)
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class _Choice(msgspec.Struct):
    index: int
    message: _Message
    finish_reason: str | None
    logprobs: msgspec.Raw | None = None


class ChatCompletion(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[_Choice]
    usage: WireUsage | None = None


def chat_completion(result: ChatResult, model: str, legacy_functions: bool = False) -> ChatCompletion:
    """`legacy_functions`: the request used `functions`, so the call is answered as `function_call`."""
    message = _Message("assistant", result.content, result.reasoning, result.tool_calls or None)
    finish = result.finish_reason
    if legacy_functions and result.tool_calls:
        message = _Message("assistant", result.content, result.reasoning, None, result.tool_calls[0].function)
        finish = "function_call" if finish == "tool_calls" else finish
    return ChatCompletion(result.id, "chat.completion", result.created, result.model or model,
                          [_Choice(0, message, finish, result.logprobs)], wire_usage(result.usage))


def render_chat_completion(result: ChatResult, model: str, legacy_functions: bool = False) -> bytes:
    return _encoder.encode(chat_completion(result, model, legacy_functions))


def render_v1_chat_completion(result: ChatResult, model: str, legacy_functions: bool = False) -> bytes:
    """`/v1/chat/completions`: the model is the one the client named; `created` is set if the upstream gave none."""
    if not result.created:
        result = msgspec.structs.replace(result, created=int(time.time()))
    return render_chat_completion(msgspec.structs.replace(result, model=model), model, legacy_functions)


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
    usage: WireUsage | None = None


def render_text_completion(result: ChatResult, model: str, created: int | None = None) -> bytes:
    created = result.created or created or int(time.time())
    return _encoder.encode(TextCompletion(result.id or "cmpl", "text_completion", created, model,
                                          [_TextChoice(result.content or "", 0, None, result.finish_reason)],
                                          wire_usage(result.usage)))


def render_rerank(result: RerankResult, model: str) -> bytes:
    """The Cohere/Jina-style rerank answer that `/v1/rerank` clients expect."""
    results = []
    for d in result.ranked:
        item: dict[str, Any] = {"index": d.index, "relevance_score": d.relevance_score}
        if d.text is not None:
            item["document"] = {"text": d.text}
        results.append(item)
    payload: dict[str, Any] = {"id": f"rerank-{uuid.uuid4().hex}", "model": model, "results": results}
    usage = result.usage or None
    if usage is not None:
        payload["usage"] = {"total_tokens": usage.total_tokens or usage.prompt_tokens}
    return _encoder.encode(payload)


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


def tool_call_dicts(delta: ChatDelta) -> list[dict[str, Any]] | None:
    if not delta.tool_calls:
        return None
    out = []
    for tc in delta.tool_calls:
        item: dict[str, Any] = {"index": tc.index}
        if tc.id is not None:
            item["id"] = tc.id
        fn: dict[str, Any] = {}
        if tc.function is not None:
            if tc.function.arguments is not None:
                fn["arguments"] = tc.function.arguments
            if tc.function.name is not None:
                fn["name"] = tc.function.name
        item["function"] = fn
        item["type"] = tc.type or "function"
        out.append(item)
    return out



class _ChunkDelta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None


class _ChunkChoice(msgspec.Struct, omit_defaults=True):
    index: int
    delta: _ChunkDelta
    finish_reason: str | None
    logprobs: msgspec.Raw | None = None


class _Chunk(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[_ChunkChoice]
    usage: WireUsage | None = None


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
    usage: WireUsage | None = None


DONE_FRAME = b"data: [DONE]\n\n"


def _frame(value: Any) -> bytes:
    return b"data: " + _encoder.encode(value) + b"\n\n"


def chat_chunk_frame(delta: ChatDelta, stream_id: str, model: str, created: int, include_usage: bool,
                     legacy_functions: bool = False) -> bytes | None:
    tool_calls = tool_call_dicts(delta)
    has_choice = (delta.content is not None or delta.role is not None or tool_calls or delta.refusal is not None
                  or delta.finish_reason is not None)
    usage = wire_usage(delta.usage) if include_usage else None
    if has_choice:
        body = _ChunkDelta(delta.role, delta.content, delta.refusal, tool_calls)
        finish = delta.finish_reason
        if legacy_functions:
            # only the first call exists for a legacy client (OpenAI answers one function_call)
            calls = [c for c in tool_calls or () if c.get("index", 0) == 0]
            body = _ChunkDelta(delta.role, delta.content, delta.refusal, None,
                               calls[0].get("function") if calls else None)
            finish = "function_call" if finish == "tool_calls" else finish
        chunk = _Chunk(stream_id, "chat.completion.chunk", created, model,
                       [_ChunkChoice(0, body, finish, delta.logprobs)], usage)
        return _frame(chunk)
    if usage is not None:
        return _frame(_Chunk(stream_id, "chat.completion.chunk", created, model, [], usage))
    return None


def text_chunk_frame(delta: ChatDelta, stream_id: str, model: str, created: int, include_usage: bool) -> bytes | None:
    usage = wire_usage(delta.usage) if include_usage else None
    if delta.content is not None or delta.finish_reason is not None:
        choice = _TextChunkChoice(delta.content or "", 0, None, delta.finish_reason)
        return _frame(_TextChunk(stream_id, "text_completion", created, model, [choice], usage))
    if usage is not None:
        return _frame(_TextChunk(stream_id, "text_completion", created, model, [], usage))
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
    message = getattr(err, "detail", None) or err.reason
    return {"error": {"message": message, "type": kind, "param": err.param, "code": code}}


def error_frame(err: GatewayError) -> bytes:
    return _frame(error_body(err))


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


class ErrorSurface:
    """OpenAI's error object; upstream 5xx become 502 (`status_for`). The same on streams (before the first byte)."""

    def for_task(self, task: TaskType | None) -> "ErrorSurface":
        return self

    def error(self, err: GatewayError) -> tuple[int, str, bytes]:
        return status_for(err), "application/json", encode(error_body(err))

    def no_route(self, method: str, path: str, path_qs: str,
                 allowed: set[str] | None) -> tuple[int, str, bytes, dict[str, str]]:
        status = 404 if allowed is None else 405
        return *self.error(StatusError(f"Unknown request URL: {method} {path}", status=status)), {}


ERRORS = ErrorSurface()


# ------------------------------------------------------------------------------ streams


class ChatStream:
    """`chat.completion.chunk` events; usage only when the client asked (`stream_options.include_usage`)."""

    object_id = "chatcmpl"

    def __init__(self, model: str, include_usage: bool, legacy_functions: bool = False) -> None:
        self.id = f"{self.object_id}-{os.urandom(16).hex()}"  # uuid4().hex costs 5x more
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.legacy_functions = legacy_functions  # the request used `functions`: calls go out as function_call
        self._text_head = self._text_sep = b""

    def frame(self, delta: ChatDelta) -> bytes | None:
        return self.frames([delta]) or None

    def frames(self, batch: list[ChatDelta]) -> bytes:
        out: list[bytes] = []
        texts: list[str] = []  # a run of text pieces, written as one
        for delta in batch:
            if (delta.content is not None and delta.role is None and delta.finish_reason is None
                    and delta.usage is None and delta.tool_calls is None and delta.refusal is None
                    and delta.logprobs is None):
                # most of a stream: a piece of text, written as `chat_chunk_frame` would, around one encode
                texts.append(delta.content)
                continue
            if texts:
                out.append(self._texts(texts))
                texts = []
            frame = chat_chunk_frame(delta, self.id, self.model, self.created, self.include_usage,
                                     self.legacy_functions)
            if frame:
                out.append(frame)
        if texts:
            out.append(self._texts(texts))
        return out[0] if len(out) == 1 else b"".join(out)

    def _texts(self, texts: list[str]) -> bytes:
        if not self._text_head:
            self._text_head = (b'data: {"id":' + _encoder.encode(self.id) + b',"object":"chat.completion.chunk",'
                               b'"created":' + _encoder.encode(self.created) + b',"model":'
                               + _encoder.encode(self.model) + b',"choices":[{"index":0,"delta":{"content":')
            self._text_sep = _TEXT_TAIL + self._text_head
        return self._text_head + self._text_sep.join(map(_encoder.encode, texts)) + _TEXT_TAIL

    def done(self) -> bytes:
        return DONE_FRAME

    def error(self, err: GatewayError) -> bytes:
        return error_frame(err)


_TEXT_TAIL = b'},"finish_reason":null}]}\n\n'


class TextStream(FrameByFrame, ChatStream):
    """`/v1/completions` with `stream: true`: `text_completion` events."""

    object_id = "cmpl"

    def frame(self, delta: ChatDelta) -> bytes | None:
        return text_chunk_frame(delta, self.id, self.model, self.created, self.include_usage)
