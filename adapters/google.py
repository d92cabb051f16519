"""Google's Gemini wire family, and the Google AI Studio (Gemini API) adapter.

The Gemini translation here (contents/parts, systemInstruction, generationConfig, function calling,
the `?alt=sse` stream of whole GenerateContentResponse objects that ends when the connection closes)
is shared with Vertex AI (`adapters/vertex.py`), which speaks the same body on other URLs.
Sources: https://ai.google.dev/api/generate-content, https://ai.google.dev/api/embeddings; ES `GoogleAiStudio*RequestEntity`,
`GoogleVertexAiUnifiedChatCompletionRequestEntity` and `GoogleVertexAiUnifiedStreamingProcessor`.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Mapping
from urllib.parse import quote

import msgspec

from proxy.errors import StatusError, StreamReportedError, UpstreamError
from proxy.types import (CanonicalRequest, ChatDelta, ChatMessage, ChatRequest, ChatResult, EmbedRequest, EmbedResult,
                         FunctionCall, ImagePart, InputType, TaskType, TextPart, Tool, ToolCall, ToolCallDelta,
                         ToolChoice, Usage, part_type)

from .base import (Adapter, ProviderError, SSEEvent, StreamCut, StreamParser, UpstreamRequest, decoding, malformed,
                   map_input_type, unsupported)

T = TaskType
_encoder = msgspec.json.Encoder()
_any = msgspec.json.Decoder(Any)

# ES GoogleAiStudioEmbeddingsRequestEntity / GoogleVertexAiEmbeddingsRequestEntity
GOOGLE_INPUT_TYPES: Mapping[InputType, str] = {
    InputType.INGEST: "RETRIEVAL_DOCUMENT",
    InputType.SEARCH: "RETRIEVAL_QUERY",
    InputType.CLASSIFICATION: "CLASSIFICATION",
    InputType.CLUSTERING: "CLUSTERING",
}

# Gemini finishReason -> the OpenAI vocabulary of canonical deltas. ES passes Google's raw value
# through; we map it so OpenAI clients see values they know. Unknown values are lower-cased.
_FINISH = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "LANGUAGE": "content_filter", "OTHER": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop", "MALFORMED_FUNCTION_CALL": "stop", "UNEXPECTED_TOOL_CALL": "stop",
}

# Google's documented placeholder for a replayed function call that lost its thought signature
# (canonical tool calls cannot carry one). verified: ES GoogleVertexAiUnifiedChatCompletionRequestEntity
# (SKIP_THOUGHT_SIGNATURE_VALIDATOR, citing ai.google.dev/gemini-api/docs/generate-content/thought-signatures).
SKIP_THOUGHT_SIGNATURE = "skip_thought_signature_validator"


# ------------------------------------------------------------------------------ response Structs


class _FunctionCall(msgspec.Struct):
    name: str = ""
    args: msgspec.Raw = msgspec.Raw(b"{}")  # passed on byte for byte as the canonical `arguments`
    id: str | None = None


class _Part(msgspec.Struct):
    text: str | None = None
    functionCall: _FunctionCall | None = None
    thought: bool | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] = []
    role: str | None = None


class _Candidate(msgspec.Struct):
    content: _Content | None = None
    finishReason: str | None = None
    index: int = 0


class _UsageMetadata(msgspec.Struct):
    promptTokenCount: int = 0
    candidatesTokenCount: int = 0
    totalTokenCount: int = 0
    thoughtsTokenCount: int | None = None
    cachedContentTokenCount: int | None = None

    def usage(self) -> Usage:
        # Gemini's candidatesTokenCount excludes thinking tokens; OpenAI's completion_tokens includes
        # them (as ES does in GoogleVertexAiUnifiedStreamingProcessor.usageMetadataToChunk).
        # promptTokenCount already includes cachedContentTokenCount (UsageMetadata reference).
        return Usage(prompt_tokens=self.promptTokenCount,
                     completion_tokens=self.candidatesTokenCount + (self.thoughtsTokenCount or 0),
                     total_tokens=self.totalTokenCount, cached_tokens=self.cachedContentTokenCount,
                     reasoning_tokens=self.thoughtsTokenCount)


class _PromptFeedback(msgspec.Struct):
    blockReason: str | None = None


class _GenerateContentResponse(msgspec.Struct):
    candidates: list[_Candidate] = []
    usageMetadata: _UsageMetadata | None = None
    modelVersion: str | None = None
    responseId: str | None = None
    promptFeedback: _PromptFeedback | None = None
    error: Any = None


class _Values(msgspec.Struct):
    values: msgspec.Raw  # spliced into our answer unparsed


class _BatchEmbedResponse(msgspec.Struct):
    embeddings: list[_Values]


_generate_decoder = msgspec.json.Decoder(_GenerateContentResponse)
_batch_embed_decoder = msgspec.json.Decoder(_BatchEmbedResponse)



# ------------------------------------------------------------------------------ errors


def _retry_delay(err: dict) -> float | None:
    """google.rpc.RetryInfo `retryDelay` ("12s", "0.5s") among the error details: Google sends no Retry-After."""
    for detail in err.get("details") or ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None


def google_error(body: bytes) -> ProviderError | None:
    """`{"error": {"code", "message", "status", "details"}}`, also wrapped in a one-element array
    (what `streamGenerateContent` without `alt=sse` answers). verified: ES GoogleAiStudioErrorResponseEntity
    reads error.message; the shape with `status` and `details[].retryDelay` from recorded Gemini 429
    bodies (e.g. discuss.ai.google.dev/t/429-errors-despite-waiting-after-retrydelay/96899)."""
    try:
        data = _any.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return ProviderError(message=text[:500]) if text else None
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        code = err.get("code")
        message = err.get("message")
        return ProviderError(message=message if isinstance(message, str) else None,
                             type=err.get("status") if isinstance(err.get("status"), str) else None,
                             code=None if code is None else str(code), retry_after=_retry_delay(err))
    if isinstance(err, str):  # OAuth2 style: {"error": "invalid_grant", "error_description": "..."}
        return ProviderError(message=data.get("error_description") or err, type=err)
    message = data.get("message")
    return ProviderError(message=message) if isinstance(message, str) else None


def _stream_error(error: Any) -> UpstreamError:
    info = google_error(_encoder.encode({"error": error})) if isinstance(error, dict) else None
    text = info.message if info and info.message else str(error)[:300]
    return StreamReportedError(text)


# ------------------------------------------------------------------------------ requests


def _bad(message: str) -> StatusError:
    return StatusError(message, status=400)


def _text_parts(message: ChatMessage, service: str) -> list[dict[str, Any]]:
    """A message's content as Gemini parts; empty text is dropped (Gemini rejects empty text parts)."""
    content = message.content
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for item in content:
        if isinstance(item, TextPart):
            if item.text:
                parts.append({"text": item.text})
        elif isinstance(item, ImagePart):
            url = item.url
            head, sep, data = url.partition(",")
            if not (url.startswith("data:") and sep and head.endswith(";base64")):
                raise _bad(f"Only base64 data URLs are supported for images by the [{service}] service")
            # unverified: Part.inlineData {mimeType, data} from the public API reference (ES sends text only)
            parts.append({"inlineData": {"mimeType": head[5:-7], "data": data}})
        else:
            raise _bad(f"Type [{part_type(item)}] not supported by the [{service}] service. Supported types: "
                       f"[text, image_url]")
    return parts


def _json_object(text: str | None, what: str) -> msgspec.Raw:
    """A JSON object given as a string, passed on unchanged (as Raw) once checked."""
    if not text:
        return msgspec.Raw(b"{}")
    try:
        value = _any.decode(text)
    except msgspec.DecodeError:
        raise _bad(f"The {what} must be a JSON object") from None
    if not isinstance(value, dict):
        raise _bad(f"The {what} must be a JSON object")
    return msgspec.Raw(text.encode())


def _tool_result(message: ChatMessage, service: str) -> Any:
    texts = [p["text"] for p in _text_parts(message, service) if "text" in p]
    text = "".join(texts)
    if not text:
        return {}
    try:
        value = _any.decode(text)
    except msgspec.DecodeError:
        value = None
    if isinstance(value, dict):
        return msgspec.Raw(text.encode())
    # Google reads a response object without `output`/`error` as the output itself, so a
    # non-object result is wrapped (ES FUNCTION_RESPONSE_OUTPUT).
    return {"output": text}


def _model_issued(call_id: str | None, name: str | None) -> bool:
    # Canonical ids fall back to the function name when Gemini sent none: never echo those.
    return bool(call_id) and call_id != name


def _contents(messages: list[ChatMessage], service: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(contents, systemInstruction parts)."""
    names: dict[str, str] = {}
    for m in messages:
        for call in m.tool_calls or ():
            if call.id and call.function.name:
                names[call.id] = call.function.name
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    for m in messages:
        role = m.role.lower()
        if m.name is not None and role != "tool":  # a tool result's name is its call's, known from tool_call_id
            raise unsupported("messages.name", service)
        if role in ("system", "developer"):
            if isinstance(m.content, str) and not m.content:
                raise _bad(f"System message cannot be empty for the [{service}] service")
            system.extend(_text_parts(m, service))
        elif role == "tool":
            if not m.tool_call_id:
                raise _bad(f"Tool messages require a [tool_call_id] for the [{service}] service")
            name = names.get(m.tool_call_id, m.tool_call_id)
            response: dict[str, Any] = {"name": name}
            if _model_issued(m.tool_call_id, name):
                response["id"] = m.tool_call_id
            response["response"] = _tool_result(m, service)
            part = {"functionResponse": response}
            # consecutive tool messages answer one parallel call turn: Gemini wants them in one content
            if contents and contents[-1].get("_tool"):
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part], "_tool": True})
        elif role in ("user", "assistant", "model"):
            parts = _text_parts(m, service)
            if m.tool_calls:
                if role == "user":
                    raise _bad(f"Only assistant messages may carry tool calls for the [{service}] service")
                for i, call in enumerate(m.tool_calls):
                    if call.type != "function":
                        raise _bad(f"Tool call type [{call.type}] not supported by the [{service}] service")
                    fc: dict[str, Any] = {"name": call.function.name,
                                          "args": _json_object(call.function.arguments,
                                                               f"arguments of tool call [{call.id}]")}
                    if _model_issued(call.id, call.function.name):
                        fc["id"] = call.id
                    part = {"functionCall": fc}
                    if i == 0:
                        part["thoughtSignature"] = SKIP_THOUGHT_SIGNATURE
                    parts.append(part)
            if parts:
                contents.append({"role": "user" if role == "user" else "model", "parts": parts})
        else:
            raise _bad(f"Role [{m.role}] not supported by the [{service}] service. "
                       f"Supported roles: [system, user, assistant, tool]")
    for c in contents:
        c.pop("_tool", None)
    return contents, system


def _tools(tools: list[Tool], service: str) -> list[dict[str, Any]]:
    declarations = []
    for fn in (tool.function for tool in tools):
        if not fn.name:
            raise _bad("Tool of type [function] must have a function definition")
        decl: dict[str, Any] = {"name": fn.name}
        if fn.description:
            decl["description"] = fn.description
        if fn.parameters:
            # OpenAI tools carry JSON Schema: `parametersJsonSchema` takes it as is, `parameters` only Google's
            # OpenAPI subset (ai.google.dev/api/caching#FunctionDeclaration; what google-genai sends for it)
            decl["parametersJsonSchema"] = fn.parameters
        if fn.strict:  # strict: false asks for nothing
            raise unsupported("tools.function.strict", service)
        declarations.append(decl)
    return [{"functionDeclarations": declarations}]


def _tool_config(choice: ToolChoice, service: str) -> dict[str, Any] | None:
    """OpenAI tool_choice -> functionCallingConfig (modes AUTO, ANY, NONE).

    ES maps only "auto" and a named function (ANY + allowedFunctionNames, verified in
    GoogleVertexAiUnifiedChatCompletionRequestEntity.buildToolConfig). unverified: "none" -> NONE and
    "required" -> ANY, from the public FunctionCallingConfig.Mode enum rather than a recorded exchange.
    """
    if isinstance(choice, str):
        mode = {"auto": None, "none": "NONE", "required": "ANY"}.get(choice, "?")
        if mode == "?":
            raise _bad(f"Tool choice value [{choice}] not supported by the [{service}] service. "
                       f"Supported values: [auto, none, required]")
        return None if mode is None else {"functionCallingConfig": {"mode": mode}}
    config: dict[str, Any] = {"mode": "ANY"}
    if choice.function.name:
        config["allowedFunctionNames"] = [choice.function.name]
    return {"functionCallingConfig": config}


def _response_format(fmt: dict[str, Any], service: str) -> dict[str, Any]:
    kind = fmt.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        out: dict[str, Any] = {"responseMimeType": "application/json"}
        if schema:
            # unverified: `responseJsonSchema` (full JSON Schema) is the v1beta / Vertex field for
            # OpenAI-style schemas; `responseSchema` only takes Google's OpenAPI subset.
            out["responseJsonSchema"] = schema
        return out
    raise _bad(f"Response format type [{kind}] not supported by the [{service}] service")


# Google's own mapping for OpenAI clients (ai.google.dev/gemini-api/docs/openai): low, medium, high -> 1K, 8K, 24K
# thinking tokens, none -> 0 (thinking off)
_THINKING_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}


def thinking_budget_for(effort: str, service: str) -> int:
    try:
        return _THINKING_BUDGETS[effort]
    except KeyError:
        raise _bad(f"Invalid [reasoning_effort] [{effort}] for the [{service}] service; expected one of "
                   f"[{', '.join(_THINKING_BUDGETS)}]") from None


# the optional parameters gemini_chat_body maps (proxy.chat_params)
GEMINI_CHAT_PARAMS = frozenset({"reasoning_effort", "frequency_penalty", "presence_penalty"})


def gemini_chat_body(req: ChatRequest, service: str, *, max_tokens: int | None = None,
                     thinking_budget: int | None = None) -> dict[str, Any]:
    """A canonical chat request as a Gemini `GenerateContentRequest`."""
    if req.user:
        raise unsupported("user", service)
    contents, system = _contents(req.messages, service)
    if not contents:
        raise _bad(f"The [{service}] service needs at least one non-system message with content")
    body: dict[str, Any] = {"contents": contents}
    config: dict[str, Any] = {}  # candidateCount left out: 1 is the default
    limit = req.max_tokens if req.max_tokens is not None else max_tokens
    # verified (names): ES GoogleVertexAiUnifiedChatCompletionRequestEntity.buildGenerationConfig;
    # unverified: `seed`, from the public GenerationConfig reference (ES never sends it)
    optional = {"maxOutputTokens": limit, "temperature": req.temperature, "topP": req.top_p,
                "stopSequences": req.stop or None, "seed": req.seed}
    config.update({k: v for k, v in optional.items() if v is not None})
    if req.response_format:
        config.update(_response_format(req.response_format, service))
    # unverified: frequencyPenalty, presencePenalty, topK from the public GenerationConfig reference
    # (ES never sends them)
    penalties = {"frequencyPenalty": req.frequency_penalty, "presencePenalty": req.presence_penalty,
                 "topK": req.extra.get("top_k")}
    config.update({k: v for k, v in penalties.items() if v is not None})
    if req.reasoning_effort is not None:
        thinking_budget = thinking_budget_for(req.reasoning_effort, service)
    if thinking_budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": thinking_budget}
    if req.reasoning is not None:
        config["thinkingConfig"] = gemini_thinking(req.reasoning, service)
    if config:
        body["generationConfig"] = config
    if req.tools:
        body["tools"] = _tools(req.tools, service)
    if req.tool_choice is not None:
        if not req.tools:
            raise _bad(f"[tool_choice] needs [tools] for the [{service}] service")
        tool_config = _tool_config(req.tool_choice, service)
        if tool_config:
            body["toolConfig"] = tool_config
    if system:
        body["systemInstruction"] = {"parts": system}
    return body


def gemini_thinking(reasoning: dict[str, Any], service: str) -> dict[str, Any]:
    """ES `Reasoning` as Gemini's `thinkingConfig` (ai.google.dev/gemini-api/docs/thinking): `max_tokens` is the
    `thinkingBudget`, `enabled: false` a budget of 0, `enabled: true` alone the dynamic budget (-1); thought
    summaries come back (`includeThoughts`) unless `exclude`. Gemini takes no effort or summary level here."""
    for name in ("effort", "summary"):
        if reasoning.get(name) is not None:
            raise unsupported(f"reasoning.{name}", service)
    if reasoning.get("max_tokens") is not None:
        budget = int(reasoning["max_tokens"])
    else:
        budget = -1 if reasoning.get("enabled") else 0
    config: dict[str, Any] = {"thinkingBudget": budget}
    if budget != 0 and not reasoning.get("exclude"):
        config["includeThoughts"] = True
    return config


# ------------------------------------------------------------------------------ responses


def _finish(reason: str | None, has_calls: bool) -> str | None:
    if reason is None:
        return None
    mapped = _FINISH.get(reason, reason.lower())
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def _call_id(fc: _FunctionCall) -> str:
    # Gemini 3 issues ids; older models do not, and then the name is the only stable identifier (as ES does)
    return fc.id or fc.name


def parse_gemini_chat(body: bytes, model: str) -> ChatResult:
    with decoding():
        resp = _generate_decoder.decode(body)
    if resp.error is not None:
        raise _stream_error(resp.error)
    usage = resp.usageMetadata.usage() if resp.usageMetadata else None
    rid = resp.responseId or f"chatcmpl-{uuid.uuid4().hex}"
    mdl = resp.modelVersion or model
    if not resp.candidates:
        if resp.promptFeedback and resp.promptFeedback.blockReason:
            return ChatResult(id=rid, model=mdl, content=None, finish_reason="content_filter", usage=usage)
        raise malformed("response (no candidates)")
    cand = next((c for c in resp.candidates if c.index == 0), resp.candidates[0])
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for part in cand.content.parts if cand.content else ():
        if part.functionCall is not None:
            fc = part.functionCall
            calls.append(ToolCall(id=_call_id(fc),
                                  function=FunctionCall(name=fc.name, arguments=bytes(fc.args).decode())))
        elif part.text is not None:
            (thoughts if part.thought else texts).append(part.text)
    return ChatResult(id=rid, model=mdl, content="".join(texts) if texts else None, tool_calls=calls or None,
                      reasoning="".join(thoughts) if thoughts else None,
                      finish_reason=_finish(cand.finishReason or "STOP", bool(calls)), usage=usage)


class GeminiStreamParser:
    """`?alt=sse` GenerateContentResponse chunks to canonical deltas.

    There is no terminator event: the stream is complete when a chunk carried `finishReason`
    (verified: recorded AI Studio streams in junjihashimoto/louter test-data/gemini/streaming_long,
    whose last event has finishReason STOP and the body then closes). `usageMetadata` repeats,
    cumulatively, in every chunk: only the last one is reported, once, at the end.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.finished = False
        self.usage: Usage | None = None
        self.tool_index = 0
        self.has_calls = False
        self.sent_role = False
        self.id: str | None = None

    def feed(self, event: SSEEvent) -> list[ChatDelta]:
        data = event.data.strip()
        if not data:
            return []
        if event.event == "error":
            raise _stream_error(_any.decode(data) if data.startswith("{") else data)
        try:
            chunk = _generate_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise malformed("stream event") from None
        if chunk.error is not None:
            raise _stream_error(chunk.error)
        if chunk.usageMetadata is not None:
            self.usage = chunk.usageMetadata.usage()
        self.id = chunk.responseId or self.id
        model = chunk.modelVersion or self.model
        out: list[ChatDelta] = []
        for cand in chunk.candidates:
            if cand.index != 0:
                continue
            texts: list[str] = []
            thoughts: list[str] = []
            calls: list[ToolCallDelta] = []
            for part in cand.content.parts if cand.content else ():
                if part.functionCall is not None:
                    fc = part.functionCall
                    calls.append(ToolCallDelta(index=self.tool_index, id=_call_id(fc), type="function",
                                               function=FunctionCall(name=fc.name,
                                                                     arguments=bytes(fc.args).decode())))
                    self.tool_index += 1
                elif part.text is not None:
                    (thoughts if part.thought else texts).append(part.text)
            self.has_calls = self.has_calls or bool(calls)
            if texts or calls or thoughts:
                role = None if self.sent_role else "assistant"
                self.sent_role = True
                out.append(ChatDelta(content="".join(texts) if texts else None, role=role, tool_calls=calls or None,
                                     reasoning="".join(thoughts) if thoughts else None, id=self.id, model=model))
            if cand.finishReason:
                self.finished = True
                out.append(ChatDelta(finish_reason=_finish(cand.finishReason, self.has_calls), id=self.id,
                                     model=model))
        if not chunk.candidates and chunk.promptFeedback and chunk.promptFeedback.blockReason:
            self.finished = True
            out.append(ChatDelta(finish_reason="content_filter", id=self.id, model=model))
        return out

    def finish(self) -> list[ChatDelta]:
        if not self.finished:
            raise StreamCut()
        if self.usage is None:
            return []
        return [ChatDelta(usage=self.usage, id=self.id, model=self.model)]


def check_embed_user(req: EmbedRequest, service: str) -> None:
    if req.user:
        raise unsupported("user", service)


# ------------------------------------------------------------------------------ Google AI Studio


class GoogleAiStudioAdapter(Adapter):
    chat_params = GEMINI_CHAT_PARAMS
    extra_params = frozenset({"top_k"})
    """The Gemini API (generativelanguage.googleapis.com) with an API key.

    ES uses base `/v1` (GoogleAiStudioUtils); we use `/v1beta`, where systemInstruction, tools,
    toolConfig and thoughtSignature are all available (the gateway sends them; ES's completion entity
    does not). The key goes in the query string as ES does (GoogleAiStudioRequest); the backend strips
    query strings from the URLs it echoes in errors.
    """

    service = "googleaistudio"
    maps_reasoning = True  # gemini_thinking
    # verified: ES GoogleAiStudioService EMBEDDING_MAX_BATCH_SIZE = 100, whose javadoc quotes Google's
    # 400 "BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch".
    embed_batch_size: ClassVar[int | None] = 100
    # ES GoogleAiStudioResponseHandler retries 500, 503 and 429 only
    retry_statuses: ClassVar[frozenset[int]] = frozenset({429, 500, 503})
    base_url: ClassVar[str] = "https://generativelanguage.googleapis.com/v1beta"

    def model(self, req: CanonicalRequest) -> str:
        model = getattr(req, "model", None) or self.setting("model_id") or ""
        return model[7:] if model.startswith("models/") else model

    def _url(self, model: str, action: str, query: str = "") -> str:
        return f"{self.base_url}/models/{quote(model, safe='')}:{action}" + (f"?{query}" if query else "")

    def _headers(self) -> dict[str, str]:
        # the key in a header, as google-genai sends it (ai.google.dev/api#api-keys), not `?key=`: a URL lands
        # in proxy and access logs
        return {"Content-Type": "application/json", "x-goog-api-key": str(self.setting("api_key") or "")}

    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        model = self.model(req)
        return UpstreamRequest(url=self._url(model, "batchEmbedContents"),
                               body=_encoder.encode(self.embed_body(req, model)), headers=self._headers())

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        model = self.model(req)
        body = gemini_chat_body(req, self.service)
        url = self._url(model, "streamGenerateContent", "alt=sse") if req.stream else self._url(model, "generateContent")
        return UpstreamRequest(url=url, body=_encoder.encode(body), headers=self._headers())

    def embed_body(self, req: EmbedRequest, model: str) -> dict[str, Any]:
        check_embed_user(req, self.service)
        task_type = map_input_type(req.input_type, GOOGLE_INPUT_TYPES, self.service)
        dims = req.dimensions if req.dimensions is not None else self.endpoint.service_settings.get("dimensions")
        requests = []
        for text in req.inputs:
            item: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}], "role": "user"}}
            if task_type:
                item["taskType"] = task_type
            if dims is not None:
                item["outputDimensionality"] = dims
            requests.append(item)
        return {"requests": requests}

    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        return parse_gemini_chat(body, self.model(req))

    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            resp = _batch_embed_decoder.decode(body)
        if len(resp.embeddings) != len(req.inputs):
            raise malformed("response (wrong number of embeddings)")
        return EmbedResult(vectors=[e.values for e in resp.embeddings])

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return GeminiStreamParser(self.model(req))

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        return google_error(body)


__all__ = ["GOOGLE_INPUT_TYPES", "GeminiStreamParser", "GoogleAiStudioAdapter", "gemini_chat_body", "google_error",
           "malformed", "parse_gemini_chat"]
