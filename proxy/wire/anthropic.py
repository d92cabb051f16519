"""The Anthropic Messages API as the gateway speaks it on `/v1/messages`: request bodies to canonical
requests, canonical answers and deltas to messages and typed stream events, errors.

Written from the official `anthropic` SDK's types (2.17: `MessageCreateParams`, `Message`,
`RawMessageStreamEvent`, `MessageDeltaUsage`) and docs.claude.com (Messages, streaming, errors).
Any chat endpoint can answer: the translation goes through the canonical types only.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from ..errors import GatewayError, RequestValidationError, StatusError, UpstreamError
from ..types import (ChatDelta, ChatMessage, ChatRequest, ChatResult, ContentPart, FunctionCall, FunctionDef,
                     FunctionName, ImagePart, ImageURL, NamedToolChoice, TaskType, TextPart, Tool, ToolCall, ToolChoice,
                     Usage)
from . import FrameByFrame

_encoder = msgspec.json.Encoder()
_any = msgspec.json.Decoder(Any)

# ------------------------------------------------------------------------------ requests


class ToolBody(msgspec.Struct, kw_only=True):
    name: str
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None  # "custom" or absent; server tools (web_search_...) have other types
    strict: bool | None = None
    cache_control: Any = None  # a caching hint: no meaning for the answer


class MessageBody(msgspec.Struct, kw_only=True):
    role: str
    content: str | list[dict[str, Any]]


class ThinkingBody(msgspec.Struct, kw_only=True):
    type: str
    budget_tokens: int | None = None


class MessagesBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields this gateway does not define (`container`, `inference_geo`, `context_management`, ...) are
    refused by name: they change where or how the answer is made, which no other provider can honour."""

    model: str
    messages: list[MessageBody]
    max_tokens: int
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool = False
    tools: list[ToolBody] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    thinking: ThinkingBody | None = None
    output_config: dict[str, Any] | None = None
    # hints about caching, capacity and speed: they do not change the answer, so any provider may ignore them
    cache_control: Any = None
    service_tier: str | None = None
    speed: str | None = None


class CountTokensBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: str
    messages: list[MessageBody]
    system: str | list[dict[str, Any]] | None = None
    tools: list[ToolBody] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: ThinkingBody | None = None
    cache_control: Any = None
    output_config: dict[str, Any] | None = None


def _bad(message: str, param: str | None = None) -> RequestValidationError:
    return RequestValidationError(message, param=param)


def decode(raw: bytes, struct_type: type) -> Any:
    """A body as `struct_type`; a field the gateway does not define is refused by name."""
    try:
        return msgspec.json.decode(raw, type=struct_type)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.startswith("Object contains unknown field"):
            name = text.split("`")[1]
            raise _bad(f"{name}: this parameter is not supported by this gateway", param=name) from None
        param = text.rpartition("`$.")[2].rstrip("`") if "`$." in text else None
        raise _bad(f"Invalid request: {text}", param=param) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _bad(f"The request body is not valid JSON: {exc}") from None


def _image_part(block: dict[str, Any]) -> ImagePart:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        return ImagePart(image_url=ImageURL(url=f"data:{source.get('media_type')};base64,{source.get('data')}"))
    if kind == "url":
        return ImagePart(image_url=ImageURL(url=str(source.get("url"))))
    raise _bad(f"Image source type [{kind}] is not supported by this gateway (base64 and url are)")


def _parts(blocks: list[dict[str, Any]], where: str) -> list[ContentPart]:
    """Text and image blocks as OpenAI-style content parts (the canonical form)."""
    parts: list[ContentPart] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append(TextPart(text=str(block.get("text", ""))))
        elif kind == "image":
            parts.append(_image_part(block))
        else:
            raise _bad(f"Content blocks of type [{kind}] are not supported in [{where}] by this gateway")
    return parts


def _content(parts: list[ContentPart]) -> str | list[ContentPart]:
    """Text-only content as one string (what every provider takes), else the parts."""
    texts = [p.text for p in parts if isinstance(p, TextPart)]
    return "".join(texts) if len(texts) == len(parts) else parts


def _messages(body: MessagesBody | CountTokensBody) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    if body.system is not None:
        system = body.system if isinstance(body.system, str) else _content(_parts(body.system, "system"))
        out.append(ChatMessage(role="system", content=system))
    for m in body.messages:
        if m.role not in ("user", "assistant"):
            raise _bad(f"messages: Unexpected role [{m.role}]. Allowed roles are [user] and [assistant]",
                       param="messages")
        if isinstance(m.content, str):
            out.append(ChatMessage(role=m.role, content=m.content))
            continue
        if m.role == "assistant":
            texts: list[str] = []
            calls: list[ToolCall] = []
            for block in m.content:
                kind = block.get("type")
                if kind == "text":
                    texts.append(block.get("text", ""))
                elif kind == "tool_use":
                    args = _encoder.encode(block.get("input") or {}).decode()
                    calls.append(ToolCall(id=block.get("id"), function=FunctionCall(name=block.get("name"),
                                                                                    arguments=args)))
                elif kind in ("thinking", "redacted_thinking"):
                    # the model's own earlier reasoning, signed for Anthropic only: no other provider takes it back
                    continue
                else:
                    raise _bad(f"Content blocks of type [{kind}] are not supported in [assistant] messages by "
                               f"this gateway")
            out.append(ChatMessage(role="assistant", content="".join(texts) if texts else None,
                                   tool_calls=calls or None))
            continue
        pending: list[ContentPart] = []
        for block in m.content:
            if block.get("type") == "tool_result":
                if pending:
                    out.append(ChatMessage(role="user", content=_content(pending)))
                    pending = []
                result = block.get("content")
                text = result if isinstance(result, str) or result is None else _content(
                    _parts(result, "tool_result"))
                if block.get("is_error") and isinstance(text, str):
                    text = f"Error: {text}"  # the canonical tool message has no error flag
                out.append(ChatMessage(role="tool", tool_call_id=block.get("tool_use_id"), content=text or ""))
            else:
                pending.extend(_parts([block], "user"))
        if pending:
            out.append(ChatMessage(role="user", content=_content(pending)))
    return out


def _tools(tools: list[ToolBody] | None) -> list[Tool] | None:
    if not tools:
        return None
    out = []
    for tool in tools:
        if tool.type not in (None, "custom"):
            raise _bad(f"Tools of type [{tool.type}] (Anthropic server tools) are not supported by this gateway",
                       param="tools")
        out.append(Tool(function=FunctionDef(name=tool.name, description=tool.description,
                                             parameters=tool.input_schema or {"type": "object", "properties": {}},
                                             strict=True if tool.strict else None)))
    return out


def _tool_choice(choice: dict[str, Any] | None) -> tuple[ToolChoice | None, bool | None]:
    """(OpenAI tool_choice, parallel_tool_calls)."""
    if choice is None:
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("tool_choice: a choice of type [tool] needs a [name]", param="tool_choice")
        return NamedToolChoice(function=FunctionName(name=name)), parallel
    raise _bad(f"tool_choice: Unexpected type [{kind}]", param="tool_choice")


def _effort(thinking: ThinkingBody | None) -> str | None:
    """A thinking budget as the nearest OpenAI reasoning_effort, which every provider's mapping starts from
    (the budgets of ai.google.dev/gemini-api/docs/openai: 1K low, 8K medium, 24K high)."""
    if thinking is None:
        return None
    if thinking.type == "disabled":
        return "none"
    if thinking.type not in ("enabled", "adaptive"):
        raise _bad(f"thinking: Unexpected type [{thinking.type}]", param="thinking")
    budget = thinking.budget_tokens or 8192
    return "low" if budget <= 1024 else "medium" if budget <= 8192 else "high"


def chat_request(body: MessagesBody) -> ChatRequest:
    if body.max_tokens < 1:
        raise _bad("max_tokens: must be greater than or equal to 1", param="max_tokens")
    if not body.messages:
        raise _bad("messages: at least one message is required", param="messages")
    choice, parallel = _tool_choice(body.tool_choice)
    response_format = None
    if body.output_config and body.output_config.get("format"):
        fmt = body.output_config["format"]
        if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise _bad("output_config.format: a [json_schema] format with a [schema] is expected",
                       param="output_config")
        response_format = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"],
                                                                  "strict": True}}
    extra: dict[str, Any] = {}
    if body.top_k is not None:
        extra["top_k"] = body.top_k
    user = (body.metadata or {}).get("user_id")
    return ChatRequest(messages=_messages(body), max_tokens=body.max_tokens, temperature=body.temperature,
                       top_p=body.top_p, stop=body.stop_sequences or None, tools=_tools(body.tools),
                       tool_choice=choice, parallel_tool_calls=parallel, response_format=response_format,
                       user=user, stream=body.stream, reasoning_effort=_effort(body.thinking), extra=extra)


def count_request(body: CountTokensBody) -> ChatRequest:
    """The smallest real request that makes the provider count the prompt (one output token)."""
    choice, _ = _tool_choice(body.tool_choice)
    return ChatRequest(messages=_messages(body), max_tokens=1, tools=_tools(body.tools),
                       tool_choice=None if choice == "required" or isinstance(choice, NamedToolChoice) else choice)


# ------------------------------------------------------------------------------ answers

# canonical (OpenAI) finish reasons -> Anthropic stop reasons (the inverse of the adapter's mapping)
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


def stop_reason(finish: str | None) -> str | None:
    if finish is None:
        return None
    return STOP_REASONS.get(finish, "end_turn")


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def usage_dict(usage: Usage | None) -> dict[str, Any]:
    """Anthropic counts cache reads and writes apart from `input_tokens`; canonical prompt_tokens includes them."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    cached, written = usage.cached_tokens or 0, usage.cache_write_tokens or 0
    out: dict[str, Any] = {"input_tokens": max(0, usage.prompt_tokens - cached - written),
                           "output_tokens": usage.completion_tokens}
    if usage.cache_write_tokens is not None:
        out["cache_creation_input_tokens"] = usage.cache_write_tokens
    if usage.cached_tokens is not None:
        out["cache_read_input_tokens"] = usage.cached_tokens
    return out


def _tool_input(call: ToolCall) -> Any:
    try:
        value = _any.decode(call.function.arguments or "{}")
    except msgspec.DecodeError:
        raise UpstreamError("The model answered a tool call whose arguments are not JSON",
                            upstream_status=502) from None
    return value if isinstance(value, dict) else {"value": value}


def render_message(result: ChatResult, model: str) -> bytes:
    content: list[dict[str, Any]] = []
    if result.content:
        content.append({"type": "text", "text": result.content})
    for call in result.tool_calls or ():
        content.append({"type": "tool_use", "id": call.id or f"toolu_{uuid.uuid4().hex}",
                        "name": call.function.name, "input": _tool_input(call)})
    return _encoder.encode({"id": message_id(), "type": "message", "role": "assistant", "model": model,
                            "content": content, "stop_reason": stop_reason(result.finish_reason),
                            "stop_sequence": None, "usage": usage_dict(result.usage)})


# ------------------------------------------------------------------------------ stream events


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encoder.encode({"type": kind, **data}) + b"\n\n"


class StreamWriter(FrameByFrame):
    """Canonical deltas to Anthropic's typed events. Content blocks are numbered in the order they open;
    a text block and each tool call are blocks of their own, and one block is open at a time."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = message_id()
        self.started = False
        self.index = -1  # the open block, -1: none
        self.open_kind: str | None = None
        self.tool_blocks: dict[int, int] = {}  # canonical tool-call index -> block index
        self.finish: str | None = None
        self.usage: Usage | None = None

    def _start(self) -> bytes:
        self.started = True
        message = {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}
        return event("message_start", {"message": message}) + event("ping", {})

    def _close(self) -> bytes:
        if self.open_kind is None:
            return b""
        self.open_kind = None
        return event("content_block_stop", {"index": self.index})

    def _open(self, block: dict[str, Any], kind: str) -> bytes:
        out = self._close()
        self.index += 1
        self.open_kind = kind
        return out + event("content_block_start", {"index": self.index, "content_block": block})

    def frame(self, delta: ChatDelta) -> bytes | None:
        out = b"" if self.started else self._start()
        if delta.content:
            if self.open_kind != "text":
                out += self._open({"type": "text", "text": ""}, "text")
            out += event("content_block_delta", {"index": self.index,
                                                 "delta": {"type": "text_delta", "text": delta.content}})
        for call in delta.tool_calls or ():
            fn = call.function
            if call.index not in self.tool_blocks:
                out += self._open({"type": "tool_use", "id": call.id or f"toolu_{uuid.uuid4().hex}",
                                   "name": fn.name if fn else None, "input": {}}, "tool_use")
                self.tool_blocks[call.index] = self.index
            if fn is not None and fn.arguments:
                out += event("content_block_delta", {"index": self.tool_blocks[call.index], "delta": {
                    "type": "input_json_delta", "partial_json": fn.arguments}})
        if delta.finish_reason is not None:
            self.finish = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage
        return out or None

    def done(self) -> bytes:
        out = (b"" if self.started else self._start()) + self._close()
        out += event("message_delta", {"delta": {"stop_reason": stop_reason(self.finish) or "end_turn",
                                                 "stop_sequence": None}, "usage": usage_dict(self.usage)})
        return out + event("message_stop", {})

    def error(self, err: GatewayError) -> bytes:
        return event("error", {"error": error_object(err)})


# ------------------------------------------------------------------------------ errors

# docs.claude.com/en/api/errors: HTTP status -> error type
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def status_for(err: GatewayError) -> int:
    """An upstream's 5xx is a 502 here (the SDK retries it), as on the OpenAI surface."""
    if isinstance(err, UpstreamError) and err.upstream_status >= 500:
        return 529 if err.upstream_status == 529 else 502
    return err.status


def error_object(err: GatewayError) -> dict[str, Any]:
    status = status_for(err)
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": kind, "message": getattr(err, "detail", None) or err.reason}


def error_body(err: GatewayError) -> bytes:
    return _encoder.encode({"type": "error", "error": error_object(err)})


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


class ErrorSurface:
    """Anthropic's `{"type": "error", "error": {"type", "message"}}`, also for unknown URLs under its prefix."""

    def for_task(self, task: TaskType | None) -> "ErrorSurface":
        return self

    def error(self, err: GatewayError) -> tuple[int, str, bytes]:
        return status_for(err), "application/json", error_body(err)

    def no_route(self, method: str, path: str, path_qs: str,
                 allowed: set[str] | None) -> tuple[int, str, bytes, dict[str, str]]:
        status = 404 if allowed is None else 405
        return *self.error(StatusError(f"Unknown request URL: {method} {path}", status=status)), {}


ERRORS = ErrorSurface()
