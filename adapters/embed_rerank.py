"""What Jina AI and Voyage AI share: a bearer key, one embeddings URL and one rerank URL, an ES
`embedding_type` mapped to the provider's own, the stored `input_type`, the `{"detail": ...}` error
body, and the OpenAI-style embedding list and Cohere-style rerank answers."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import msgspec

from proxy.errors import StatusError
from proxy.types import CanonicalRequest, CanonicalResult, EmbedRequest, InputType, RerankRequest, TaskType

from .base import Adapter, Framing, ProviderError, UpstreamRequest, generic_error, malformed
from .openai_compat import parse_embedding_list
from .rerank_compat import parse_rerank

_encoder = msgspec.json.Encoder()


class EmbedRerankAdapter(Adapter):
    framing = Framing.NONE
    embeddings_url: ClassVar[str]
    rerank_url: ClassVar[str]
    # ES `embedding_type` -> (the provider's name for it, canonical element type)
    embedding_types: ClassVar[Mapping[str, tuple[str, str]]]
    embedding_type_choices: ClassVar[str]  # as the provider's ES service lists them in its error
    embed_tasks: ClassVar[frozenset[TaskType] | None] = None  # None: every embedding task of the catalogue

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        raise NotImplementedError

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        raise NotImplementedError

    def embed_url(self) -> str:
        return self.embeddings_url

    def _headers(self) -> dict[str, str]:
        key = self.setting("api_key")
        # how integrations identify themselves to both providers: ES JinaAIUtils / VoyageAIUtils
        # createRequestSourceHeader
        headers = {"Content-Type": "application/json", "Request-Source": "unspecified:elasticsearch"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def build_request(self, req: CanonicalRequest) -> UpstreamRequest:
        if isinstance(req, EmbedRequest) and (self.embed_tasks is None or self.task in self.embed_tasks):
            return UpstreamRequest(url=self.embed_url(), body=_encoder.encode(self.embed_body(req)),
                                   headers=self._headers())
        if isinstance(req, RerankRequest):
            return UpstreamRequest(url=self.rerank_url, body=_encoder.encode(self.rerank_body(req)),
                                   headers=self._headers())
        raise StatusError(f"The [{self.service}] service does not support task type [{self.task.value}]")

    def embedding_type(self) -> tuple[str, str]:
        raw = str(self.setting("embedding_type") or "float").lower()
        try:
            return self.embedding_types[raw]
        except KeyError:
            raise StatusError(f"Invalid embedding_type [{raw}] for the [{self.service}] service; "
                              f"must be one of [{self.embedding_type_choices}]") from None

    def stored_input_type(self) -> InputType | None:
        raw = self.endpoint.task_settings.get("input_type")
        return InputType(str(raw).lower()) if raw else None

    def parse_response(self, req: CanonicalRequest, body: bytes) -> CanonicalResult:
        try:
            if isinstance(req, EmbedRequest):
                return parse_embedding_list(body, self.embedding_type()[1])
            # `results[]` / `data[]` of `{index, relevance_score, document?}`
            return parse_rerank(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise malformed() from None

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        # verified: ES JinaAIErrorResponseEntity and VoyageAIErrorResponseEntity read `{"detail": "..."}`
        return generic_error(body)
