"""The Elasticsearch `_inference` wire format: request Structs, result rendering, errors, SSE frames."""

from __future__ import annotations

import re
from typing import Any, Callable

import msgspec

from ..catalogue import Service
from ..errors import GatewayError, IllegalArgumentError, ParseError, RequestValidationError, StatusError
from ..types import (CanonicalRequest, ChatDelta, ChatMessage, ChatRequest, ChatResult, ContentPart, EmbedRequest,
                     EmbedResult, FunctionCall, InputType, RerankRequest, RerankResult, SparseEmbedResult, TaskType,
                     Tool, ToolCall, ToolChoice)
from ..validation import check_input_limits, validate_task_settings_override
from . import openai as openai_wire
from . import FrameByFrame
from .openai import tool_call_dicts

# ------------------------------------------------------------------------------ requests

INFERENCE_PARSER = "cluster:internal/xpack/inference"
CHAT_PARSER = "UnifiedCompletionRequest"  # ConstructingObjectParser named after the class


class InferenceBody(msgspec.Struct, forbid_unknown_fields=True):
    """ES `InferenceAction.Request` body."""

    input: str | list[str] | None = None
    query: str | None = None
    top_n: int | None = None
    return_documents: bool | None = None
    input_type: str | None = None
    task_settings: dict[str, Any] | None = None
    timeout: str | None = None


class ChatFunction(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    arguments: str | None = None


class ChatToolCall(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    function: ChatFunction
    type: str = "function"


class ChatMessageBody(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    content: str | list[ContentPart] | None = None
    tool_call_id: str | None = None
    tool_calls: list[ChatToolCall] | None = None
    reasoning: str | None = None  # ES `Message.reasoning`, `reasoning_details` (an earlier answer's reasoning)
    reasoning_details: list[dict[str, Any]] | None = None


class ReasoningBody(msgspec.Struct, forbid_unknown_fields=True):
    """ES `org.elasticsearch.inference.completion.Reasoning`."""

    effort: str | None = None
    max_tokens: int | None = None
    summary: str | None = None
    exclude: bool | None = None
    enabled: bool | None = None


class ChatBody(msgspec.Struct, forbid_unknown_fields=True):
    """ES `UnifiedCompletionRequest`."""

    messages: list[ChatMessageBody] | None = None
    model: str | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    tool_choice: ToolChoice | None = None
    tools: list[Tool] | None = None
    reasoning: ReasoningBody | None = None
    timeout: str | None = None


_EFFORTS = ("xhigh", "high", "medium", "low", "minimal", "none")  # Reasoning.ReasoningEffort
_SUMMARIES = ("auto", "concise", "detailed")  # Reasoning.ReasoningSummary


def reasoning_dict(body: bytes, r: ReasoningBody) -> dict[str, Any]:
    """The checks of ES `Reasoning` (its parser's required and exclusive field sets, then `validate()`),
    reported as the chat request parser reports a nested failure."""
    def nested(cause: GatewayError) -> ParseError:
        err = ParseError(f"{_location(body, 'reasoning')} [{CHAT_PARSER}] failed to parse field [reasoning]")
        err.caused_by = cause  # type: ignore[attr-defined]
        return err

    if r.effort is None and r.max_tokens is None and r.enabled is None:
        raise nested(IllegalArgumentError("Required one of fields [effort, max_tokens, enabled], but none were "
                                          "specified. "))
    if r.effort is not None and r.max_tokens is not None:
        raise nested(IllegalArgumentError("The following fields are not allowed together: [effort, max_tokens] "))
    def choice(value: str, field: str, allowed: tuple[str, ...]) -> str:
        chosen = value.strip().lower()
        if chosen not in allowed:
            raise nested(IllegalArgumentError(f"Unrecognized type [{value}] in [{field}], must be one of "
                                              f"[{', '.join(allowed)}]"))
        return chosen

    out: dict[str, Any] = {}
    if r.effort is not None:
        out["effort"] = choice(r.effort, "effort", _EFFORTS)
    if r.max_tokens is not None:
        out["max_tokens"] = r.max_tokens
    if r.summary is not None:
        out["summary"] = choice(r.summary, "summary", _SUMMARIES)
    if r.exclude is not None:
        out["exclude"] = r.exclude
    if r.enabled is not None:
        out["enabled"] = r.enabled
    if r.effort is None and r.max_tokens is None and r.enabled is not True:
        raise nested(StatusError("Either [effort] or [max_tokens] must not be null, or [enabled] must be true."))
    return out


_inference_decoder = msgspec.json.Decoder(InferenceBody)
_chat_decoder = msgspec.json.Decoder(ChatBody)
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `([^`]*)`(?: - at `\$(.*)`)?")
_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`")


def _location(body: bytes, needle: str) -> str:
    """`[line:column]` of a field name in the body, as ES XContent locations print it."""
    idx = body.find(f'"{needle}"'.encode())
    if idx < 0:
        return "[1:1]"
    line = body.count(b"\n", 0, idx) + 1
    col = idx - (body.rfind(b"\n", 0, idx) + 1) + 1
    return f"[{line}:{col}]"


def _similarity(a: str, b: str) -> float:
    """Lucene's LevenshteinDistance: 1 - distance / longer length."""
    if not a or not b:
        return 0.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


def _suggestion(field: str, known: tuple[str, ...]) -> str:
    """ES `SuggestingErrorOnUnknown`: ` did you mean [x]?` for names more than half alike."""
    close = [k for k in known if _similarity(field, k) > 0.5]
    if not close:
        return ""
    if len(close) == 1:
        return f" did you mean [{close[0]}]?"
    return f" did you mean any of [{', '.join(close)}]?"


_JSON_TOKEN = {"int": "VALUE_NUMBER", "float": "VALUE_NUMBER", "str": "VALUE_STRING", "bool": "VALUE_BOOLEAN",
               "object": "START_OBJECT", "array": "START_ARRAY", "null": "VALUE_NULL"}
_GOT = re.compile(r"got `(\w+)`")


def decode_strict(decoder: msgspec.json.Decoder, parser: str, body: bytes) -> Any:
    """Decode with the wording of ES ObjectParser errors (unknown fields, wrong value types)."""
    if not body.strip():
        raise ParseError("request body is required")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _UNKNOWN_FIELD.match(text)
        if m:
            field = m.group(1)
            known = tuple(decoder.type.__struct_fields__)
            raise ParseError(f"{_location(body, field)} [{parser}] unknown field [{field}]"
                             f"{_suggestion(field, known)}") from None
        at = _AT_PATH.search(text)
        field = (at.group(1) if at else "").split(".")[0].split("[")[0]
        got = _GOT.search(text)
        token = _JSON_TOKEN.get(got.group(1), "VALUE") if got else "VALUE"
        raise ParseError(f"{_location(body, field)} [{parser}] {field} doesn't support values of type: "
                         f"{token}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # invalid UTF-8 in a string is a client error too
        raise ParseError(f"Failed to parse request body: {exc}") from None


def decode_inference(body: bytes) -> InferenceBody:
    return decode_strict(_inference_decoder, INFERENCE_PARSER, body)


def decode_chat(body: bytes) -> ChatBody:
    return decode_strict(_chat_decoder, CHAT_PARSER, body)


def validate_inference(req: InferenceBody, task: TaskType, explicit_task: bool) -> list[str]:
    """The checks of ES `InferenceAction.Request.validate()` for a resolved task type."""
    errors: list[str] = []
    if req.input is None:
        errors.append("Field [input] cannot be null")
    elif isinstance(req.input, list) and not req.input:
        errors.append("Field [input] cannot be an empty array")
    if task == TaskType.RERANK:
        if req.query is None:
            errors.append("Field [query] cannot be null for task type [rerank]")
        elif req.query == "":
            errors.append("Field [query] cannot be empty for task type [rerank]")
    elif explicit_task:
        if req.top_n is not None:
            errors.append(f"Field [top_n] cannot be specified for task type [{task.value}]")
        if req.return_documents is not None:
            errors.append(f"Field [return_documents] cannot be specified for task type [{task.value}]")
    if req.input_type is not None and explicit_task and task not in (TaskType.TEXT_EMBEDDING, TaskType.EMBEDDING):
        errors.append(f"Field [input_type] cannot be specified for task type [{task.value}]")
    return errors


def require_valid(errors: list[str]) -> None:
    if errors:
        raise RequestValidationError(errors)


# ------------------------------------------------------------------------------ to canonical requests


def _input_type(raw: str | None) -> InputType | None:
    if raw is None:
        return None
    try:
        return InputType(raw.lower())
    except ValueError:
        raise RequestValidationError(f"Unrecognized input_type [{raw}]") from None


def to_chat_request(body: ChatBody, stream: bool, raw: bytes = b"") -> ChatRequest:
    """ES `UnifiedCompletionRequest` to the canonical chat request (`raw` locates errors in the body)."""
    reasoning = reasoning_dict(raw, body.reasoning) if body.reasoning is not None else None
    if body.messages is None:
        raise RequestValidationError("Field [messages] cannot be null")
    if not body.messages:
        raise RequestValidationError("Field [messages] cannot be an empty array")
    messages = []
    for m in body.messages:
        calls = None
        if m.tool_calls:
            calls = [ToolCall(id=c.id, type=c.type, function=FunctionCall(name=c.function.name,
                                                                          arguments=c.function.arguments))
                     for c in m.tool_calls]
        messages.append(ChatMessage(role=m.role, content=m.content, tool_call_id=m.tool_call_id, tool_calls=calls,
                                    reasoning=m.reasoning, reasoning_details=m.reasoning_details))
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    return ChatRequest(messages=messages, model=body.model, max_tokens=body.max_completion_tokens,
                       temperature=body.temperature, top_p=body.top_p, stop=stop, tools=body.tools,
                       tool_choice=body.tool_choice, reasoning=reasoning, stream=stream)


def to_request(raw: bytes, service: Service, task: TaskType, explicit_task: bool, stream: bool,
               max_inputs: int, max_input_chars: int) -> tuple[CanonicalRequest, str | None]:
    """A perform body for an endpoint of `task`: the chat schema for chat_completion, the inference
    schema otherwise (ES `InferenceAction.Request`). Returns the request and the body's `timeout`."""
    if task == TaskType.CHAT_COMPLETION:
        chat = decode_chat(raw)
        return to_chat_request(chat, stream, raw), chat.timeout
    body = decode_inference(raw)
    require_valid(validate_inference(body, task, explicit_task))
    overrides = validate_task_settings_override(service, task, body.task_settings) if body.task_settings else {}
    inputs = [body.input] if isinstance(body.input, str) else list(body.input or [])
    if stream:  # only completion streams here
        return ChatRequest(messages=[ChatMessage(role="user", content=text) for text in inputs],
                           task_settings=overrides, stream=True), body.timeout
    input_type = _input_type(body.input_type)
    if input_type is None and overrides.get("input_type"):
        input_type = _input_type(overrides["input_type"])
    check_input_limits(inputs, max_inputs, max_input_chars)
    req: CanonicalRequest
    if task == TaskType.COMPLETION:
        req = ChatRequest(messages=[ChatMessage(role="user", content=text) for text in inputs], task_settings=overrides)
    elif task == TaskType.RERANK:
        req = RerankRequest(query=body.query or "", documents=inputs, top_n=body.top_n,
                            return_documents=body.return_documents, task_settings=overrides)
    else:
        req = EmbedRequest(inputs=inputs, input_type=input_type, task_settings=overrides)
    return req, body.timeout


def model_name(service_settings: dict[str, Any], inference_id: str, req: ChatRequest) -> str:
    return req.model or service_settings.get("model_id") or service_settings.get("model") or inference_id


# ------------------------------------------------------------------------------ results


class _DenseItem(msgspec.Struct):
    embedding: msgspec.Raw | list[float] | list[int]


class _SparseItem(msgspec.Struct):
    is_truncated: bool
    embedding: dict[str, float]


class _RankedItem(msgspec.Struct, omit_defaults=True):
    index: int
    relevance_score: float
    text: str | None = None


class _CompletionItem(msgspec.Struct):
    result: str


_encoder = msgspec.json.Encoder()
_DENSE_KEY = {"float": "text_embedding", "byte": "text_embedding_bytes", "bit": "text_embedding_bits"}


def render_embeddings(result: EmbedResult, task: TaskType) -> bytes:
    key = _DENSE_KEY[result.element_type]
    if task == TaskType.EMBEDDING:
        key = key.replace("text_embedding", "embeddings")
    return _encoder.encode({key: [_DenseItem(v) for v in result.vectors]})


def render_sparse(result: SparseEmbedResult) -> bytes:
    truncated = result.truncated or [False] * len(result.embeddings)
    return _encoder.encode({"sparse_embedding": [_SparseItem(t, e) for t, e in zip(truncated, result.embeddings)]})


def render_rerank(result: RerankResult) -> bytes:
    return _encoder.encode({"rerank": [_RankedItem(d.index, d.relevance_score, d.text) for d in result.ranked]})


def render_completion(result: ChatResult) -> bytes:
    return _encoder.encode({"completion": [_CompletionItem(result.content or "")]})


def renderer(task: TaskType, model: str) -> Callable[[Any], bytes]:
    """The JSON answer of a perform request on an endpoint of `task`; chat_completion answers in the
    OpenAI shape ES uses for it."""
    if task == TaskType.CHAT_COMPLETION:
        return lambda result: openai_wire.render_chat_completion(result, model)
    if task == TaskType.COMPLETION:
        return render_completion
    if task == TaskType.RERANK:
        return render_rerank
    if task == TaskType.SPARSE_EMBEDDING:
        return render_sparse
    return lambda result: render_embeddings(result, task)


# ------------------------------------------------------------------------------ errors


def error_body(err: GatewayError) -> dict[str, Any]:
    if err.simple:
        return {"error": err.reason, "status": err.status}
    cause = {"type": err.es_type, "reason": err.reason}
    metadata = getattr(err, "metadata", None)  # ES prints exception metadata right after the reason
    if metadata:
        cause.update(metadata)
    error: dict[str, Any] = {"root_cause": [cause], "type": err.es_type, "reason": err.reason}
    if metadata:
        error.update(metadata)
    caused_by = getattr(err, "caused_by", None)
    if isinstance(caused_by, GatewayError):
        error["caused_by"] = {"type": caused_by.es_type, "reason": caused_by.reason}
    return {"error": error, "status": err.status}


class ErrorSurface:
    """ES errors: the `{"error": {...}, "status": N}` envelope, the OpenAI-like shape of chat_completion
    (`UnifiedChatCompletionException`), each as an `event: error` frame on `_stream` routes."""

    __slots__ = ("chat", "sse")

    def __init__(self, chat: bool = False, sse: bool = False) -> None:
        self.chat = chat
        self.sse = sse

    def for_task(self, task: TaskType | None) -> "ErrorSurface":
        return ErrorSurface(True, self.sse) if task == TaskType.CHAT_COMPLETION and not self.chat else self

    def error(self, err: GatewayError) -> tuple[int, str, bytes]:
        body = chat_error_body(err) if self.chat else error_body(err)
        if self.sse:
            return err.status, "text/event-stream", error_frame(body)
        return err.status, "application/json", _encoder.encode(body)

    def no_route(self, method: str, path: str, path_qs: str,
                 allowed: set[str] | None) -> tuple[int, str, bytes, dict[str, str]]:
        """ES `RestController`: a bare `{"error": "..."}` for an unknown URL, 405 for a known one."""
        if allowed is None:
            body: dict[str, Any] = {"error": f"no handler found for uri [{path_qs}] and method [{method}]"}
            return 400, "application/json", _encoder.encode(body), {}
        listed = ", ".join(sorted(allowed))
        body = {"error": f"Incorrect HTTP method for uri [{path_qs}] and method [{method}], allowed: [{listed}]",
                "status": 405}
        return 405, "application/json", _encoder.encode(body), {"Allow": ",".join(sorted(allowed))}


ERRORS = ErrorSurface()
STREAM_ERRORS = ErrorSurface(sse=True)


def chat_error_body(err: GatewayError) -> dict[str, Any]:
    """The OpenAI-style error ES uses for chat_completion (`UnifiedChatCompletionException.fromThrowable`)."""
    inner: dict[str, Any] = {"code": getattr(err, "provider_code", None) or err.status_code_name,
                             "message": err.reason}
    if err.param:
        inner["param"] = err.param
    inner["type"] = getattr(err, "provider_type", None) or err.es_type
    return {"error": inner}


# ------------------------------------------------------------------------------ SSE


class _CompletionDelta(msgspec.Struct):
    delta: str


class _DeltaBody(msgspec.Struct, omit_defaults=True):
    """ES chunk delta, in `Message.toXContentChunked` order: content, refusal, role, reasoning, tool_calls."""

    content: str | None = None
    refusal: str | None = None
    role: str | None = None
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _ChunkChoice(msgspec.Struct, omit_defaults=True, kw_only=True):
    """ES `ChatCompletionChunk.Choice.toXContentChunked`: delta, finish_reason when set, then index, always
    (a field without a default is never omitted, so index 0 is written too)."""

    delta: _DeltaBody
    finish_reason: str | None = None
    index: int


class _Usage(msgspec.Struct):
    """ES `ChatCompletionChunk.Usage`: the three counts, each always written."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class _Chunk(msgspec.Struct, omit_defaults=True):
    """ES `ChatCompletionChunk`: id, choices, model, object, usage (in that order)."""

    id: str
    choices: list[_ChunkChoice]
    model: str
    object: str
    usage: _Usage | None = None


# ES `ServerSentEventsRestActionListener` writes a UTF-8 byte-order mark before *every* event,
# `[DONE]` and `event: error` included: `target.write(ServerSentEventSpec.BOM)` precedes
# `event: <type>\ndata: ` in `ServerSentEventResponseBodyPart.encodeChunk`, in both versions of the
# file found (elastic/elasticsearch commits 01195333 and 90c7b2a7), and `ServerSentEventDoneBodyPart`
# writes it too. ES's own SSE parser strips it again (PRs #154155, #154632). We match the wire.
BOM = "\ufeff".encode()
_MESSAGE_PREFIX = BOM + b"event: message\ndata: "
_ERROR_PREFIX = BOM + b"event: error\ndata: "
DONE_FRAME = _MESSAGE_PREFIX + b"[DONE]\n\n"


def message_frame(payload: bytes) -> bytes:
    return _MESSAGE_PREFIX + payload + b"\n\n"


def error_frame(payload: dict[str, Any]) -> bytes:
    return _ERROR_PREFIX + _encoder.encode(payload) + b"\n\n"


def completion_delta_frame(delta: ChatDelta) -> bytes | None:
    if not delta.content:
        return None
    return message_frame(_encoder.encode({"completion": [_CompletionDelta(delta.content)]}))


def chat_chunk_frame(delta: ChatDelta, stream_id: str, model: str) -> bytes:
    has_choice = (delta.content is not None or delta.role is not None or delta.tool_calls or delta.refusal
                  is not None or delta.finish_reason is not None or delta.reasoning is not None)
    choices = []
    if has_choice:
        body = _DeltaBody(delta.content, delta.refusal, delta.role, delta.reasoning, tool_call_dicts(delta))
        choices.append(_ChunkChoice(delta=body, finish_reason=delta.finish_reason, index=0))
    usage = delta.usage
    chunk = _Chunk(delta.id or stream_id, choices, delta.model or model, "chat.completion.chunk",
                   None if usage is None else _Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens))
    return message_frame(_encoder.encode(chunk))


class CompletionStream(FrameByFrame):
    """`completion` on `_stream`: `{"completion": [{"delta": ...}]}` events."""

    def frame(self, delta: ChatDelta) -> bytes | None:
        return completion_delta_frame(delta)

    def done(self) -> bytes:
        return DONE_FRAME

    def error(self, err: GatewayError) -> bytes:
        return error_frame(error_body(err))


class ChatStream:
    """`chat_completion` on `_stream`: ES `ChatCompletionChunk` events."""

    def __init__(self, stream_id: str, model: str) -> None:
        self.stream_id = stream_id
        self.model = model
        self._text_id: str | None = None
        self._text_model: str | None = None
        self._text_head = self._text_sep = self._text_tail = b""

    def frame(self, delta: ChatDelta) -> bytes | None:
        return self.frames([delta]) or None

    def frames(self, batch: list[ChatDelta]) -> bytes:
        out: list[bytes] = []
        texts: list[str] = []  # a run of text pieces with the same id and model, written as one
        for delta in batch:
            if (delta.content is not None and delta.role is None and delta.finish_reason is None
                    and delta.usage is None and delta.tool_calls is None and delta.refusal is None
                    and delta.reasoning is None):
                # most of a stream: a piece of text, written as `chat_chunk_frame` would, around one encode
                if delta.id != self._text_id or delta.model != self._text_model or not self._text_head:
                    if texts:
                        out.append(self._texts(texts))
                        texts = []
                    self._text_head_for(delta.id, delta.model)
                texts.append(delta.content)
                continue
            if texts:
                out.append(self._texts(texts))
                texts = []
            out.append(chat_chunk_frame(delta, self.stream_id, self.model))
        if texts:
            out.append(self._texts(texts))
        return out[0] if len(out) == 1 else b"".join(out)

    def _text_head_for(self, delta_id: str | None, model: str | None) -> None:
        self._text_id, self._text_model = delta_id, model
        self._text_head = (_MESSAGE_PREFIX + b'{"id":' + _encoder.encode(delta_id or self.stream_id)
                           + b',"choices":[{"delta":{"content":')
        self._text_tail = (b'},"index":0}],"model":' + _encoder.encode(model or self.model)
                           + b',"object":"chat.completion.chunk"}\n\n')
        self._text_sep = self._text_tail + self._text_head

    def _texts(self, texts: list[str]) -> bytes:
        return self._text_head + self._text_sep.join(map(_encoder.encode, texts)) + self._text_tail

    def done(self) -> bytes:
        return DONE_FRAME

    def error(self, err: GatewayError) -> bytes:
        return error_frame(chat_error_body(err))
