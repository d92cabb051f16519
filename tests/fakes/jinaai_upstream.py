"""A simulated Jina AI API: `/v1/embeddings` (text and multimodal input) and `/v1/rerank`, with its
`{"detail": ...}` errors and 429s.

Written from Jina's public API description (jina.ai/embeddings, jina.ai/reranker); it shares no code
with the adapter. `fail_next` queues error answers for the next requests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DIMS = 16
TASKS = ("retrieval.query", "retrieval.passage", "separation", "classification", "text-matching")


def fake_vector(text: str, dims: int = DIMS) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest() * 8
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


def fake_bits(text: str, dims: int = DIMS) -> list[int]:
    """Jina `binary`: the sign bits packed 8 per byte, as signed int8."""
    signs = [1 if v > 0 else 0 for v in fake_vector(text, dims)]
    out = []
    for i in range(0, dims, 8):
        byte = 0
        for bit in signs[i:i + 8]:
            byte = (byte << 1) | bit
        out.append(byte - 256 if byte > 127 else byte)
    return out


@dataclass
class Fault:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeJina:
    api_key: str = "jina_test_key"
    requests: list[dict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    url: str = ""

    def fail_next(self, status: int, detail: str = "boom", times: int = 1, headers: dict | None = None) -> None:
        self.faults.extend(Fault(status, json.dumps({"detail": detail}), headers or {}) for _ in range(times))

    def rate_limit_next(self, retry_after: str = "0.2") -> None:
        self.faults.append(Fault(429, json.dumps({"detail": "Rate limit exceeded, please try again later"}),
                                 {"Retry-After": retry_after, "X-RateLimit-Remaining": "0"}))

    def _check(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        if self.faults:
            fault = self.faults.pop(0)
            return Response(fault.body, status_code=fault.status, headers=fault.headers,
                            media_type="application/json")
        return None

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if (err := self._check(request)) is not None:
            return err
        if body.get("task") not in (None, *TASKS):
            return JSONResponse({"detail": f"Invalid task: {body['task']}"}, status_code=422)
        texts = []
        for item in body["input"]:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict) and "text" in item:
                texts.append(item["text"])
            elif isinstance(item, dict) and "image" in item:
                texts.append("image:" + item["image"])
            else:
                return JSONResponse({"detail": "Invalid input item"}, status_code=422)
        dims = body.get("dimensions") or DIMS
        etype = body.get("embedding_type") or "float"
        make = {"float": fake_vector, "binary": fake_bits}.get(etype)
        if make is None:
            return JSONResponse({"detail": f"Unsupported embedding_type: {etype}"}, status_code=422)
        prefix = body.get("task") or ""
        data = [{"object": "embedding", "index": i, "embedding": make(prefix + t, dims)} for i, t in enumerate(texts)]
        tokens = sum(len(t.split()) for t in texts)
        return JSONResponse({"model": body["model"], "object": "list",
                             "usage": {"total_tokens": tokens, "prompt_tokens": tokens}, "data": data})

    async def rerank(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if (err := self._check(request)) is not None:
            return err
        words = set(body["query"].lower().split())
        results = []
        for i, doc in enumerate(body["documents"]):
            item: dict = {"index": i, "relevance_score": len(words & set(doc.lower().split())) / max(1, len(words))}
            if body.get("return_documents", True):  # Jina returns documents unless told not to
                item["document"] = {"text": doc}
            results.append(item)
        results.sort(key=lambda r: -r["relevance_score"])
        if body.get("top_n"):
            results = results[:body["top_n"]]
        return JSONResponse({"model": body["model"], "usage": {"total_tokens": 15}, "results": results})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/rerank", self.rerank, methods=["POST"]),
        ])
