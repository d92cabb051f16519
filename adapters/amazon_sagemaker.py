"""Amazon SageMaker (`amazon_sagemaker`): InvokeEndpoint and
InvokeEndpointWithResponseStream, signed with SigV4 (service `sagemaker`), with two payload shapes
chosen by the `api` service setting, as ES `services/sagemaker/schema` defines them (verified):

* `openai`: text_embedding, completion, chat_completion. OpenAI embeddings and chat bodies
  (`OpenAiTextEmbeddingPayload`, `OpenAiCompletionPayload`); streamed `PayloadPart` bytes are
  OpenAI SSE text, fed through one SSE decoder across parts (a chunk may span parts) and the
  OpenAI chunk parser of `adapters.openai_compat`.
* `elastic`: text_embedding, sparse_embedding, rerank, completion, chat_completion. Requests are
  `{"input", "input_type"?, "query"?, "task_settings"?}` (rerank adds `return_documents`, `top_n`;
  chat is the ES chat body); responses use Elasticsearch's own result shapes (`text_embedding`,
  `text_embedding_bytes`, `text_embedding_bits`, `sparse_embedding`, `rerank`, `completion`).
  Streamed parts each hold one whole JSON document: `{"completion": [{"delta"}]}` for completion,
  an OpenAI chunk for chat (`ElasticCompletionPayload`).

The InvokeEndpoint options travel as `X-Amzn-SageMaker-*` headers (verified: the aws-sdk-js-v3
`se_InvokeEndpointCommand` / `se_InvokeEndpointWithResponseStreamCommand` serialisers). The
streaming operation has no TargetModel or EnableExplanations and takes Accept as
`X-Amzn-SageMaker-Accept`.

Source: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Mapping
from urllib.parse import quote

import msgspec

from proxy.errors import StatusError
from proxy.sse import SSEDecoder
from proxy.types import (CanonicalRequest, ChatDelta, ChatRequest, ChatResult, EmbedRequest,
                         EmbedResult, InputType, RankedDoc, RerankRequest, RerankResult, SparseEmbedResult,
                         TaskType)

from .aws import AwsAdapter, EventMessage, stream_exception
from .base import SSEEvent, StreamParser, UpstreamRequest, decoding, malformed, reject_input_type, unsupported
from .openai_compat import OpenAICompatible, OpenAIStreamParser, openai_messages, parse_embedding_list

SERVICE = "amazon_sagemaker"
T = TaskType
JSON = "application/json"

API_TASKS: Mapping[str, frozenset[TaskType]] = {
    "openai": frozenset({T.TEXT_EMBEDDING, T.COMPLETION, T.CHAT_COMPLETION}),
    "elastic": frozenset({T.TEXT_EMBEDDING, T.SPARSE_EMBEDDING, T.RERANK, T.COMPLETION, T.CHAT_COMPLETION}),
}
DEFAULT_BATCH_SIZE = 256  # ES SageMakerServiceSettings batch_size default

# Settings that become request headers: (setting, header, on the streaming operation too)
SERVICE_HEADERS = (("target_model", "X-Amzn-SageMaker-Target-Model", False),
                   ("target_container_hostname", "X-Amzn-SageMaker-Target-Container-Hostname", True),
                   ("inference_component_name", "X-Amzn-SageMaker-Inference-Component", True))
TASK_HEADERS = (("custom_attributes", "X-Amzn-SageMaker-Custom-Attributes", True),
                ("enable_explanations", "X-Amzn-SageMaker-Enable-Explanations", False),
                ("inference_id", "X-Amzn-SageMaker-Inference-Id", True),
                ("session_id", "X-Amzn-SageMaker-Session-Id", True),
                ("target_variant", "X-Amzn-SageMaker-Target-Variant", True))
# Task settings SageMaker itself consumes; with api=elastic every other request-time task setting is
# passed to the model in the body's `task_settings` (ES SageMakerTaskSettings / ElasticPayload)
_COMMON_TASK_SETTINGS = frozenset(name for name, _, _ in TASK_HEADERS)

# In-stream errors of InvokeEndpointWithResponseStream (verified: aws-sdk-js-v3 de_ResponseStream:
# PayloadPart, ModelStreamError, InternalStreamFailure); statuses as ES SageMakerSchema maps them
STREAM_EXCEPTIONS: Mapping[str, int] = {"ModelStreamError": 424, "InternalStreamFailure": 500}

# verified: ES ElasticPayload writes INGEST/SEARCH for the internal variants and the rest as is
ELASTIC_INPUT_TYPES: Mapping[InputType, str] = {t: t.value for t in InputType}

_ELEMENT_KEYS = {"float": "text_embedding", "byte": "text_embedding_bytes", "bit": "text_embedding_bits"}

_encoder = msgspec.json.Encoder()



# ------------------------------------------------------------------------------ elastic responses


class _DenseItem(msgspec.Struct):
    embedding: msgspec.Raw


class _Dense(msgspec.Struct):
    text_embedding: list[_DenseItem] | None = None
    text_embedding_bytes: list[_DenseItem] | None = None
    text_embedding_bits: list[_DenseItem] | None = None


class _SparseItem(msgspec.Struct):
    embedding: dict[str, float]
    is_truncated: bool = False


class _Sparse(msgspec.Struct):
    sparse_embedding: list[_SparseItem]


class _Ranked(msgspec.Struct):
    index: int
    relevance_score: float
    text: str | None = None


class _Rerank(msgspec.Struct):
    rerank: list[_Ranked]


class _CompletionItem(msgspec.Struct):
    result: str | None = None
    delta: str | None = None


class _Completion(msgspec.Struct):
    completion: list[_CompletionItem] | _CompletionItem


_dense_decoder = msgspec.json.Decoder(_Dense)
_sparse_decoder = msgspec.json.Decoder(_Sparse)
_rerank_decoder = msgspec.json.Decoder(_Rerank)
_completion_decoder = msgspec.json.Decoder(_Completion)


def _completion_items(data: bytes) -> list[_CompletionItem]:
    value = _completion_decoder.decode(data).completion
    return value if isinstance(value, list) else [value]


class _OpenAIBodies(OpenAICompatible):
    """OpenAI chat bodies and response parsing for `api=openai` (no `model`: the endpoint is the model)."""

    service = SERVICE
    sends_model = False


# ------------------------------------------------------------------------------ the adapter


class AmazonSageMakerAdapter(AwsAdapter):
    service = SERVICE
    # verified: the SageMaker Runtime service model (aws-elixir sage_maker_runtime.ex metadata:
    # endpoint_prefix "runtime.sagemaker", signing_name "sagemaker")
    signing_name = "sagemaker"
    embed_batch_size: ClassVar[int | None] = DEFAULT_BATCH_SIZE
    # ModelNotReadyException is 429 and ServiceUnavailable 503: both retried by the base set

    def __init__(self, endpoint: Any) -> None:
        super().__init__(endpoint)
        size = self.setting("batch_size")
        if isinstance(size, int) and size > 0:
            self.embed_batch_size = size  # type: ignore[misc]
        self._openai = _OpenAIBodies(endpoint)

    # -- settings -----------------------------------------------------------------------------
    def check_chat(self, req: ChatRequest) -> None:
        if self.api() == "openai":  # the model behind the endpoint speaks OpenAI's format: all is passed on
            return self._openai.check_chat(req)
        return super().check_chat(req)

    def api(self) -> str:
        api = self.setting("api")
        if api not in API_TASKS:
            raise StatusError(f"Unknown [api] [{api}] for the [{SERVICE}] service; expected one of [elastic, openai]")
        return str(api)

    def _check_task(self, api: str) -> None:
        if self.task not in API_TASKS[api]:
            listed = ", ".join(sorted(t.value for t in API_TASKS[api]))
            # verified: ES SageMakerSchemas.schemaFor (405 and this wording; ES passes api and task
            # to the format the wrong way round, which is not copied)
            raise StatusError(f"Task [{self.task.value}] is not compatible for service [sagemaker] and api [{api}]. "
                              f"Supported tasks: [{listed}]", status=405)

    def url(self, stream: bool) -> str:
        name = self.setting("endpoint_name")
        if not name:
            raise StatusError(f"The [{SERVICE}] service needs an [endpoint_name]")
        operation = "invocations-response-stream" if stream else "invocations"
        return (f"https://runtime.sagemaker.{self.region()}.amazonaws.com/endpoints/"
                f"{quote(str(name), safe='')}/{operation}")

    def headers(self, req: CanonicalRequest, stream: bool) -> dict[str, str]:
        headers = {"Content-Type": JSON, ("X-Amzn-SageMaker-Accept" if stream else "Accept"): JSON}
        for name, header, on_stream in SERVICE_HEADERS:
            value = self.setting(name)
            if value is not None:
                self._header(headers, name, header, value, stream, on_stream)
        for name, header, on_stream in TASK_HEADERS:
            value = self.task_setting(req, name)
            if value is not None:
                self._header(headers, name, header, value, stream, on_stream)
        return headers

    def _header(self, headers: dict[str, str], name: str, header: str, value: Any, stream: bool,
                on_stream: bool) -> None:
        if stream and not on_stream:
            # ES leaves these out of stream requests silently; refusing says why the routing or the
            # explanation the endpoint asks for cannot happen
            raise StatusError(f"The [{name}] setting of the [{SERVICE}] service is not available when streaming: "
                              f"InvokeEndpointWithResponseStream has no such option")
        headers[header] = str(value).lower() if isinstance(value, bool) else str(value)

    # -- requests -----------------------------------------------------------------------------
    def _checked_api(self) -> str:
        api = self.api()
        self._check_task(api)
        return api

    def _upstream(self, req: CanonicalRequest, body: dict[str, Any], stream: bool = False) -> UpstreamRequest:
        return UpstreamRequest(url=self.url(stream), body=_encoder.encode(body), headers=self.headers(req, stream))

    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        if self._checked_api() == "openai":
            # verified: ES OpenAiTextEmbeddingPayload: {"input": one | [...], "user"?, "dimensions"?}
            reject_input_type(req.input_type)
            body: dict[str, Any] = {"input": req.inputs[0] if len(req.inputs) == 1 else req.inputs}
            user = req.user or self.task_setting(req, "user")
            if user:
                body["user"] = user
            dims = req.dimensions if req.dimensions is not None else self.setting("dimensions")
            if dims is not None:
                body["dimensions"] = dims
            return self._upstream(req, body)
        return self._upstream(req, self.elastic_embed_body(req))

    def sparse_request(self, req: EmbedRequest) -> UpstreamRequest:
        self._checked_api()  # api=openai has no sparse_embedding: refused there
        return self._upstream(req, self.elastic_embed_body(req))

    def rerank_request(self, req: RerankRequest) -> UpstreamRequest:
        self._checked_api()  # api=openai has no rerank: refused there
        body: dict[str, Any] = {"input": req.documents[0] if len(req.documents) == 1 else req.documents,
                                "query": req.query}
        if req.return_documents is not None:
            body["return_documents"] = req.return_documents
        if req.top_n is not None:
            body["top_n"] = req.top_n
        return self._upstream(req, self._with_task_settings(req, body))

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        if self._checked_api() == "openai":
            # verified: ES OpenAiCompletionPayload: the unified (OpenAI) chat entity + user + max_completion_tokens
            body = self._openai.chat_body(req)
        elif self.task == T.CHAT_COMPLETION:
            body = self.elastic_chat_body(req)
        else:
            body = self._with_task_settings(req, self.elastic_completion_body(req))
        return self._upstream(req, body, req.stream)

    def _with_task_settings(self, req: CanonicalRequest, body: dict[str, Any]) -> dict[str, Any]:
        # ES takes these only at inference time (ElasticPayload.apiTaskSettings rejects stored ones)
        extra = {k: v for k, v in req.task_settings.items() if k not in _COMMON_TASK_SETTINGS}
        if extra:
            body["task_settings"] = extra
        return body

    def elastic_chat_body(self, req: ChatRequest) -> dict[str, Any]:
        # the ES chat_completion request schema (UnifiedCompletionRequest.toXContent)
        for name, value in (("seed", req.seed), ("response_format", req.response_format), ("user", req.user)):
            if value is not None:
                raise unsupported(name, SERVICE)
        body: dict[str, Any] = {"messages": openai_messages(req.messages)}
        optional = {"model": req.model, "max_completion_tokens": req.max_tokens, "stop": req.stop or None,
                    "temperature": req.temperature, "tool_choice": req.tool_choice, "tools": req.tools or None,
                    "top_p": req.top_p}
        body.update({k: v for k, v in optional.items() if v is not None})
        if req.stream:
            body["stream"] = True
        return body

    def elastic_completion_body(self, req: ChatRequest) -> dict[str, Any]:
        # completion: ElasticPayload.requestBytes with the inputs, which a completion request
        # carries as user messages; the shape has no place for generation parameters
        for name, value in (("max_completion_tokens", req.max_tokens), ("temperature", req.temperature),
                            ("top_p", req.top_p), ("stop", req.stop or None), ("seed", req.seed),
                            ("tools", req.tools or None), ("tool_choice", req.tool_choice),
                            ("response_format", req.response_format), ("user", req.user)):
            if value is not None:
                raise unsupported(name, SERVICE)
        inputs = []
        for m in req.messages:
            if m.role != "user" or not isinstance(m.content, str):
                raise StatusError(f"The [{SERVICE}] service with api [elastic] takes completion inputs as plain "
                                  f"user text, not [{m.role}] messages or content parts")
            inputs.append(m.content)
        return {"input": inputs[0] if len(inputs) == 1 else inputs}

    def elastic_embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        if req.user:
            raise unsupported("user", SERVICE)
        if req.dimensions is not None:
            raise unsupported("dimensions", SERVICE)
        body: dict[str, Any] = {"input": req.inputs[0] if len(req.inputs) == 1 else req.inputs}
        if req.input_type is not None:
            body["input_type"] = ELASTIC_INPUT_TYPES[req.input_type]
        return self._with_task_settings(req, body)

    # -- responses ----------------------------------------------------------------------------
    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            if self.api() == "openai":
                return parse_embedding_list(body)
            element = self.setting("element_type") or "float"
            items = getattr(_dense_decoder.decode(body), _ELEMENT_KEYS.get(element, "text_embedding"))
        if items is None:
            raise malformed(f"response (no [{_ELEMENT_KEYS.get(element)}] for element_type [{element}])")
        return EmbedResult(vectors=[i.embedding for i in items], element_type=element)

    def parse_sparse(self, req: EmbedRequest, body: bytes) -> SparseEmbedResult:
        with decoding():
            items = _sparse_decoder.decode(body).sparse_embedding
        return SparseEmbedResult(embeddings=[i.embedding for i in items], truncated=[i.is_truncated for i in items])

    def parse_rerank(self, req: RerankRequest, body: bytes) -> RerankResult:
        with decoding():
            ranked = _rerank_decoder.decode(body).rerank
        return RerankResult(ranked=[RankedDoc(index=r.index, relevance_score=r.relevance_score, text=r.text)
                                    for r in ranked])

    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        if self.api() == "openai" or self.task == T.CHAT_COMPLETION:
            return self._openai.parse_chat(req, body)
        with decoding():
            items = _completion_items(body)
        # several inputs give several results: they are joined in order into the one completion
        return ChatResult(id=f"chatcmpl-{uuid.uuid4().hex}", model=str(self.setting("endpoint_name") or ""),
                          content="".join(item.result or "" for item in items))

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        api = self.api()
        if api == "openai":
            return PayloadPartParser(SSEPayloads())
        if self.task == T.CHAT_COMPLETION:
            return PayloadPartParser(JSONChunkPayloads())
        return PayloadPartParser(ElasticCompletionPayloads())


# ------------------------------------------------------------------------------ streams


class SSEPayloads:
    """api=openai: PayloadPart bytes are a slice of an OpenAI SSE stream, cut anywhere."""

    def __init__(self) -> None:
        self.decoder = SSEDecoder()
        # ES accepts a stream without `data: [DONE]` (OpenAiCompletionPayload); a finish_reason counts as the end
        self.parser = OpenAIStreamParser(requires_done=False)

    def feed(self, payload: bytes) -> list[ChatDelta]:
        return [d for event in self.decoder.feed(payload) for d in self.parser.feed(event)]

    def finish(self) -> list[ChatDelta]:
        out = [d for event in self.decoder.close() for d in self.parser.feed(event)]
        return out + self.parser.finish()


class JSONChunkPayloads:
    """api=elastic chat: each PayloadPart is one whole OpenAI chat chunk (no SSE framing)."""

    def __init__(self) -> None:
        self.parser = OpenAIStreamParser(requires_done=False)

    def feed(self, payload: bytes) -> list[ChatDelta]:
        text = payload.decode("utf-8", "replace").strip()
        return self.parser.feed(SSEEvent(text)) if text else []

    def finish(self) -> list[ChatDelta]:
        return self.parser.finish()


class ElasticCompletionPayloads:
    """api=elastic completion: each PayloadPart is `{"completion": [{"delta": ...}]}`.

    This shape has no terminator: the end of the event stream is the end of the answer (a cut
    inside a message is still caught by the event-stream decoder)."""

    def feed(self, payload: bytes) -> list[ChatDelta]:
        if not payload.strip():
            return []
        try:
            items = _completion_items(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise malformed("stream event") from None
        return [ChatDelta(content=i.delta if i.delta is not None else i.result) for i in items
                if (i.delta if i.delta is not None else i.result)]

    def finish(self) -> list[ChatDelta]:
        return []


class PayloadPartParser:
    """InvokeEndpointWithResponseStream messages: `PayloadPart` bytes to the payload parser, the
    `ModelStreamError` / `InternalStreamFailure` exceptions to UpstreamErrors."""

    def __init__(self, payloads: SSEPayloads | JSONChunkPayloads | ElasticCompletionPayloads) -> None:
        self.payloads = payloads

    def feed(self, message: EventMessage) -> list[ChatDelta]:
        if message.message_type in ("exception", "error"):
            raise stream_exception(message, STREAM_EXCEPTIONS)
        if message.event_type != "PayloadPart":
            return []
        return self.payloads.feed(message.payload)

    def finish(self) -> list[ChatDelta]:
        return self.payloads.finish()


__all__ = ["AmazonSageMakerAdapter", "PayloadPartParser"]
