"""Jina AI: its own embeddings body (`task`, `embedding_type`, `late_chunking`) and Cohere-style rerank
(providers.md §14).

Sources: ES `services/jinaai/request/JinaAIEmbeddingsRequestEntity.java`, `JinaAIRerankRequestEntity.java`,
`JinaAIUtils.java`, `JinaAIServiceFields.java`, `embeddings/JinaAIEmbeddingType.java`,
`embeddings/JinaAIEmbeddingServiceSettings.java`, `response/JinaAIEmbeddingsResponseEntity.java`,
`JinaAIRerankResponseEntity.java`, `JinaAIErrorResponseEntity.java`.

Both `text_embedding` and `embedding` are served. The `embedding` task (multimodal models) sends each
input as `{"text": ...}`; this gateway's request surfaces carry text only, so image inputs never reach
the adapter.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import msgspec

from proxy.errors import StatusError
from proxy.types import (CanonicalRequest, CanonicalResult, EmbedRequest, InputType, RerankRequest,
                         TaskType)

from .base import (Adapter, Framing, ProviderError, UpstreamRequest, generic_error, malformed, map_input_type,
                   unsupported)
from .openai_compat import parse_embedding_list
from .rerank_compat import parse_rerank, rerank_body

_encoder = msgspec.json.Encoder()

EMBEDDINGS_URL = "https://api.jina.ai/v1/embeddings"
RERANK_URL = "https://api.jina.ai/v1/rerank"

# verified: ES JinaAIEmbeddingsRequestEntity.convertInputType
INPUT_TYPES: Mapping[InputType, str] = {
    InputType.INGEST: "retrieval.passage",
    InputType.SEARCH: "retrieval.query",
    InputType.CLASSIFICATION: "classification",
    InputType.CLUSTERING: "separation",
}

# ES `embedding_type` -> (Jina `embedding_type`, canonical element type).
# verified: ES JinaAIEmbeddingType (FLOAT "float"; BIT and BINARY both "binary", element type bit); the
# response carries packed bits as signed int8 values (JinaAIEmbeddingsResponseEntity.parseBitDataObject)
EMBEDDING_TYPES: Mapping[str, tuple[str, str]] = {
    "float": ("float", "float"),
    "bit": ("binary", "bit"),
    "binary": ("binary", "bit"),
}

# verified: ES JinaAIEmbeddingsRequestEntity: jina-clip-v2 only accepts "retrieval.query" for `task`
CLIP_V2 = "jina-clip-v2"
# verified: ES JinaAIEmbeddingsRequestEntity.MAX_WORD_COUNT_FOR_LATE_CHUNKING
MAX_WORDS_FOR_LATE_CHUNKING = 5500





class JinaAIAdapter(Adapter):
    service = "jinaai"
    display_name: ClassVar[str] = "Jina AI"  # ES JinaAIService.SERVICE_NAME, used in its messages
    framing = Framing.NONE
    # verified: ES JinaAIServiceFields.EMBEDDING_MAX_BATCH_SIZE = 2048
    embed_batch_size: ClassVar[int | None] = 2048

    # -- requests -----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        key = self.setting("api_key")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def build_request(self, req: CanonicalRequest) -> UpstreamRequest:
        if isinstance(req, EmbedRequest):
            return UpstreamRequest(url=EMBEDDINGS_URL, body=_encoder.encode(self.embed_body(req)),
                                   headers=self._headers())
        if isinstance(req, RerankRequest):
            return UpstreamRequest(url=RERANK_URL, body=_encoder.encode(self.rerank_body(req)),
                                   headers=self._headers())
        raise StatusError(f"The [{self.service}] service does not support task type [{self.task.value}]")

    def embedding_type(self) -> tuple[str, str]:
        raw = str(self.setting("embedding_type") or "float").lower()
        try:
            return EMBEDDING_TYPES[raw]
        except KeyError:
            raise StatusError(f"Invalid embedding_type [{raw}] for the [{self.service}] service; "
                              f"must be one of [binary, bit, float]") from None

    def multimodal(self) -> bool:
        # verified: ES JinaAIEmbeddingServiceSettings (the `embedding` task) defaults multimodal_model to true;
        # the text_embedding settings have no such field and send plain strings
        if self.task != TaskType.EMBEDDING:
            return False
        flag = self.setting("multimodal_model")
        return True if flag is None else bool(flag)

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        if req.user:
            raise unsupported("user", self.service)
        model = self.setting("model_id")
        inputs: list[Any] = [{"text": t} for t in req.inputs] if self.multimodal() else req.inputs
        body: dict[str, Any] = {"input": inputs, "model": model, "embedding_type": self.embedding_type()[0]}
        # the request's input_type wins over the stored one
        input_type = req.input_type or _stored_input_type(self.endpoint.task_settings)
        mapped = map_input_type(input_type, INPUT_TYPES, self.display_name)
        if mapped is not None and (str(model).lower() != CLIP_V2 or input_type == InputType.SEARCH):
            body["task"] = mapped
        late = self.task_setting(req, "late_chunking")
        if late is not None:
            # ES counts words with ICU word breaks (ChunkerUtils.countWords); whitespace splitting is our
            # approximation (unverified against ICU for non-space-separated scripts)
            words = sum(len(t.split()) for t in req.inputs)
            body["late_chunking"] = bool(late) and words <= MAX_WORDS_FOR_LATE_CHUNKING
        dims = req.dimensions if req.dimensions is not None else self.setting("dimensions")
        if dims is not None:
            body["dimensions"] = dims
        return body

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        # verified: JinaAIRerankRequestEntity: model, query, documents, top_n (root, else task setting),
        # return_documents (root, else task setting)
        top_n = req.top_n if req.top_n is not None else self.task_setting(req, "top_n")
        return rerank_body(msgspec.structs.replace(req, top_n=top_n), model=self.setting("model_id"))

    # -- responses ----------------------------------------------------------------------------
    def parse_response(self, req: CanonicalRequest, body: bytes) -> CanonicalResult:
        try:
            if isinstance(req, EmbedRequest):
                return parse_embedding_list(body, self.embedding_type()[1])
            # `results[].{index, relevance_score, document?: {"text"} | "..."}`
            return parse_rerank(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise malformed() from None

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        # verified: JinaAIErrorResponseEntity reads `{"detail": "..."}`; generic_error covers it
        return generic_error(body)


def _stored_input_type(task_settings: Mapping[str, Any]) -> InputType | None:
    raw = task_settings.get("input_type")
    return InputType(str(raw).lower()) if raw else None
