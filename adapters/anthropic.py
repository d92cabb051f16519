"""Anthropic's Messages API (`anthropic`): completion and chat_completion.

Canonical (OpenAI-shaped) chat requests become Messages requests: system messages move to the
top-level `system`, tools to `{name, description, input_schema}`, assistant tool calls to `tool_use`
blocks and tool results to user `tool_result` blocks. Streams are Anthropic's typed SSE events,
ended by `message_stop`; usage is reported once, from `message_start` (input) and the last
cumulative `message_delta` (output).

Source: https://docs.anthropic.com/en/api/messages, https://docs.anthropic.com/en/api/messages-streaming
"""

from __future__ import annotations

from typing import Any, Mapping

import msgspec

from proxy.errors import RequestValidationError, StatusError, StreamReportedError, UpstreamError
from proxy.types import (ChatDelta, ChatMessage, ChatRequest, ChatResult, ContentPart, FunctionCall, ImagePart,
                         NamedToolChoice, Tool, ToolCall, ToolCallDelta, ToolChoice, Usage)

from .base import (Adapter, Framing, ProviderError, SSEEvent, StreamCut, StreamParser, UpstreamRequest, decoding,
                   generic_error, malformed, unsupported)
from .chat_parts import content_blocks, data_url, schema, tool_arguments

SERVICE = "anthropic"
DEFAULT_URL = "https://api.anthropic.com/v1/messages"
# The current version (platform.claude.com/docs/en/api/versioning), the one the anthropic SDK 2.x sends; ES
# AnthropicRequestUtils still sends 2023-06-01. 2026-10-21 answers 400 to temperature, top_p and top_k, even at
# their defaults (platform.claude.com/docs/en/api/migration-2026-10-21, "Sampling parameters removed").
API_VERSION = "2026-10-21"
SAMPLING = ("temperature", "top_p", "top_k")

_encoder = msgspec.json.Encoder()

# verified: ES AnthropicChatCompletionStreamingProcessor javadoc (end_turn, max_tokens, tool_use);
# unverified: pause_turn, refusal, model_context_window_exceeded (public API descriptions, not checked here)
FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# In-stream `error` events carry the same `error.type` values as HTTP errors (docs.claude.com/en/api/errors).
_ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "overloaded_error": 529,
}


def finish_reason(stop_reason: str | None) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, stop_reason)


# ------------------------------------------------------------------------------ response Structs


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    def prompt(self) -> int | None:
        if self.input_tokens is None:
            return None
        # Anthropic counts cached prompt tokens apart from input_tokens; OpenAI's prompt_tokens includes them
        return self.input_tokens + (self.cache_creation_input_tokens or 0) + (self.cache_read_input_tokens or 0)


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    thinking: str | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw(b"")  # msgspec.Raw cannot sit in a union: empty means absent


class _Message(msgspec.Struct):
    id: str = ""
    model: str = ""
    role: str = "assistant"
    content: list[_Block] = []
    stop_reason: str | None = None
    usage: _Usage | None = None


class _Delta(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    thinking: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _Event(msgspec.Struct):
    type: str
    message: _Message | None = None
    index: int | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: ProviderError | None = None


_message_decoder = msgspec.json.Decoder(_Message)
_event_decoder = msgspec.json.Decoder(_Event)



def _usage(prompt: int, completion: int, cache: _Usage | None = None) -> Usage:
    """`cache`: the Anthropic usage whose cache reads and writes are carried as details."""
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 cached_tokens=cache.cache_read_input_tokens if cache else None,
                 cache_write_tokens=cache.cache_creation_input_tokens if cache else None)


# ------------------------------------------------------------------------------ request translation


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _text_parts(content: str | list[ContentPart] | None, where: str) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) as Anthropic content blocks."""
    return content_blocks(content, where, SERVICE, _text_block, _image_block, keep_empty_text=False)


def _image_block(part: ImagePart) -> dict[str, Any]:
    url = part.url
    if not url:
        raise RequestValidationError("An [image_url] content part needs a [url]")
    if url.startswith("data:"):
        media_type, data, is_base64 = data_url(url)
        if not is_base64 or not media_type:
            raise RequestValidationError(f"The [{SERVICE}] service accepts only base64 data URLs for images")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _plain(content: str | list[ContentPart] | None, where: str) -> str | list[dict[str, Any]]:
    """A message's content as a string when it is one, else as blocks."""
    if isinstance(content, str):
        return content
    return _text_parts(content, where)


def translate_messages(messages: list[ChatMessage]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """(system, messages) for the Messages API."""
    system: list[ChatMessage] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        # a tool result's `name` repeats what its tool_use_id already identifies; other names have no place
        if m.name is not None and m.role != "tool":
            raise unsupported("messages.name", SERVICE)
        role = m.role
        if role in ("system", "developer"):
            system.append(m)
        elif role == "user":
            out.append({"role": "user", "content": _plain(m.content, "user")})
        elif role == "assistant":
            if m.tool_calls:
                blocks = _text_parts(m.content, "assistant")
                for call in m.tool_calls:
                    blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name,
                                   "input": tool_arguments(call)})
                out.append({"role": "assistant", "content": blocks})
            else:
                out.append({"role": "assistant", "content": _plain(m.content, "assistant")})
        elif role == "tool":
            if not m.tool_call_id:
                raise RequestValidationError("A [tool] message needs a [tool_call_id]")
            result = {"type": "tool_result", "tool_use_id": m.tool_call_id,
                      "content": _plain(m.content, "tool") if m.content is not None else ""}
            prev = out[-1] if out else None
            # the results of parallel tool calls go together in the one user turn that follows them
            if (prev is not None and prev["role"] == "user" and isinstance(prev["content"], list)
                    and prev["content"] and all(b.get("type") == "tool_result" for b in prev["content"])):
                prev["content"].append(result)
            else:
                out.append({"role": "user", "content": [result]})
        else:
            raise RequestValidationError(f"The [{SERVICE}] service does not support messages with role [{role}]")
    sys_value: str | list[dict[str, Any]] | None = None
    if len(system) == 1 and isinstance(system[0].content, str):
        sys_value = system[0].content  # one plain-string system message stays a string (as ES sends it)
    elif system:
        sys_value = [block for m in system for block in _text_parts(m.content, "system")]
    return sys_value, out


def translate_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    out = []
    for fn in (tool.function for tool in tools):
        item: dict[str, Any] = {"name": fn.name}
        if fn.description is not None:
            item["description"] = fn.description
        item["input_schema"] = schema(fn)  # required by Anthropic
        # ES refuses `strict` (AnthropicUnifiedChatCompletionRequestEntity); the Messages API has taken it since
        # structured outputs (anthropic SDK 2.17 `ToolParam.strict`), so it is passed on
        if fn.strict:
            item["strict"] = True
        out.append(item)
    return out


def translate_response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI `response_format` as the Messages API `output_config.format` (structured outputs:
    anthropic SDK 2.17 `OutputConfigParam` / `JSONOutputFormatParam`); the answer's text is the JSON."""
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise RequestValidationError("[response_format] of type [json_schema] needs [json_schema.schema]")
        return {"type": "json_schema", "schema": schema}
    raise RequestValidationError(f"The [{SERVICE}] service supports [response_format] types [text] and "
                                 f"[json_schema] (a schema is required: it has no schema-less JSON mode), "
                                 f"not [{kind}]")


# OpenAI reasoning_effort as a thinking budget: the budgets Google's OpenAI compatibility layer uses for
# Gemini (ai.google.dev/gemini-api/docs/openai: low, medium, high -> 1K, 8K, 24K; none disables thinking);
# 1024 is the Messages API's smallest budget (anthropic SDK `ThinkingConfigEnabledParam.budget_tokens`)
THINKING_BUDGETS: Mapping[str, int] = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}


def thinking_budget(effort: str, service: str) -> int:
    try:
        return THINKING_BUDGETS[effort]
    except KeyError:
        raise RequestValidationError(f"Invalid [reasoning_effort] [{effort}] for the [{service}] service; expected "
                                     f"one of [{', '.join(THINKING_BUDGETS)}]", param="reasoning_effort") from None


def translate_tool_choice(choice: ToolChoice) -> dict[str, Any]:
    # verified: ES AnthropicUnifiedChatCompletionRequestEntity (auto/none/required -> auto/none/any; function -> tool)
    if isinstance(choice, NamedToolChoice):
        return {"type": "tool", "name": choice.function.name}
    mapped = {"auto": "auto", "none": "none", "required": "any"}.get(choice)
    if mapped is None:
        raise StatusError(f"Unsupported tool_choice value [{choice}] for the Anthropic chat completion API.")
    return {"type": mapped}


# ------------------------------------------------------------------------------ the adapter


# verified: docs.claude.com/en/docs/build-with-claude/extended-thinking: `thinking: {"type": "enabled",
# "budget_tokens": N}` with N >= 1024, thinking blocks in answers and `thinking_delta` events in streams
MIN_THINKING_BUDGET = 1024


def thinking_config(reasoning: dict[str, Any]) -> dict[str, Any]:
    """ES `Reasoning` as Anthropic's `thinking`: `max_tokens` is the budget, `enabled` alone the minimum one;
    Anthropic's Messages API has no effort, summary or exclude for it."""
    for name in ("effort", "summary"):
        if reasoning.get(name) is not None:
            raise unsupported(f"reasoning.{name}", SERVICE)
    if reasoning.get("exclude"):
        raise unsupported("reasoning.exclude", SERVICE)
    if reasoning.get("max_tokens") is None and reasoning.get("enabled") is False:
        return {"type": "disabled"}
    return {"type": "enabled", "budget_tokens": int(reasoning.get("max_tokens") or MIN_THINKING_BUDGET)}


class AnthropicAdapter(Adapter):
    service = SERVICE
    maps_reasoning = True  # thinking_config
    framing = Framing.SSE
    chat_params = frozenset({"parallel_tool_calls", "reasoning_effort"})
    extra_params = frozenset({"top_k"})  # a Messages API parameter clients send through extra_body
    # ES retries 429, 500 and 529 (overloaded) (AnthropicResponseHandler); the base set covers them

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        key = self.setting("api_key")
        if key:
            headers["x-api-key"] = key
        return UpstreamRequest(url=DEFAULT_URL, body=_encoder.encode(self.body(req)), headers=headers)

    def body(self, req: ChatRequest, sampling: bool = False) -> dict[str, Any]:
        """The Messages body; `sampling`: the API version still takes temperature, top_p and top_k."""
        if req.seed is not None:
            raise unsupported("seed", SERVICE)
        system, messages = translate_messages(req.messages)
        body: dict[str, Any] = {"model": req.model or self.setting("model_id")}
        if system is not None:
            body["system"] = system
        body["messages"] = messages
        # max_tokens is required: the request's, else the endpoint's (required at creation)
        max_tokens = req.max_tokens if req.max_tokens is not None else self.task_setting(req, "max_tokens")
        if max_tokens is None:
            raise RequestValidationError(f"The [{SERVICE}] service needs [max_tokens]: set it in the request "
                                         f"([max_completion_tokens]) or in the endpoint's task settings")
        body["max_tokens"] = max_tokens
        values = {"temperature": req.temperature, "top_p": req.top_p, "top_k": req.extra.get("top_k")}
        for name in SAMPLING:
            value = values[name] if values[name] is not None else self.task_setting(req, name)
            if value is None:
                continue
            if not sampling:
                raise RequestValidationError(f"The [{SERVICE}] service does not support the [{name}] parameter: "
                                             f"the Messages API version [{API_VERSION}] removed it")
            body[name] = value
        if req.stop:
            body["stop_sequences"] = req.stop
        if req.tools:
            body["tools"] = translate_tools(req.tools)
        if req.tool_choice is not None:
            body["tool_choice"] = translate_tool_choice(req.tool_choice)
        if req.parallel_tool_calls is False and req.tools and body.get("tool_choice", {}).get("type") != "none":
            # anthropic SDK ToolChoiceAutoParam / ToolChoiceAnyParam / ToolChoiceToolParam.disable_parallel_tool_use
            body["tool_choice"] = {**body.get("tool_choice", {"type": "auto"}), "disable_parallel_tool_use": True}
        if req.response_format is not None:
            fmt = translate_response_format(req.response_format)
            if fmt is not None:
                body["output_config"] = {"format": fmt}
        if req.reasoning_effort is not None:
            budget = thinking_budget(req.reasoning_effort, SERVICE)
            if budget:
                if budget >= max_tokens:  # the budget must leave room for the answer
                    raise RequestValidationError(f"[reasoning_effort] [{req.reasoning_effort}] is a thinking budget "
                                                 f"of [{budget}] tokens for the [{SERVICE}] service; [max_tokens] "
                                                 f"must be larger than that", param="max_tokens")
                body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if req.reasoning is not None:
            body["thinking"] = thinking_config(req.reasoning)
        if req.user:
            # verified: Anthropic SDK Metadata.user_id ("an external identifier for the user"); ES sends no user
            body["metadata"] = {"user_id": req.user}
        if req.stream:
            body["stream"] = True
        return body

    # -- responses ----------------------------------------------------------------------------
    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        # verified: ES AnthropicChatCompletionResponseEntity javadoc ({id, model, content[{type, text}],
        # stop_reason, usage{input_tokens, output_tokens}}); ES answers one completion result per text block,
        # we join them into one answer
        with decoding():
            msg = _message_decoder.decode(body)
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[ToolCall] = []
        for block in msg.content:
            if block.type == "text" and block.text is not None:
                texts.append(block.text)
            elif block.type == "thinking" and block.thinking:
                thoughts.append(block.thinking)
            elif block.type == "tool_use":
                args = bytes(block.input).decode() or "{}"
                calls.append(ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=args)))
            # redacted_thinking is encrypted: nothing to show
        usage = None
        if msg.usage is not None:
            usage = _usage(msg.usage.prompt() or 0, msg.usage.output_tokens or 0, msg.usage)
        return ChatResult(id=msg.id, model=msg.model, content="".join(texts) if texts or not calls else None,
                          reasoning="".join(thoughts) if thoughts else None, tool_calls=calls or None,
                          finish_reason=finish_reason(msg.stop_reason), usage=usage)

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return AnthropicStreamParser()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        # verified: docs.claude.com/en/api/errors: {"type":"error","error":{"type","message"},"request_id"}
        err = generic_error(body)
        if err is not None and status == 429 and b"enforced_spend_limit_reached" in body:
            err.retryable = False  # a spend limit does not lift within a request's timeout
        return err


class AnthropicStreamParser:
    """Anthropic's typed SSE events to canonical deltas; `message_stop` is the terminator.

    Tool calls are numbered 0, 1, ... in the order their `tool_use` blocks start (the OpenAI
    `index`), not by Anthropic's content-block index, which also counts text blocks.
    """

    def __init__(self) -> None:
        self.done = False
        self.id: str | None = None
        self.model: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.tool_index: dict[int, int] = {}  # content-block index -> tool-call index
        self.cache: _Usage | None = None

    def _delta(self, **kw: Any) -> ChatDelta:
        return ChatDelta(id=self.id, model=self.model, **kw)

    def feed(self, event: SSEEvent) -> list[ChatDelta]:
        if self.done:
            return []
        data = event.data.strip()
        if event.event == "ping":
            return []
        try:
            ev = _event_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            if event.event == "error":
                raise self._error(generic_error(data.encode())) from None
            raise malformed("stream event") from None
        kind = ev.type
        if kind == "error" or event.event == "error":
            raise self._error(ev.error)
        if kind == "message_start":
            msg = ev.message or _Message()
            self.id, self.model = msg.id or None, msg.model or None
            if msg.usage is not None:
                self.prompt_tokens = msg.usage.prompt() or 0
                self.completion_tokens = msg.usage.output_tokens or 0
                self.cache = msg.usage
            return [self._delta(role="assistant")]
        if kind == "content_block_start":
            block = ev.content_block
            if block is None:
                return []
            if block.type == "tool_use":
                n = len(self.tool_index)
                self.tool_index[ev.index if ev.index is not None else -1 - n] = n
                return [self._delta(tool_calls=[ToolCallDelta(index=n, id=block.id, type="function",
                                                              function=FunctionCall(name=block.name,
                                                                                    arguments=""))])]
            if block.type == "text" and block.text:
                return [self._delta(content=block.text)]
            return []
        if kind == "content_block_delta":
            delta = ev.delta
            if delta is None:
                return []
            if delta.type == "text_delta" and delta.text:
                return [self._delta(content=delta.text)]
            if delta.type == "thinking_delta" and delta.thinking:
                return [self._delta(reasoning=delta.thinking)]
            if delta.type == "input_json_delta" and delta.partial_json:
                n = self.tool_index.get(ev.index if ev.index is not None else -1)
                if n is None:
                    raise malformed("stream event (tool input for an unknown content block)")
                return [self._delta(tool_calls=[ToolCallDelta(index=n, function=FunctionCall(
                    arguments=delta.partial_json))])]
            # signature_delta / citations_delta: nothing the ES chunk carries
            return []
        if kind == "message_delta":
            if ev.usage is not None:
                # cumulative counts: the last one wins, never summed
                if ev.usage.output_tokens is not None:
                    self.completion_tokens = ev.usage.output_tokens
                prompt = ev.usage.prompt()
                if prompt is not None:
                    self.prompt_tokens = prompt
                    self.cache = ev.usage
            reason = ev.delta.stop_reason if ev.delta is not None else None
            return [self._delta(finish_reason=finish_reason(reason))] if reason else []
        if kind == "message_stop":
            self.done = True
            return [self._delta(usage=_usage(self.prompt_tokens, self.completion_tokens, self.cache))]
        # content_block_stop, ping, vertex_event and future event types carry nothing for us
        return []

    def _error(self, info: ProviderError | None) -> UpstreamError:
        kind = info.type if info else None
        message = info.message if info and info.message else "unknown error"
        return StreamReportedError(message, upstream_status=_ERROR_STATUS.get(kind or "", 502), provider_type=kind)

    def finish(self) -> list[ChatDelta]:
        if self.done:
            return []
        raise StreamCut()
