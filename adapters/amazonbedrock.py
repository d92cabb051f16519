"""Amazon Bedrock (`amazonbedrock`): Converse / ConverseStream for completion and
chat_completion, InvokeModel for Titan and Cohere embeddings, signed with SigV4 (service `bedrock`).

Canonical (OpenAI-shaped) chat becomes a Converse request: system messages go to `system`, tools to
`toolConfig.tools[].toolSpec`, assistant tool calls to `toolUse` blocks, tool results to `toolResult`
blocks in a user turn; consecutive turns of one role are merged (Converse requires alternating
roles). ConverseStream is an AWS event stream (`messageStart`, `contentBlockStart`,
`contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata`); the `metadata` event, which
carries the usage, is the terminator.

Provider families (`provider` setting) follow ES `AmazonBedrockProviderCapabilities` (verified):
embeddings only for `amazontitan` (one text per InvokeModel, batch size 1) and `cohere` (96);
chat for all six; `top_k` only for `anthropic`, `cohere` and `mistral`.

Source: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any, ClassVar, Mapping
from urllib.parse import quote

import msgspec

from proxy.errors import RequestValidationError, StatusError
from proxy.types import (CanonicalRequest, ChatDelta, ChatMessage, ChatRequest, ChatResult, ContentPart, EmbedRequest,
                         EmbedResult, FunctionCall, ImagePart, InputType, NamedToolChoice, TaskType, Tool, ToolCall,
                         ToolCallDelta, ToolChoice, Usage)

from .anthropic import thinking_budget
from .aws import AwsAdapter, EventMessage, stream_exception
from .base import (StreamCut, StreamParser, UpstreamRequest, decoding, malformed, map_input_type, reject_input_type,
                   unsupported)
from .chat_parts import content_blocks, data_url, schema, tool_arguments

SERVICE = "amazonbedrock"
T = TaskType

PROVIDERS = ("amazontitan", "anthropic", "ai21labs", "cohere", "meta", "mistral")
EMBEDDING_PROVIDERS: Mapping[str, int] = {"amazontitan": 1, "cohere": 96}  # provider -> inputs per call
# The model-specific name of top_k inside `additionalModelRequestFields`. ES sends `top_k` for all
# three (AmazonBedrockConverseUtils.additionalTopK); Cohere Command models on Bedrock call it `k`
# (verified: docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-cohere-command-r-plus.html).
TOP_K_FIELD: Mapping[str, str] = {"anthropic": "top_k", "mistral": "top_k", "cohere": "k"}

# verified: ES AmazonBedrockCohereEmbeddingsRequestEntity (search_document is also the default)
COHERE_INPUT_TYPES: Mapping[InputType, str] = {
    InputType.INGEST: "search_document", InputType.SEARCH: "search_query",
    InputType.CLASSIFICATION: "classification", InputType.CLUSTERING: "clustering",
}

# verified: docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html
# (stopReason: end_turn | tool_use | max_tokens | stop_sequence | guardrail_intervened |
# content_filtered | model_context_window_exceeded)
FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
}

# ConverseStream exception events (`:exception-type`; verified: API_runtime_ConverseStreamOutput:
# internalServerException, modelStreamErrorException, validationException, throttlingException,
# serviceUnavailableException) and the HTTP status each stands for (that of the same-named HTTP
# error; modelStreamErrorException has none: 424 "failed dependency" is our choice)
STREAM_EXCEPTIONS: Mapping[str, int] = {
    "internalServerException": 500, "modelStreamErrorException": 424, "validationException": 400,
    "throttlingException": 429, "serviceUnavailableException": 503,
}

_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}

_encoder = msgspec.json.Encoder()


def finish_reason(stop_reason: str | None) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, stop_reason)



# ------------------------------------------------------------------------------ response Structs


class _ConverseUsage(msgspec.Struct):
    inputTokens: int = 0
    outputTokens: int = 0
    totalTokens: int | None = None
    cacheReadInputTokens: int | None = None
    cacheWriteInputTokens: int | None = None

    def usage(self) -> Usage:
        # Converse TokenUsage: inputTokens excludes the cache reads and writes; OpenAI's prompt_tokens includes them
        cached = (self.cacheReadInputTokens or 0) + (self.cacheWriteInputTokens or 0)
        prompt = self.inputTokens + cached
        total = self.totalTokens if self.totalTokens is not None else prompt + self.outputTokens
        return Usage(prompt_tokens=prompt, completion_tokens=self.outputTokens, total_tokens=total,
                     cached_tokens=self.cacheReadInputTokens, cache_write_tokens=self.cacheWriteInputTokens)


class _ToolUse(msgspec.Struct):
    toolUseId: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw(b"")  # kept as sent: the arguments stay byte-for-byte intact


class _Block(msgspec.Struct):
    text: str | None = None
    toolUse: _ToolUse | None = None


class _OutMessage(msgspec.Struct):
    role: str = "assistant"
    content: list[_Block] = []


class _Output(msgspec.Struct):
    message: _OutMessage | None = None


class _ConverseResponse(msgspec.Struct):
    output: _Output
    stopReason: str | None = None
    usage: _ConverseUsage | None = None


class _TitanResponse(msgspec.Struct):
    embedding: msgspec.Raw
    inputTextTokenCount: int | None = None


class _CohereResponse(msgspec.Struct):
    embeddings: msgspec.Raw  # [[...]] or, with embedding_types, {"float": [[...]]}


class _CohereByType(msgspec.Struct):
    float: list[msgspec.Raw]


class _StartToolUse(msgspec.Struct):
    toolUseId: str | None = None
    name: str | None = None


class _Start(msgspec.Struct):
    toolUse: _StartToolUse | None = None


class _DeltaToolUse(msgspec.Struct):
    input: str = ""


class _Delta(msgspec.Struct):
    text: str | None = None
    toolUse: _DeltaToolUse | None = None


class _StreamEvent(msgspec.Struct):
    """The JSON payload of any ConverseStream event (each event uses a subset of the fields)."""

    role: str | None = None
    contentBlockIndex: int | None = None
    start: _Start | None = None
    delta: _Delta | None = None
    stopReason: str | None = None
    usage: _ConverseUsage | None = None


_converse_decoder = msgspec.json.Decoder(_ConverseResponse)
_titan_decoder = msgspec.json.Decoder(_TitanResponse)
_cohere_decoder = msgspec.json.Decoder(_CohereResponse)
_vectors_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_by_type_decoder = msgspec.json.Decoder(_CohereByType)
_event_decoder = msgspec.json.Decoder(_StreamEvent)


# ------------------------------------------------------------------------------ request translation


def _image_block(part: ImagePart) -> dict[str, Any]:
    url = part.url
    if not url.startswith("data:"):
        # Converse takes image bytes (or S3 locations), it never fetches a URL
        raise RequestValidationError(f"The [{SERVICE}] service accepts images only as base64 data URLs")
    media_type, data, is_base64 = data_url(url)
    media_type = media_type.lower()
    fmt = _IMAGE_FORMATS.get(media_type)
    if fmt is None or not is_base64:
        raise RequestValidationError(f"The [{SERVICE}] service accepts base64 png, jpeg, gif or webp images, "
                                     f"not [{media_type or url.partition(',')[0]}]")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestValidationError("An [image_url] data URL is not valid base64") from None
    # JSON carries Converse's blob `bytes` as base64 text
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _blocks(content: str | list[ContentPart] | None, where: str) -> list[dict[str, Any]]:
    return content_blocks(content, where, SERVICE, lambda text: {"text": text}, _image_block, keep_empty_text=True)


def translate_messages(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, Converse messages); turns of one role in a row become one message."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for m in messages:
        if m.name is not None and m.role != "tool":  # a tool result's name is its call's, known from tool_call_id
            raise unsupported("messages.name", SERVICE)
        role = m.role
        if role in ("system", "developer"):
            system.extend(_blocks(m.content, "system"))
        elif role == "user":
            add("user", _blocks(m.content, "user"))
        elif role == "assistant":
            blocks = _blocks(m.content, "assistant") if m.content != "" or not m.tool_calls else []
            for call in m.tool_calls or []:
                if not call.id or not call.function.name:
                    raise RequestValidationError("An assistant [tool_calls] entry needs an [id] and a function [name]")
                blocks.append({"toolUse": {"toolUseId": call.id, "name": call.function.name,
                                           "input": tool_arguments(call)}})
            add("assistant", blocks)
        elif role == "tool":
            if not m.tool_call_id:
                raise RequestValidationError("A [tool] message needs a [tool_call_id]")
            content = _blocks(m.content, "tool") if m.content is not None else []
            add("user", [{"toolResult": {"toolUseId": m.tool_call_id, "content": content or [{"text": ""}]}}])
        else:
            raise RequestValidationError(f"The [{SERVICE}] service does not support messages with role [{role}]")
    return system, out


def translate_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    out = []
    for fn in (tool.function for tool in tools):
        if not fn.name:
            raise RequestValidationError("A tool function needs a [name]")
        spec: dict[str, Any] = {"name": fn.name}
        if fn.description is not None:
            spec["description"] = fn.description
        spec["inputSchema"] = {"json": schema(fn)}  # required by Converse
        if fn.strict:  # strict tool use (botocore bedrock-runtime ToolSpecification.strict); false asks for nothing
            spec["strict"] = True
        out.append({"toolSpec": spec})
    return out


def translate_response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI `response_format` as Converse `outputConfig` (structured outputs: botocore bedrock-runtime
    OutputConfig.textFormat, OutputFormat `json_schema` with a JsonSchemaDefinition whose `schema` is a JSON
    string; AWS user guide "Get validated JSON results from models"); the answer's text is the JSON."""
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema")
        if not isinstance(schema, dict):
            raise RequestValidationError("[response_format] of type [json_schema] needs [json_schema.schema]",
                                         param="response_format")
        definition = {"schema": _encoder.encode(schema).decode()}
        definition.update({k: spec[k] for k in ("name", "description") if spec.get(k)})
        return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}
    raise RequestValidationError(f"The [{SERVICE}] service supports [response_format] types [text] and [json_schema] "
                                 f"(Converse has no schema-less JSON mode), not [{kind}]", param="response_format")


def translate_tool_choice(choice: ToolChoice) -> dict[str, Any]:
    """Converse `toolChoice` (`none` has no Converse form: the caller leaves the tools out)."""
    if isinstance(choice, NamedToolChoice):
        return {"tool": {"name": choice.function.name}}
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    raise RequestValidationError(f"Unsupported [tool_choice] value [{choice}] for the [{SERVICE}] service")


def _uses_tools(messages: list[dict[str, Any]]) -> bool:
    return any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])


# ------------------------------------------------------------------------------ the adapter


class AmazonBedrockAdapter(AwsAdapter):
    service = SERVICE
    # verified: the AWS service model of Bedrock Runtime (aws-elixir generated bedrock_runtime metadata:
    # endpoint_prefix "bedrock-runtime", signing_name "bedrock", protocol rest-json)
    signing_name = "bedrock"
    # the largest Bedrock batch; the instance narrows it to its provider's (Titan: 1)
    embed_batch_size: ClassVar[int | None] = 96
    # ThrottlingException and ModelNotReadyException are 429, ServiceUnavailable 503: the base set

    def __init__(self, endpoint: Any) -> None:
        super().__init__(endpoint)
        provider = self.provider_or_none()
        if provider in EMBEDDING_PROVIDERS:
            # an instance attribute: RemoteBackend.split_embed reads it, and Titan takes one text per
            # call, so N inputs become N concurrent InvokeModel calls within the rate limit
            self.embed_batch_size = EMBEDDING_PROVIDERS[provider]  # type: ignore[misc]

    # -- settings -----------------------------------------------------------------------------
    def provider_or_none(self) -> str | None:
        value = self.setting("provider")
        return str(value).lower() if value is not None else None

    def provider(self) -> str:
        provider = self.provider_or_none()
        if provider not in PROVIDERS:
            raise StatusError(f"Unknown [provider] [{provider}] for the [{SERVICE}] service; expected one of "
                              f"[{', '.join(PROVIDERS)}]")
        return provider

    @staticmethod
    def _check_embeddings(provider: str) -> None:
        if provider not in EMBEDDING_PROVIDERS:
            # verified: ES AmazonBedrockService.checkProviderForTask wording and status
            raise StatusError(f"The [text_embedding] task type for provider [{provider}] is not available")

    def model(self, req: CanonicalRequest) -> str:
        model = getattr(req, "model", None) or self.setting("model")
        if not model:
            raise StatusError(f"The [{SERVICE}] service needs a [model]")
        return str(model)

    def url(self, model: str, operation: str) -> str:
        # model ids, inference-profile ids and ARNs contain ':' and '/': one path segment, encoded
        return (f"https://bedrock-runtime.{self.region()}.amazonaws.com/model/"
                f"{quote(model, safe='')}/{operation}")

    # -- requests -----------------------------------------------------------------------------
    def _request(self, req: CanonicalRequest, operation: str, body: dict[str, Any]) -> UpstreamRequest:
        accept = "application/vnd.amazon.eventstream" if operation == "converse-stream" else "application/json"
        return UpstreamRequest(url=self.url(self.model(req), operation), body=_encoder.encode(body),
                               headers={"Content-Type": "application/json", "Accept": accept})

    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        provider = self.provider()
        self._check_embeddings(provider)
        return self._request(req, "invoke", self.titan_body(req) if provider == "amazontitan" else self.cohere_body(req))

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        # every provider family does completion and chat (ES chatCompletionProviders)
        body = self.converse_body(req, self.provider())
        return self._request(req, "converse-stream" if req.stream else "converse", body)

    def titan_body(self, req: EmbedRequest) -> dict[str, Any]:
        # verified: ES AmazonBedrockTitanEmbeddingsRequestEntity: {"inputText": one text}
        if len(req.inputs) != 1:
            raise StatusError("Amazon Titan embeddings take one text per call: split the inputs first "
                              "(Adapter.split_embed)", status=500)
        reject_input_type(req.input_type)
        if req.user:
            raise unsupported("user", SERVICE)
        body: dict[str, Any] = {"inputText": req.inputs[0]}
        if req.dimensions is not None:
            # Titan Text Embeddings V2 takes `dimensions` (1024, 512 or 256; verified:
            # docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html). ES
            # never sends it, so only an explicit request value is forwarded; G1 models refuse it.
            body["dimensions"] = req.dimensions
        return body

    def cohere_body(self, req: EmbedRequest) -> dict[str, Any]:
        if req.user:
            raise unsupported("user", SERVICE)
        if req.dimensions is not None:
            raise unsupported("dimensions", SERVICE)
        input_type = map_input_type(req.input_type, COHERE_INPUT_TYPES, SERVICE)
        # input_type is required by Cohere embed v3 on Bedrock: ES defaults it to search_document
        return {"texts": req.inputs, "input_type": input_type or "search_document"}

    def check_chat(self, req: ChatRequest) -> None:
        if req.parallel_tool_calls is False and req.tools:
            # Converse's toolConfig has no such switch, and AWS documents no way to pass Anthropic's
            # `disable_parallel_tool_use` through it (additionalModelRequestFields)
            raise RequestValidationError(f"The [{SERVICE}] service cannot honour [parallel_tool_calls] false: the "
                                         f"Converse API has no setting that limits a turn to one tool call",
                                         param="parallel_tool_calls")
        super().check_chat(req)

    def mapped_chat_params(self) -> tuple[frozenset[str], frozenset[str] | None]:
        # Claude on Bedrock takes Anthropic's own `thinking` and `tool_choice` fields through
        # additionalModelRequestFields (AWS Bedrock user guide, "Extended thinking" with Converse)
        claude = self.provider_or_none() == "anthropic"
        return (frozenset({"reasoning_effort"} if claude else ()),
                frozenset({"top_k"} if self.provider_or_none() in TOP_K_FIELD else ()))

    def converse_body(self, req: ChatRequest, provider: str) -> dict[str, Any]:
        if req.seed is not None:
            raise unsupported("seed", SERVICE)
        system, messages = translate_messages(req.messages)
        body: dict[str, Any] = {"messages": messages}
        if req.response_format is not None and (output := translate_response_format(req.response_format)):
            body["outputConfig"] = output
        if system:
            body["system"] = system
        config: dict[str, Any] = {}
        max_tokens = req.max_tokens if req.max_tokens is not None else self.task_setting(req, "max_new_tokens")
        if max_tokens is not None:
            config["maxTokens"] = int(max_tokens)
        temperature = req.temperature if req.temperature is not None else self.task_setting(req, "temperature")
        if temperature is not None:
            config["temperature"] = temperature
        top_p = req.top_p if req.top_p is not None else self.task_setting(req, "top_p")
        if top_p is not None:
            config["topP"] = top_p
        if req.stop:
            config["stopSequences"] = req.stop
        if config:
            body["inferenceConfig"] = config
        top_k = req.extra.get("top_k", self.task_setting(req, "top_k"))
        if top_k is not None:
            field = TOP_K_FIELD.get(provider)
            if field is None:
                # verified: ES AmazonBedrockService.checkChatCompletionProviderForTopKParameter
                raise StatusError(f"The [top_k] task parameter is not available for provider [{provider}]")
            value = float(top_k)
            body["additionalModelRequestFields"] = {field: int(value) if value.is_integer() else value}
        if req.reasoning_effort is not None:
            budget = thinking_budget(req.reasoning_effort, SERVICE)
            if budget:
                body.setdefault("additionalModelRequestFields", {})["thinking"] = {"type": "enabled",
                                                                                   "budget_tokens": budget}
        if req.tools:
            if req.tool_choice == "none":
                # Converse has no `none` choice: a model that is shown no tools calls none. A
                # conversation that already holds toolUse/toolResult blocks must declare its tools.
                if _uses_tools(messages):
                    raise RequestValidationError(f"The [{SERVICE}] service cannot honour [tool_choice] [none] in "
                                                 f"a conversation that already uses tools")
            else:
                tool_config: dict[str, Any] = {"tools": translate_tools(req.tools)}
                if req.tool_choice is not None:
                    tool_config["toolChoice"] = translate_tool_choice(req.tool_choice)
                body["toolConfig"] = tool_config
        elif req.tool_choice not in (None, "none"):
            raise RequestValidationError("[tool_choice] needs [tools]")
        if req.user:
            # Converse has no end-user field; requestMetadata tags the invocation log with it
            # (verified: API_runtime_Converse, requestMetadata: map of strings for log filtering)
            body["requestMetadata"] = {"user": req.user}
        return body

    # -- responses ----------------------------------------------------------------------------
    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            if self.provider() == "amazontitan":
                return self.parse_titan(body)
            return self.parse_cohere(body)

    @staticmethod
    def parse_titan(body: bytes) -> EmbedResult:
        resp = _titan_decoder.decode(body)
        usage = None
        if resp.inputTextTokenCount is not None:
            usage = Usage(prompt_tokens=resp.inputTextTokenCount, total_tokens=resp.inputTextTokenCount)
        return EmbedResult(vectors=[resp.embedding], usage=usage)

    @staticmethod
    def parse_cohere(body: bytes) -> EmbedResult:
        raw = bytes(_cohere_decoder.decode(body).embeddings)
        if raw.lstrip()[:1] == b"{":
            return EmbedResult(vectors=_by_type_decoder.decode(raw).float)
        return EmbedResult(vectors=_vectors_decoder.decode(raw))

    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        with decoding():
            resp = _converse_decoder.decode(body)
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in (resp.output.message.content if resp.output.message else []):
            if block.text is not None:
                texts.append(block.text)
            elif block.toolUse is not None:
                args = bytes(block.toolUse.input).decode() or "{}"
                calls.append(ToolCall(id=block.toolUse.toolUseId,
                                      function=FunctionCall(name=block.toolUse.name, arguments=args)))
            # reasoningContent (thinking, asked for by reasoning_effort) and citations blocks are not part of the answer
        return ChatResult(id=f"chatcmpl-{uuid.uuid4().hex}", model=self.model(req),
                          content="".join(texts) if texts or not calls else None, tool_calls=calls or None,
                          finish_reason=finish_reason(resp.stopReason),
                          usage=resp.usage.usage() if resp.usage else None)

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return ConverseStreamParser(model=self.model(req))


class ConverseStreamParser:
    """ConverseStream event-stream messages to canonical deltas; `metadata` is the terminator.

    Tool calls are numbered 0, 1, ... in the order their `toolUse` blocks start (the OpenAI `index`),
    not by Bedrock's `contentBlockIndex`, which also counts text blocks.
    """

    def __init__(self, model: str | None = None) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.model = model
        self.done = False
        self.tool_index: dict[int, int] = {}

    def _delta(self, **kw: Any) -> ChatDelta:
        return ChatDelta(id=self.id, model=self.model, **kw)

    def feed(self, message: EventMessage) -> list[ChatDelta]:
        if message.message_type in ("exception", "error"):
            raise stream_exception(message, STREAM_EXCEPTIONS)
        if self.done:
            return []
        kind = message.event_type
        try:
            ev = _event_decoder.decode(message.payload) if message.payload else _StreamEvent()
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise malformed("stream event") from None
        if kind == "messageStart":
            return [self._delta(role=ev.role or "assistant")]
        if kind == "contentBlockStart":
            tool = ev.start.toolUse if ev.start else None
            if tool is None:
                return []
            n = len(self.tool_index)
            self.tool_index[ev.contentBlockIndex if ev.contentBlockIndex is not None else -1 - n] = n
            return [self._delta(tool_calls=[ToolCallDelta(index=n, id=tool.toolUseId, type="function",
                                                          function=FunctionCall(name=tool.name, arguments=""))])]
        if kind == "contentBlockDelta":
            delta = ev.delta
            if delta is None:
                return []
            if delta.text:
                return [self._delta(content=delta.text)]
            if delta.toolUse is not None and delta.toolUse.input:
                n = self.tool_index.get(ev.contentBlockIndex if ev.contentBlockIndex is not None else -1)
                if n is None:
                    raise malformed("stream event (tool input for an unknown content block)")
                return [self._delta(tool_calls=[ToolCallDelta(index=n, function=FunctionCall(
                    arguments=delta.toolUse.input))])]
            return []  # reasoningContent: only sent for features this adapter never asks for
        if kind == "messageStop":
            reason = finish_reason(ev.stopReason)
            return [self._delta(finish_reason=reason)] if reason else []
        if kind == "metadata":
            self.done = True
            usage = ev.usage.usage() if ev.usage else Usage()
            return [self._delta(usage=usage)]
        return []  # contentBlockStop and future event types carry nothing for us

    def finish(self) -> list[ChatDelta]:
        if self.done:
            return []
        raise StreamCut()
