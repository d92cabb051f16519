"""Jina AI: its own embeddings body (`task`, `embedding_type`, `late_chunking`) and Cohere-style rerank
(https://api.jina.ai/redoc).

Sources: ES `services/jinaai/request/JinaAIEmbeddingsRequestEntity.java`, `JinaAIRerankRequestEntity.java`,
`JinaAIUtils.java`, `JinaAIServiceFields.java`, `embeddings/JinaAIEmbeddingType.java`,
`embeddings/JinaAIEmbeddingServiceSettings.java`, `response/JinaAIEmbeddingsResponseEntity.java`,
`JinaAIRerankResponseEntity.java`, `JinaAIErrorResponseEntity.java`.

Both `text_embedding` and `embedding` are served. The `embedding` task (multimodal models) sends each
input as `{"text": ...}` or `{"image": <base64>}`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import msgspec

from proxy.types import EmbedPart, EmbedRequest, InputType, RerankRequest, TaskType

from .base import map_input_type, single_part, split_data_uri, unsupported
from .embed_rerank import EmbedRerankAdapter
from .rerank_compat import rerank_body

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


class JinaAIAdapter(EmbedRerankAdapter):
    service = "jinaai"
    display_name: ClassVar[str] = "Jina AI"  # ES JinaAIService.SERVICE_NAME, used in its messages
    embeddings_url = EMBEDDINGS_URL
    rerank_url = RERANK_URL
    embedding_types = EMBEDDING_TYPES
    embedding_type_choices = "binary, bit, float"
    # verified: ES JinaAIServiceFields.EMBEDDING_MAX_BATCH_SIZE = 2048
    embed_batch_size: ClassVar[int | None] = 2048
    handles_embedding_task: ClassVar[bool] = True

    @classmethod
    def embeds_images(cls, settings: Mapping[str, Any]) -> bool:
        # ES JinaAIEmbeddingServiceSettings: `multimodal_model` (default true on the `embedding` task) says the
        # model (jina-clip-v1/v2, jina-embeddings-v4) takes `{"image": ...}` inputs
        flag = settings.get("multimodal_model")
        return True if flag is None else bool(flag)

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
        if req.contents is not None:
            inputs: list[Any] = [_jina_item(group, self.service) for group in req.contents]
        else:
            inputs = [{"text": t} for t in req.inputs] if self.multimodal() else req.inputs
        body: dict[str, Any] = {"input": inputs, "model": model, "embedding_type": self.embedding_type()[0]}
        # the request's input_type wins over the stored one
        input_type = req.input_type or self.stored_input_type()
        mapped = map_input_type(input_type, INPUT_TYPES, self.display_name)
        if mapped is not None and (str(model).lower() != CLIP_V2 or input_type == InputType.SEARCH):
            body["task"] = mapped
        late = self.task_setting(req, "late_chunking")
        if late is not None:
            # ES counts words with ICU word breaks (ChunkerUtils.countWords); whitespace splitting is our
            # approximation (unverified against ICU for non-space-separated scripts)
            words = sum(len(p.value.split()) for g in req.contents for p in g if p.type == "text") \
                if req.contents is not None else sum(len(t.split()) for t in req.inputs)
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


def _jina_item(group: list[EmbedPart], service: str) -> dict[str, str]:
    """Jina takes one text or one image per input (`{"text": ...}` / `{"image": ...}`); an image goes as its
    base64 payload, without a `data:` URI prefix (Jina's API takes a URL or plain base64)."""
    part = single_part(group, service)
    if part.type == "text":
        return {"text": part.value}
    return {"image": split_data_uri(part.value)[1]}
