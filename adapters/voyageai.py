"""Voyage AI: its own embeddings body (`output_dtype`, `output_dimension`) and a Cohere-like rerank
that says `top_k` (https://docs.voyageai.com/reference/reranker-api).

Sources: ES `services/voyageai/request/VoyageAIEmbeddingsRequestEntity.java`,
`VoyageAIRerankRequestEntity.java`, `VoyageAIUtils.java`, `embeddings/text/VoyageAIEmbeddingType.java`,
`response/VoyageAIEmbeddingsResponseEntity.java`, `VoyageAIRerankResponseEntity.java`,
`VoyageAIErrorResponseEntity.java`; https://docs.voyageai.com/reference/embeddings-api.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import msgspec

from proxy.types import EmbedRequest, InputType, RerankRequest

from .base import map_input_type, unsupported
from .embed_rerank import EmbedRerankAdapter
from .rerank_compat import rerank_body

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


class VoyageAIAdapter(EmbedRerankAdapter):
    service = "voyageai"
    display_name: ClassVar[str] = "Voyage AI"  # ES VoyageAIService.SERVICE_NAME, used in its messages
    embeddings_url = EMBEDDINGS_URL
    rerank_url = RERANK_URL
    embedding_types = EMBEDDING_TYPES
    embedding_type_choices = "float, int8, bit"
    # Documented: "The maximum length of the list is 1,000" (docs.voyageai.com/reference/embeddings-api), next to
    # per-request token caps as low as 120K (voyage-3-large, voyage-code-3, ...); Voyage's own OpenAPI spec
    # (github.com/voyage-ai/openapi) documents 128. We split at 128: accepted by every model, and 128 texts
    # rarely reach the lowest token cap. (ES only batches its chunked path, at 7-72 per model.)
    embed_batch_size: ClassVar[int | None] = 128

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        if req.user:
            raise unsupported("user", self.service)
        body: dict[str, Any] = {"input": req.inputs, "model": self.setting("model_id")}
        # the request's input_type wins over the stored one (VoyageAIEmbeddingsRequestEntity)
        input_type = req.input_type or self.stored_input_type()
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
