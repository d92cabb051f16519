"""Alibaba Cloud AI Search (`alibabacloud-ai-search`): dense and sparse embeddings, rerank and completion
through the workspace API `{http_schema}://{host}/v3/openapi/workspaces/{workspace}/{kind}/{service_id}`,
with `Authorization: Bearer <api_key>`. Responses wrap their payload in `result` next to `request_id`,
`latency` and `usage`. Sources: the page below; ES `services/alibabacloudsearch/*` (request and
response entities, all verified).

Source: https://help.aliyun.com/zh/open-search/search-platform/developer-reference/
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping
from urllib.parse import quote

import msgspec

from proxy.errors import StatusError
from proxy.types import (ChatRequest, ChatResult, EmbedRequest, EmbedResult, InputType, RankedDoc, RerankRequest,
                         RerankResult, SparseEmbedResult, TaskType, Usage)

from .base import (Adapter, Framing, ProviderError, UpstreamRequest, decoding, generic_error, host_region,
                   map_input_type, unsupported)

T = TaskType
SERVICE = "alibabacloud-ai-search"
_encoder = msgspec.json.Encoder()

# verified: ES AlibabaCloudSearchUtils (v3/openapi/workspaces/... path segments)
PATHS = {T.TEXT_EMBEDDING: "text-embedding", T.SPARSE_EMBEDDING: "text-sparse-embedding", T.RERANK: "ranker",
         T.COMPLETION: "text-generation"}
# verified: ES AlibabaCloudSearchEmbeddingsRequestEntity.convertToString (classification/clustering have no value)
INPUT_TYPES = {InputType.INGEST: "document", InputType.SEARCH: "query"}
# verified: ES AlibabaCloudSearchServiceFields EMBEDDING_MAX_BATCH_SIZE = 32 (from Alibaba's text-embedding API doc)
EMBED_BATCH = 32



# ------------------------------------------------------------------------------ response Structs


class _TokenUsage(msgspec.Struct):
    token_count: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


class _Embedding(msgspec.Struct):
    embedding: msgspec.Raw
    index: int = 0


class _EmbeddingResult(msgspec.Struct):
    embeddings: list[_Embedding]


class _EmbeddingResponse(msgspec.Struct):
    result: _EmbeddingResult
    usage: _TokenUsage | None = None


class _SparseEmbedding(msgspec.Struct):
    embedding: list[dict[str, Any]]
    index: int = 0


class _SparseResult(msgspec.Struct):
    sparse_embeddings: list[_SparseEmbedding]


class _SparseResponse(msgspec.Struct):
    result: _SparseResult
    usage: _TokenUsage | None = None


class _Score(msgspec.Struct):
    index: int
    score: float


class _RerankResult(msgspec.Struct):
    scores: list[_Score]


class _RerankResponse(msgspec.Struct):
    result: _RerankResult


class _CompletionResult(msgspec.Struct):
    text: str


class _CompletionResponse(msgspec.Struct):
    result: _CompletionResult
    request_id: str = ""
    usage: _TokenUsage | None = None


class _ErrorBody(msgspec.Struct):
    message: str | None = None
    code: str | None = None


_embeddings = msgspec.json.Decoder(_EmbeddingResponse)
_sparse = msgspec.json.Decoder(_SparseResponse)
_rerank = msgspec.json.Decoder(_RerankResponse)
_completion = msgspec.json.Decoder(_CompletionResponse)
_error = msgspec.json.Decoder(_ErrorBody)


def sparse_tokens(items: list[dict[str, Any]]) -> dict[str, float]:
    """ES AlibabaCloudSearchSparseResponseEntity: `token` when the key is present, else `token_id` as text; entries
    with a missing or empty token, a token containing '.', or a weight <= 0 are dropped."""
    out: dict[str, float] = {}
    for item in items:
        name = item["token"] if "token" in item else item.get("token_id")
        weight = float(item["weight"])
        if name is None:
            continue
        text = str(name)
        if not text or "." in text or weight <= 0.0:
            continue
        out[text] = weight
    return out


def alibaba_error(body: bytes) -> ProviderError | None:
    """`{"request_id","latency","code","message"}` (verified: ES AlibabaCloudSearchErrorResponseEntity javadoc)."""
    try:
        err = _error.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return generic_error(body)
    if err.message is None and err.code is None:
        return generic_error(body)
    return ProviderError(message=err.message, code=err.code, type=err.code)


# ------------------------------------------------------------------------------ the adapter


class AlibabaCloudSearchAdapter(Adapter):
    service = SERVICE
    framing = Framing.NONE  # ES streams nothing from this service (no supportedStreamingTasks override)
    embed_batch_size: ClassVar[int | None] = EMBED_BATCH

    @classmethod
    def data_location(cls, settings: Mapping[str, Any]) -> tuple[str, str] | None:
        # AI Search hosts name their region: `default-j01.platform-cn-shanghai.opensearch.aliyuncs.com` (ES docs)
        region = host_region(settings.get("host"), r"platform-([a-z]+-[a-z0-9-]+?)\.opensearch\.aliyuncs\.com$")
        return ("alibaba", region) if region else None

    def _url(self) -> str:
        kind = PATHS.get(self.task)
        if kind is None:
            raise StatusError(f"The [{SERVICE}] service does not support task type [{self.task.value}]")
        # verified: ES AlibabaCloudSearchEmbeddingsRequest.buildDefaultUri (http_schema defaults to https)
        schema = self.setting("http_schema") or "https"
        host = str(self.setting("host") or "").strip().rstrip("/")
        workspace = quote(str(self.setting("workspace") or ""), safe="")
        service_id = quote(str(self.setting("service_id") or ""), safe="")
        return f"{schema}://{host}/v3/openapi/workspaces/{workspace}/{kind}/{service_id}"

    # -- requests -----------------------------------------------------------------------------
    def _request(self, body: dict[str, Any]) -> UpstreamRequest:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.setting('api_key')}"}
        # `host` is the endpoint's own setting: gateway-wide origin overrides do not apply
        return UpstreamRequest(url=self._url(), body=_encoder.encode(body), headers=headers, explicit_url=True)

    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        return self._request(self.embed_body(req))

    def sparse_request(self, req: EmbedRequest) -> UpstreamRequest:
        return self._request(self.embed_body(req))

    def rerank_request(self, req: RerankRequest) -> UpstreamRequest:
        return self._request(self.rerank_body(req))

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        return self._request(self.completion_body(req))

    def _input_type(self, req: EmbedRequest) -> str | None:
        # the request's input_type wins over the stored task setting (ES *RequestEntity.toXContent)
        kind = req.input_type
        if kind is None:
            stored = self.task_setting(req, "input_type")
            kind = InputType(stored) if stored else None
        return map_input_type(kind, INPUT_TYPES, SERVICE)

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        if req.dimensions is not None:
            raise unsupported("dimensions", SERVICE)
        if req.user is not None:
            raise unsupported("user", SERVICE)
        # verified: ES AlibabaCloudSearchEmbeddingsRequestEntity / AlibabaCloudSearchSparseRequestEntity
        body: dict[str, Any] = {"input": req.inputs}
        kind = self._input_type(req)
        if kind is not None:
            body["input_type"] = kind
        if self.task == T.SPARSE_EMBEDDING:
            return_token = self.task_setting(req, "return_token")
            if return_token is not None:
                body["return_token"] = return_token
        return body

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        # verified: ES AlibabaCloudSearchRerankRequestEntity sends only query and docs; top_n and return_documents
        # are applied by the gateway after ranking (pipeline.finish_rerank), as ES does
        return {"query": req.query, "docs": req.documents}

    def completion_body(self, req: ChatRequest) -> dict[str, Any]:
        if req.stream:
            # ES AlibabaCloudSearchService has no streaming task (InferenceService default: none)
            raise StatusError(f"Streaming is not allowed for service [{SERVICE}].", status=405)
        for name in ("max_tokens", "temperature", "top_p", "stop", "seed", "tools", "tool_choice",
                     "response_format", "user", "model"):
            if getattr(req, name) is not None:
                raise unsupported(name, SERVICE)
        texts = []
        for m in req.messages:
            if not isinstance(m.content, str) or m.tool_calls or m.tool_call_id:
                raise StatusError(f"The [{SERVICE}] service takes plain text messages only", status=400)
            texts.append(m)
        if all(m.role == "user" for m in texts):
            # verified: ES AlibabaCloudSearchCompletionRequestEntity: the inputs alternate user / assistant
            messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": m.content}
                        for i, m in enumerate(texts)]
        else:
            messages = [{"role": m.role, "content": m.content} for m in texts]
        body: dict[str, Any] = {"messages": messages}
        # ES AlibabaCloudSearchCompletionTaskSettings `parameters` (a map passed as is)
        parameters = self.task_setting(req, "parameters")
        if parameters is not None:
            body["parameters"] = parameters
        return body

    # -- responses ----------------------------------------------------------------------------
    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            resp = _embeddings.decode(body)
        items = resp.result.embeddings
        if any(item.index != i for i, item in enumerate(items)):
            items = sorted(items, key=lambda item: item.index)
        return EmbedResult(vectors=[item.embedding for item in items], usage=_token_usage(resp.usage))

    def parse_sparse(self, req: EmbedRequest, body: bytes) -> SparseEmbedResult:
        with decoding(also=(KeyError, TypeError, ValueError)):  # sparse_tokens reads the token list
            resp = _sparse.decode(body)
            embeddings = [sparse_tokens(item.embedding)
                          for item in sorted(resp.result.sparse_embeddings, key=lambda item: item.index)]
        return SparseEmbedResult(embeddings=embeddings, truncated=[False] * len(embeddings),
                                 usage=_token_usage(resp.usage))

    def parse_rerank(self, req: RerankRequest, body: bytes) -> RerankResult:
        with decoding():
            resp = _rerank.decode(body)
        return RerankResult(ranked=[RankedDoc(index=s.index, relevance_score=s.score) for s in resp.result.scores])

    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        with decoding():
            resp = _completion.decode(body)
        usage = None
        if resp.usage is not None and resp.usage.total_tokens is not None:
            usage = Usage(prompt_tokens=resp.usage.input_tokens or 0, completion_tokens=resp.usage.output_tokens or 0,
                          total_tokens=resp.usage.total_tokens)
        return ChatResult(id=resp.request_id, model=str(self.setting("service_id") or ""), content=resp.result.text,
                          usage=usage)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        return alibaba_error(body)


def _token_usage(usage: _TokenUsage | None) -> Usage | None:
    if usage is None or usage.token_count is None:
        return None
    return Usage(prompt_tokens=usage.token_count, total_tokens=usage.token_count)
