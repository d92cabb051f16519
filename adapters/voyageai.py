"""Voyage AI: its own embeddings body (`output_dtype`, `output_dimension`) and a Cohere-like rerank
that says `top_k` (https://docs.voyageai.com/reference/reranker-api).

Sources: ES `services/voyageai/request/VoyageAIEmbeddingsRequestEntity.java`,
`VoyageAIRerankRequestEntity.java`, `VoyageAIUtils.java`, `embeddings/text/VoyageAIEmbeddingType.java`,
`response/VoyageAIEmbeddingsResponseEntity.java`, `VoyageAIRerankResponseEntity.java`,
`VoyageAIErrorResponseEntity.java`; https://docs.voyageai.com/reference/embeddings-api.

The `embedding` task (ES 9.4, `embeddings/VoyageAIEmbeddingServiceSettings`, `multimodal_model` defaulting
to true) sends multimodal models `inputs` of `content` lists, text and `image_base64` items
(`VoyageAIEmbeddingsRequestEntity.writeInputs`), to the multimodal endpoint
(https://docs.voyageai.com/reference/multimodal-embeddings-api), where one input may interleave several
items into one embedding.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import msgspec

from proxy.types import EmbedPart, EmbedRequest, InputType, RerankRequest, TaskType

from .base import map_input_type, unsupported
from .embed_rerank import EmbedRerankAdapter
from .rerank_compat import rerank_body

EMBEDDINGS_URL = "https://api.voyageai.com/v1/embeddings"
# verified: ES VoyageAIUtils.MULTIMODAL_EMBEDDINGS_PATH; the voyageai SDK's multimodal_embed posts there
MULTIMODAL_URL = "https://api.voyageai.com/v1/multimodalembeddings"
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
    handles_embedding_task: ClassVar[bool] = True
    # Documented: "The maximum length of the list is 1,000" (docs.voyageai.com/reference/embeddings-api), next to
    # per-request token caps as low as 120K (voyage-3-large, voyage-code-3, ...); Voyage's own OpenAPI spec
    # (github.com/voyage-ai/openapi) documents 128. We split at 128: accepted by every model, and 128 texts
    # rarely reach the lowest token cap. (ES only batches its chunked path, at 7-72 per model.)
    embed_batch_size: ClassVar[int | None] = 128

    @classmethod
    def embeds_images(cls, settings: Mapping[str, Any]) -> bool:
        # verified: ES VoyageAIEmbeddingServiceSettings.DEFAULT_MULTIMODAL_MODEL = true
        flag = settings.get("multimodal_model")
        return True if flag is None else bool(flag)

    def multimodal(self) -> bool:
        """The `embedding` task on a multimodal model (the text_embedding settings have no such field)."""
        return self.task == TaskType.EMBEDDING and self.embeds_images(self.endpoint.service_settings)

    def embed_url(self) -> str:
        return MULTIMODAL_URL if self.multimodal() else EMBEDDINGS_URL

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        if req.user:
            raise unsupported("user", self.service)
        body: dict[str, Any] = {"model": self.setting("model_id")}
        if self.multimodal():
            groups = req.contents if req.contents is not None else [[EmbedPart(type="text", value=t)]
                                                                     for t in req.inputs]
            body["inputs"] = [{"content": [_voyage_item(p) for p in group]} for group in groups]
        else:
            body["input"] = req.inputs
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


def _voyage_item(part: EmbedPart) -> dict[str, str]:
    """ES `VoyageAIEmbeddingsRequestEntity`: `{"type": "text", "text"}` or `{"type": "image_base64", "image_base64"}`,
    the image as given (Voyage takes a `data:` URI, docs.voyageai.com/reference/multimodal-embeddings-api)."""
    if part.type == "text":
        return {"type": "text", "text": part.value}
    return {"type": "image_base64", "image_base64": part.value}
