"""The Cohere-style rerank family: `{model, query, documents, top_n, return_documents}` →
`results[].{index, relevance_score, document?}`; shared by Cohere, Jina, Voyage, OpenShift AI,
Azure AI Studio, Contextual AI and vLLM's `/rerank`, each with small field differences."""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.types import RankedDoc, RerankRequest, RerankResult, Usage


class _Document(msgspec.Struct):
    text: str | None = None


class _Result(msgspec.Struct):
    index: int
    relevance_score: float | None = None
    score: float | None = None
    logit: float | None = None
    document: _Document | str | None = None
    text: str | None = None

    def ranked(self) -> RankedDoc:
        score = next(s for s in (self.relevance_score, self.score, self.logit, 0.0) if s is not None)
        doc = self.document.text if isinstance(self.document, _Document) else self.document
        return RankedDoc(index=self.index, relevance_score=float(score), text=doc if doc is not None else self.text)


class _Envelope(msgspec.Struct):
    results: list[_Result] | None = None
    data: list[_Result] | None = None  # Jina/Voyage say `data`
    rankings: list[_Result] | None = None  # NVIDIA says `rankings`
    usage: Usage | None = None


_envelope = msgspec.json.Decoder(_Envelope)
_bare_list = msgspec.json.Decoder(list[_Result])


def rerank_body(req: RerankRequest, *, model: str | None, top_n_field: str = "top_n",
                return_documents: bool = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if model:
        body["model"] = model
    body["query"] = req.query
    body["documents"] = req.documents
    if req.top_n is not None:
        body[top_n_field] = req.top_n
    if return_documents and req.return_documents is not None:
        body["return_documents"] = req.return_documents
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def parse_rerank(body: bytes) -> RerankResult:
    """Results under `results`, `data` or `rankings`, or a bare array (TEI, Hugging Face)."""
    stripped = body.lstrip()
    if stripped[:1] == b"[":
        return RerankResult(ranked=[r.ranked() for r in _bare_list.decode(body)])
    env = _envelope.decode(body)
    items = env.results if env.results is not None else env.data if env.data is not None else env.rankings or []
    return RerankResult(ranked=[r.ranked() for r in items], usage=env.usage)
