"""A simulated Voyage AI API: `/v1/embeddings` and `/v1/rerank`, its `{"detail": ...}` errors and 429s.

Written from Voyage's public API reference (docs.voyageai.com/reference/embeddings-api, .../reranker-api);
it shares no code with the adapter. `fail_next` queues error answers for the next requests.
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
MAX_INPUTS = 1000


def fake_vector(text: str, dims: int = DIMS) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest() * 8
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


def fake_int8(text: str, dims: int = DIMS) -> list[int]:
    return [max(-128, min(127, round(v * 254))) for v in fake_vector(text, dims)]


def fake_bits(text: str, dims: int = DIMS) -> list[int]:
    """Voyage `binary`: the sign bits packed 8 per byte, offset to signed int8."""
    signs = [1 if v > 0 else 0 for v in fake_vector(text, dims)]
    out = []
    for i in range(0, dims, 8):
        byte = 0
        for bit in signs[i:i + 8]:
            byte = (byte << 1) | bit
        out.append(byte - 128)
    return out


@dataclass
class Fault:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeVoyage:
    api_key: str = "pa-test-key"
    requests: list[dict] = field(default_factory=list)
    headers_seen: list[dict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    url: str = ""

    def fail_next(self, status: int, detail: str = "boom", times: int = 1, headers: dict | None = None) -> None:
        self.faults.extend(Fault(status, json.dumps({"detail": detail}), headers or {}) for _ in range(times))

    def rate_limit_next(self, retry_after: str = "0.2") -> None:
        self.faults.append(Fault(429, json.dumps({"detail": "You have exceeded your rate limit. Please slow down."}),
                                 {"Retry-After": retry_after}))

    def _check(self, request: Request) -> Response | None:
        self.headers_seen.append(dict(request.headers))
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"detail": "Provided API key is invalid."}, status_code=401)
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
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if len(inputs) > MAX_INPUTS:
            return JSONResponse({"detail": f"The max allowed list length is {MAX_INPUTS}."}, status_code=400)
        if body.get("input_type") not in (None, "query", "document"):
            return JSONResponse({"detail": "Value 'input_type' must be one of None, 'query', 'document'."},
                                status_code=400)
        dims = body.get("output_dimension") or DIMS
        dtype = body.get("output_dtype") or "float"
        make = {"float": fake_vector, "int8": fake_int8, "binary": fake_bits}.get(dtype)
        if make is None:
            return JSONResponse({"detail": f"output_dtype {dtype!r} is not supported."}, status_code=400)
        prefix = {"query": "q:", "document": "d:"}.get(body.get("input_type"), "")
        data = [{"object": "embedding", "embedding": make(prefix + t, dims), "index": i} for i, t in enumerate(inputs)]
        data.reverse()  # clients must order by `index`
        tokens = sum(len(t.split()) for t in inputs)
        return JSONResponse({"object": "list", "data": data, "model": body["model"], "usage": {"total_tokens": tokens}})

    async def rerank(self, request: Request) -> Response:
        """Score = share of query words found in the document; `document` is the plain text."""
        body = await request.json()
        self.requests.append(body)
        if (err := self._check(request)) is not None:
            return err
        if "top_n" in body:
            return JSONResponse({"detail": "Unexpected argument 'top_n'."}, status_code=400)
        words = set(body["query"].lower().split())
        data = []
        for i, doc in enumerate(body["documents"]):
            item: dict = {"relevance_score": len(words & set(doc.lower().split())) / max(1, len(words)), "index": i}
            if body.get("return_documents"):
                item["document"] = doc
            data.append(item)
        data.sort(key=lambda r: -r["relevance_score"])
        if body.get("top_k"):
            data = data[:body["top_k"]]
        return JSONResponse({"object": "list", "data": data, "model": body["model"], "usage": {"total_tokens": 26}})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/rerank", self.rerank, methods=["POST"]),
        ])
