"""Contextual AI: instruction-following rerank only (https://docs.contextual.ai/api-reference/rerank/rerank).

Sources: ES `services/contextualai/request/ContextualAiRerankRequestEntity.java`,
`ContextualAiRerankRequest.java`, `rerank/ContextualAiRerankTaskSettings.java`,
`response/ContextualAiRerankResponseEntity.java`; https://docs.contextual.ai/api-reference/rerank/rerank.
"""

from __future__ import annotations

from typing import Any, Mapping

import msgspec

from proxy.types import RerankRequest, RerankResult

from .base import Adapter, Framing, ProviderError, UpstreamRequest, decoding, generic_error
from .rerank_compat import parse_rerank

_encoder = msgspec.json.Encoder()

# verified: https://docs.contextual.ai/api-reference/rerank/rerank (server https://api.contextual.ai/v1,
# POST /rerank, `Authorization: Bearer <token>`); ES reads the URI from its service settings
RERANK_URL = "https://api.contextual.ai/v1/rerank"


class ContextualAIAdapter(Adapter):
    service = "contextualai"
    framing = Framing.NONE

    def rerank_request(self, req: RerankRequest) -> UpstreamRequest:
        headers = {"Content-Type": "application/json"}
        key = self.setting("api_key")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return UpstreamRequest(url=RERANK_URL, body=_encoder.encode(self.rerank_body(req)), headers=headers)

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        # verified: ContextualAiRerankRequestEntity writes query, documents, model, top_n?, instruction?
        # (in that order). The catalogue's task setting is `top_k` (SPEC); the ES class reads `top_n`:
        # accept both, the request's root top_n first.
        top_n = req.top_n
        if top_n is None:
            top_n = self.task_setting(req, "top_k")
        if top_n is None:
            top_n = self.task_setting(req, "top_n")
        body: dict[str, Any] = {"query": req.query, "documents": req.documents, "model": self.setting("model_id")}
        if top_n is not None:
            body["top_n"] = top_n
        instruction = self.task_setting(req, "instruction")
        if instruction is not None:
            body["instruction"] = instruction
        # return_documents is not sent: Contextual AI never returns document text; when asked, the gateway
        # attaches the text from the request (proxy.pipeline.finish_rerank)
        return body

    def parse_rerank(self, req: RerankRequest, body: bytes) -> RerankResult:
        with decoding():
            return parse_rerank(body)  # `results[].{index, relevance_score}`

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        # ES (ContextualAiErrorResponseEntity) only reports the status line; we read the body's message when
        # it has one. unverified: the error body shape; FastAPI-style `{"detail": ...}` is assumed
        return generic_error(body)
