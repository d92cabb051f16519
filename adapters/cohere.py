"""Cohere's v2 API (`cohere`): embed, rerank and chat (completion, chat_completion).

- embed: `POST /v2/embed` `{model, texts, input_type, embedding_types, truncate}`; the answer is keyed
  by embedding type and its vectors are spliced into our answer unparsed. On the `embedding` task, images
  (and several items as one embedding) go to the models that take them as `inputs` of `content` lists of
  `text` and `image_url` items (docs.cohere.com/reference/embed, cohere-python `EmbedInput`); ES's Cohere
  service sends texts only (`CohereV2EmbeddingsRequest`).
- rerank: `POST /v2/rerank` `{model, query, documents, top_n}` (rerank_compat).
- chat: `POST /v2/chat` `{model, messages, stream, ...}`; streams are SSE events typed by `type`,
  ended by `message-end`, which also carries the finish reason and the usage (reported once).

Source: https://docs.cohere.com/reference/embed, https://docs.cohere.com/reference/rerank,
https://docs.cohere.com/reference/chat
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import msgspec

from proxy.errors import RequestValidationError, StatusError, StreamReportedError, UpstreamError
from proxy.types import (ChatDelta, ChatMessage, ChatRequest, ChatResult, ContentPart, EmbedPart, EmbedRequest,
                         EmbedResult, FunctionCall, ImagePart, InputType, RerankRequest, RerankResult, TextPart, Tool,
                         ToolCall, ToolCallDelta, ToolChoice, Usage, part_type)

from .base import (Adapter, Framing, ProviderError, SSEEvent, StreamCut, StreamParser, UpstreamRequest, decoding,
                   generic_error, malformed, map_input_type, unsupported)
from .rerank_compat import parse_rerank, rerank_body

SERVICE = "cohere"
# verified: docs.cohere.com/reference/chat ("POST https://api.cohere.com/v2/chat"); ES CohereUtils still
# uses the older host api.cohere.ai, which serves the same API
HOST = "https://api.cohere.com"
EMBED_URL = f"{HOST}/v2/embed"
RERANK_URL = f"{HOST}/v2/rerank"
CHAT_URL = f"{HOST}/v2/chat"

_encoder = msgspec.json.Encoder()

# verified: ES CohereUtils.inputTypeToString
INPUT_TYPES: Mapping[InputType, str] = {
    InputType.INGEST: "search_document",
    InputType.SEARCH: "search_query",
    InputType.CLASSIFICATION: "classification",
    InputType.CLUSTERING: "clustering",
}

# service setting `embedding_type` -> (Cohere `embedding_types` value and response key, our element type).
# verified: ES CohereEmbeddingType (byte is a synonym of int8, bit of binary; BIT's request string is
# "binary") and CohereEmbeddingsResponseEntity (int8 -> TextEmbeddingByteResults, binary -> TextEmbeddingBitResults)
EMBEDDING_TYPES: Mapping[str, tuple[str, str]] = {
    "float": ("float", "float"),
    "int8": ("int8", "byte"),
    "byte": ("int8", "byte"),
    "binary": ("binary", "bit"),
    "bit": ("binary", "bit"),
}

# verified: cohere-python src/cohere/v2/types/chat_finish_reason.py (lower case there, upper case in the
# API reference: compared case-insensitively)
FINISH_REASONS: Mapping[str, str] = {
    "complete": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_call": "tool_calls",
    "content_blocked": "content_filter",
}
_ERROR_FINISH = {"error", "error_limit", "error_toxic", "timeout"}



# ------------------------------------------------------------------------------ response Structs


class _BilledUnits(msgspec.Struct):
    input_tokens: float | None = None
    output_tokens: float | None = None


class _Meta(msgspec.Struct):
    billed_units: _BilledUnits | None = None


class _EmbedResponse(msgspec.Struct):
    embeddings: msgspec.Raw
    meta: _Meta | None = None


class _Tokens(msgspec.Struct):
    input_tokens: float | None = None
    output_tokens: float | None = None


class _ChatUsage(msgspec.Struct):
    billed_units: _Tokens | None = None
    tokens: _Tokens | None = None

    def canonical(self) -> Usage:
        # `tokens` counts what the model processed (the OpenAI meaning); `billed_units` what is billed
        counts = self.tokens or self.billed_units or _Tokens()
        prompt, completion = int(counts.input_tokens or 0), int(counts.output_tokens or 0)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    id: str | None = None
    type: str | None = None
    function: _Function | None = None


class _Content(msgspec.Struct):
    type: str = "text"
    text: str | None = None


class _Message(msgspec.Struct):
    role: str = "assistant"
    content: list[_Content] | None = None
    tool_plan: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _ChatResponse(msgspec.Struct):
    id: str = ""
    finish_reason: str | None = None
    message: _Message | None = None
    usage: _ChatUsage | None = None


class _DeltaMessage(msgspec.Struct):
    role: str | None = None
    content: _Content | list[_Content] | None = None
    tool_plan: str | None = None
    tool_calls: _ToolCall | list[_ToolCall] | None = None


class _EventDelta(msgspec.Struct):
    message: _DeltaMessage | None = None
    finish_reason: str | None = None
    usage: _ChatUsage | None = None
    error: str | None = None


class _StreamEvent(msgspec.Struct):
    type: str | None = None
    id: str | None = None
    index: int | None = None
    delta: _EventDelta | None = None
    message: Any = None  # error payloads


_embed_decoder = msgspec.json.Decoder(_EmbedResponse)
_by_type_decoder = msgspec.json.Decoder(dict[str, list[msgspec.Raw]])
_vectors_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_chat_decoder = msgspec.json.Decoder(_ChatResponse)
_event_decoder = msgspec.json.Decoder(_StreamEvent)


def finish_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    low = reason.lower()
    return FINISH_REASONS.get(low, low)


# ------------------------------------------------------------------------------ request translation


def _content(content: str | list[ContentPart] | None, role: str) -> str | list[dict[str, Any]] | None:
    """OpenAI content to Cohere v2 content: a string, or text (and, for users, image_url) parts."""
    if content is None or isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart) and role == "user":
            image = part.image_url
            parts.append({"type": "image_url", "image_url": {"url": image} if isinstance(image, str) else image})
        else:
            raise RequestValidationError(f"The [{SERVICE}] service does not support content parts of type "
                                         f"[{part_type(part)}] in [{role}] messages")
    return parts


def translate_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    # verified: cohere-python v2 types (SystemMessage, UserMessage, AssistantMessage{tool_calls, tool_plan},
    # ToolMessage2{tool_call_id, content}); the roles are OpenAI's
    out = []
    for m in messages:
        if m.name is not None and m.role != "tool":  # a tool result's name is its call's, known from tool_call_id
            raise unsupported("messages.name", SERVICE)
        role = "system" if m.role == "developer" else m.role
        if role not in ("system", "user", "assistant", "tool"):
            raise RequestValidationError(f"The [{SERVICE}] service does not support messages with role [{m.role}]")
        item: dict[str, Any] = {"role": role}
        content = _content(m.content, role)
        if role == "tool":
            if not m.tool_call_id:
                raise RequestValidationError("A [tool] message needs a [tool_call_id]")
            item["tool_call_id"] = m.tool_call_id
            item["content"] = content if content is not None else ""
        elif role == "assistant" and m.tool_calls:
            if content:
                item["content"] = content
            item["tool_calls"] = [{"id": c.id, "type": "function",
                                   "function": {"name": c.function.name, "arguments": c.function.arguments or "{}"}}
                                  for c in m.tool_calls]
        else:
            item["content"] = content if content is not None else ""
        out.append(item)
    return out


def translate_tools(tools: list[Tool]) -> tuple[list[Tool], bool]:
    """Cohere v2 takes OpenAI's tool shape; `strict` is one request-wide flag there (`strict_tools`)."""
    out = []
    stricts = set()
    for tool in tools:
        stricts.add(bool(tool.function.strict))
        out.append(Tool(function=msgspec.structs.replace(tool.function, strict=None)))
    if len(stricts) > 1:
        raise RequestValidationError(f"The [{SERVICE}] service applies [strict] to all tools or none: "
                                     f"set it the same on every function")
    return out, stricts == {True}


def translate_tool_choice(choice: ToolChoice) -> str | None:
    # verified: cohere-python V2ChatRequestToolChoice docs: REQUIRED | NONE; unset lets the model choose
    if isinstance(choice, str):
        mapped = {"auto": None, "none": "NONE", "required": "REQUIRED"}
        if choice in mapped:
            return mapped[choice]
    raise RequestValidationError(f"The [{SERVICE}] service supports [tool_choice] values auto, none and required "
                                 f"only, not a named function")


def translate_response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    # verified: cohere-python JsonResponseFormatV2 {type: json_object, json_schema}
    kind = fmt.get("type")
    if kind == "text":
        return {"type": "text"}
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    raise RequestValidationError(f"The [{SERVICE}] service does not support [response_format] type [{kind}]")


def _cohere_item(part: EmbedPart) -> dict[str, Any]:
    """cohere-python `TextEmbedContent` / `ImageUrlEmbedContent`: an image goes as a `data:` URI in `image_url.url`."""
    if part.type == "text":
        return {"type": "text", "text": part.value}
    return {"type": "image_url", "image_url": {"url": part.value}}


# ------------------------------------------------------------------------------ the adapter


class CohereAdapter(Adapter):
    service = SERVICE
    framing = Framing.SSE
    # verified: ES CohereServiceFields.EMBEDDING_MAX_BATCH_SIZE = 96
    embed_batch_size: ClassVar[int | None] = 96
    handles_embedding_task: ClassVar[bool] = True

    @classmethod
    def embeds_images(cls, settings: Mapping[str, Any]) -> bool:
        # docs.cohere.com/docs/cohere-embed: embed-v4.0 takes `inputs` mixing text and images; the v3 models
        # take one image per request in `images` only, which one embedding task call cannot promise
        return str(settings.get("model_id") or "").lower().startswith("embed-v4")
    chat_params = frozenset({"frequency_penalty", "presence_penalty"})
    extra_params = frozenset({"top_k"})  # Cohere's `k`

    def _request(self, url: str, payload: dict[str, Any]) -> UpstreamRequest:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self.setting("api_key")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return UpstreamRequest(url=url, body=_encoder.encode(payload), headers=headers)

    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        return self._request(EMBED_URL, self.embed_body(req))

    def rerank_request(self, req: RerankRequest) -> UpstreamRequest:
        return self._request(RERANK_URL, self.rerank_body(req))

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        return self._request(CHAT_URL, self.chat_body(req))

    # -- embed ----------------------------------------------------------------------------------
    def embedding_type(self) -> tuple[str, str]:
        raw = str(self.setting("embedding_type") or "float").lower()
        try:
            return EMBEDDING_TYPES[raw]
        except KeyError:
            raise StatusError(f"Unsupported [embedding_type] [{raw}] for the [{SERVICE}] service") from None

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        if req.user is not None:
            raise unsupported("user", SERVICE)
        # verified: ES CohereActionCreator + CohereV2EmbeddingsRequest: the request's input_type, else the
        # endpoint's task-settings input_type, else search_query ("inputType is required in v2")
        stored = self.endpoint.task_settings.get("input_type")
        input_type = req.input_type or (InputType(stored) if stored else None) or InputType.SEARCH
        body: dict[str, Any] = {"model": self.setting("model_id")}
        if req.contents is not None:
            body["inputs"] = [{"content": [_cohere_item(p) for p in group]} for group in req.contents]
        else:
            body["texts"] = req.inputs
        body["input_type"] = map_input_type(input_type, INPUT_TYPES, SERVICE)
        body["embedding_types"] = [self.embedding_type()[0]]
        if req.dimensions is not None:
            # verified: cohere-python v2 embed `output_dimension` (embed-v4 and newer models)
            body["output_dimension"] = req.dimensions
        truncate = self.task_setting(req, "truncate")
        if truncate:
            body["truncate"] = truncate
        return body

    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            resp = _embed_decoder.decode(body)
            key, element_type = self.embedding_type()
            raw = bytes(resp.embeddings)
            if raw.lstrip()[:1] == b"[":  # v1-style bare float arrays
                vectors = _vectors_decoder.decode(raw)
                element_type = "float"
            else:
                by_type = _by_type_decoder.decode(raw)
                if key not in by_type:
                    raise malformed(f"response (no [{key}] embeddings)")
                vectors = by_type[key]
            usage = None
            units = resp.meta.billed_units if resp.meta else None
            if units is not None and units.input_tokens is not None:
                tokens = int(units.input_tokens)
                usage = Usage(prompt_tokens=tokens, total_tokens=tokens)
            return EmbedResult(vectors=vectors, element_type=element_type, usage=usage)

    # -- rerank ---------------------------------------------------------------------------------
    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        # verified: cohere-python v2 rerank {model, query, documents, top_n, max_tokens_per_doc}: v2 has no
        # return_documents (ES still sends it); the gateway attaches document text itself (pipeline.finish_rerank)
        return rerank_body(req, model=self.setting("model_id"), return_documents=False)

    # -- chat -----------------------------------------------------------------------------------
    def chat_body(self, req: ChatRequest) -> dict[str, Any]:
        if req.user is not None:
            raise unsupported("user", SERVICE)
        body: dict[str, Any] = {"model": req.model or self.setting("model_id"),
                                "messages": translate_messages(req.messages), "stream": bool(req.stream)}
        # verified: cohere-python RawV2Client.chat (max_tokens, stop_sequences, temperature, seed, k, p,
        # tools, strict_tools, tool_choice, response_format)
        if req.max_tokens is not None:
            body["max_tokens"] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.top_p is not None:
            body["p"] = req.top_p
        if req.stop:
            body["stop_sequences"] = req.stop
        if req.seed is not None:
            body["seed"] = req.seed
        # cohere-python RawV2Client.chat also takes frequency_penalty, presence_penalty and k (top-k)
        for name, value in (("frequency_penalty", req.frequency_penalty), ("presence_penalty", req.presence_penalty),
                            ("k", req.extra.get("top_k"))):
            if value is not None:
                body[name] = value
        if req.tools:
            body["tools"], strict = translate_tools(req.tools)
            if strict:
                body["strict_tools"] = True
        if req.tool_choice is not None:
            choice = translate_tool_choice(req.tool_choice)
            if choice is not None:
                body["tool_choice"] = choice
        if req.response_format is not None:
            body["response_format"] = translate_response_format(req.response_format)
        return body

    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        with decoding():
            resp = _chat_decoder.decode(body)
        reason = (resp.finish_reason or "").lower()
        if reason in _ERROR_FINISH:
            raise UpstreamError(f"The upstream service ended the generation with [{resp.finish_reason}]",
                                upstream_status=429 if reason == "error_limit" else 502)
        msg = resp.message or _Message()
        texts = [c.text for c in msg.content or [] if c.type == "text" and c.text is not None]
        calls = None
        if msg.tool_calls:
            calls = [ToolCall(id=c.id, function=FunctionCall(name=c.function.name if c.function else None,
                                                             arguments=c.function.arguments if c.function else None))
                     for c in msg.tool_calls]
        return ChatResult(id=resp.id, model=req.model or self.setting("model_id") or "",
                          content="".join(texts) if texts or not calls else None, tool_calls=calls,
                          finish_reason=finish_reason(resp.finish_reason),
                          usage=resp.usage.canonical() if resp.usage else None)

    def parse_rerank(self, req: RerankRequest, body: bytes) -> RerankResult:
        with decoding():
            return parse_rerank(body)

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return CohereStreamParser(model=req.model or self.setting("model_id"))

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        # verified: ES CohereErrorResponseEntity reads `message` from {"message": "..."}
        return generic_error(body)


class CohereStreamParser:
    """Cohere v2 chat SSE events (typed by `type`) to canonical deltas; `message-end` is the terminator.

    verified: docs.cohere.com/v2/docs/streaming (message-start, content-start, content-delta with
    delta.message.content.text, content-end, message-end) and cohere-python v2 stream event types
    (tool-plan-delta, tool-call-start/-delta/-end with delta.message.tool_calls, citation-start/-end,
    message-end delta.{finish_reason, usage}).
    """

    def __init__(self, model: str | None = None) -> None:
        self.done = False
        self.id: str | None = None
        self.model = model
        self.tool_index: dict[int, int] = {}  # Cohere event index -> our tool-call index
        self.last_key: int | None = None

    def _delta(self, **kw: Any) -> ChatDelta:
        return ChatDelta(id=self.id, model=self.model, **kw)

    def feed(self, event: SSEEvent) -> list[ChatDelta]:
        if self.done:
            return []
        data = event.data.strip()
        if not data:
            return []
        try:
            ev = _event_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            if event.event == "error":
                raise self._error(generic_error(data.encode())) from None
            raise malformed("stream event") from None
        kind = ev.type or event.event
        if kind == "error" or event.event == "error":
            # unverified: Cohere documents no in-stream error event; an `error` event or type is treated as one
            raise self._error(generic_error(data.encode()))
        delta = ev.delta or _EventDelta()
        msg = delta.message or _DeltaMessage()
        if kind == "message-start":
            self.id = ev.id or self.id
            return [self._delta(role="assistant")]
        if kind in ("content-start", "content-delta"):
            content = msg.content
            if isinstance(content, list):
                texts = [c.text for c in content if c.type == "text" and c.text]
            else:
                texts = [content.text] if content is not None and content.type == "text" and content.text else []
            return [self._delta(content="".join(texts))] if texts else []
        if kind in ("tool-call-start", "tool-call-delta"):
            calls = msg.tool_calls
            call = calls[0] if isinstance(calls, list) and calls else calls if isinstance(calls, _ToolCall) else None
            if call is None:
                return []
            fn = call.function or _Function()
            if kind == "tool-call-start":
                key = ev.index if ev.index is not None else -1 - len(self.tool_index)
                n = self.tool_index.setdefault(key, len(self.tool_index))
                self.last_key = key
                return [self._delta(tool_calls=[ToolCallDelta(index=n, id=call.id, type="function",
                                                              function=FunctionCall(name=fn.name,
                                                                                    arguments=fn.arguments or ""))])]
            n = self.tool_index.get(ev.index if ev.index is not None else self.last_key)
            if n is None:
                raise malformed("stream event (tool-call-delta before its tool-call-start)")
            if not fn.arguments:
                return []
            return [self._delta(tool_calls=[ToolCallDelta(index=n, function=FunctionCall(arguments=fn.arguments))])]
        if kind == "message-end":
            self.done = True
            reason = (delta.finish_reason or "").lower()
            if reason in _ERROR_FINISH:
                detail = delta.error or reason
                raise StreamReportedError(detail, upstream_status=429 if reason == "error_limit" else 502)
            out = []
            if delta.finish_reason:
                out.append(self._delta(finish_reason=finish_reason(delta.finish_reason)))
            out.append(self._delta(usage=delta.usage.canonical() if delta.usage else Usage()))
            return out
        # content-end, tool-plan-delta (the model's plan, not answer text), tool-call-end, citation-*, debug
        return []

    @staticmethod
    def _error(info: ProviderError | None) -> UpstreamError:
        message = info.message if info and info.message else "unknown error"
        return StreamReportedError(message)

    def finish(self) -> list[ChatDelta]:
        if self.done:
            return []
        raise StreamCut()
