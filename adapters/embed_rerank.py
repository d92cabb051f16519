"""What Jina AI and Voyage AI share: a bearer key, one embeddings URL and one rerank URL, an ES
`embedding_type` mapped to the provider's own, the stored `input_type`, the `{"detail": ...}` error
body, and the OpenAI-style embedding list and Cohere-style rerank answers."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import msgspec

from proxy.errors import StatusError
from proxy.types import EmbedRequest, EmbedResult, InputType, RerankRequest, RerankResult

from .base import Adapter, Framing, ProviderError, UpstreamRequest, decoding, generic_error
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

    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        return UpstreamRequest(url=self.embed_url(), body=_encoder.encode(self.embed_body(req)),
                               headers=self._headers())

    def rerank_request(self, req: RerankRequest) -> UpstreamRequest:
        return UpstreamRequest(url=self.rerank_url, body=_encoder.encode(self.rerank_body(req)),
                               headers=self._headers())

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

    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            return parse_embedding_list(body, self.embedding_type()[1])

    def parse_rerank(self, req: RerankRequest, body: bytes) -> RerankResult:
        with decoding():
            return parse_rerank(body)  # `results[]` / `data[]` of `{index, relevance_score, document?}`

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        # verified: ES JinaAIErrorResponseEntity and VoyageAIErrorResponseEntity read `{"detail": "..."}`
        return generic_error(body)
