"""Voyage AI: its own embeddings body (`output_dtype`, `output_dimension`) and a Cohere-like rerank
that says `top_k` (providers.md §15).

Sources: ES `services/voyageai/request/VoyageAIEmbeddingsRequestEntity.java`,
`VoyageAIRerankRequestEntity.java`, `VoyageAIUtils.java`, `embeddings/text/VoyageAIEmbeddingType.java`,
`response/VoyageAIEmbeddingsResponseEntity.java`, `VoyageAIRerankResponseEntity.java`,
`VoyageAIErrorResponseEntity.java`; https://docs.voyageai.com/reference/embeddings-api.
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

EMBEDDINGS_URL = "https://api.voyageai.com/v1/embeddings"
RERANK_URL = "https://api.voyageai.com/v1/rerank"

# verified: ES VoyageAIEmbeddingsRequestEntity.convertInputTypeToString (ingest -> document, search -> query);
# any other type fails ES VoyageAIService.validateInputType ("Input type [x] is not supported for [Voyage AI]")
INPUT_TYPES: Mapping[InputType, str] = {InputType.INGEST: "document", InputType.SEARCH: "query"}

# ES `embedding_type` -> (Voyage `output_dtype`, canonical element type).
# verified: ES embeddings/text/VoyageAIEmbeddingType (FLOAT "float", INT8/BYTE "int8", BIT/BINARY "binary");
# the response carries signed int8 values for int8 and packed bits alike (VoyageAIEmbeddingsResponseEntity).
EMBEDDING_TYPES: Mapping[str, tuple[str, str]] = {
    "float": ("float", "float"),
    "int8": ("int8", "byte"), "byte": ("int8", "byte"),
    "bit": ("binary", "bit"), "binary": ("binary", "bit"),
}





class VoyageAIAdapter(Adapter):
    service = "voyageai"
    display_name: ClassVar[str] = "Voyage AI"  # ES VoyageAIService.SERVICE_NAME, used in its messages
    framing = Framing.NONE
    # Documented: "The maximum length of the list is 1,000" (docs.voyageai.com/reference/embeddings-api), next to
    # per-request token caps as low as 120K (voyage-3-large, voyage-code-3, ...); Voyage's own OpenAPI spec
    # (github.com/voyage-ai/openapi) documents 128. We split at 128: accepted by every model, and 128 texts
    # rarely reach the lowest token cap. (ES only batches its chunked path, at 7-72 per model.)
    embed_batch_size: ClassVar[int | None] = 128

    # -- requests -----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        key = self.setting("api_key")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def build_request(self, req: CanonicalRequest) -> UpstreamRequest:
        if isinstance(req, EmbedRequest):
            if self.task != TaskType.TEXT_EMBEDDING:
                raise StatusError(f"The [{self.service}] service does not support task type [{self.task.value}]")
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
                              f"must be one of [float, int8, bit]") from None

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        if req.user:
            raise unsupported("user", self.service)
        body: dict[str, Any] = {"input": req.inputs, "model": self.setting("model_id")}
        # the request's input_type wins over the stored one (VoyageAIEmbeddingsRequestEntity)
        input_type = req.input_type or _stored_input_type(self.endpoint.task_settings)
        mapped = map_input_type(input_type, INPUT_TYPES, self.display_name)
        if mapped is not None:
            body["input_type"] = mapped
        truncation = self.task_setting(req, "truncation")
        if truncation is not None:
            body["truncation"] = bool(truncation)
        dims = req.dimensions if req.dimensions is not None else self.setting("dimensions")
        if dims is not None:
            body["output_dimension"] = dims
        body["output_dtype"] = self.embedding_type()[0]  # ES always sends it
        return body

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        # verified: VoyageAIRerankRequestEntity writes `top_k` (root top_n, else task setting top_k),
        # return_documents (root, else task setting) and truncation (task setting)
        top_k = req.top_n if req.top_n is not None else self.task_setting(req, "top_k")
        truncation = self.task_setting(req, "truncation")
        body = rerank_body(msgspec.structs.replace(req, top_n=None), model=self.setting("model_id"))
        if top_k is not None:
            body["top_k"] = top_k
        if truncation is not None:
            body["truncation"] = bool(truncation)
        return body

    # -- responses ----------------------------------------------------------------------------
    def parse_response(self, req: CanonicalRequest, body: bytes) -> CanonicalResult:
        try:
            if isinstance(req, EmbedRequest):
                return parse_embedding_list(body, self.embedding_type()[1])
            # `data[].{index, relevance_score, document?}` with `document` a plain string
            return parse_rerank(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise malformed() from None

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        # verified: VoyageAIErrorResponseEntity reads `{"detail": "..."}`; generic_error covers it
        return generic_error(body)


def _stored_input_type(task_settings: Mapping[str, Any]) -> InputType | None:
    raw = task_settings.get("input_type")
    return InputType(str(raw).lower()) if raw else None
