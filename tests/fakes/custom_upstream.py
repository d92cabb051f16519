"""A simulated third-party JSON API for the ES `custom` service: the kind of service a user describes with
URL, headers, query parameters, a body template and JSON paths. It checks the credentials it was given in
a header and a query parameter, records the raw bodies it receives, and answers in plain JSON shapes
(OpenAI-like embeddings and chat, Cohere-like rerank, Alibaba-like sparse). Errors are
`{"error": {"message": ...}}`; a 429 carries `Retry-After`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def fake_vector(text: str, dims: int = 4) -> list[float]:
    digest = hashlib.sha256(("custom:" + text).encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


def fake_bytes(text: str, dims: int = 4) -> list[int]:
    digest = hashlib.sha256(("custom:" + text).encode()).digest()
    return [b - 128 for b in digest[:dims]]


@dataclass
class FakeCustom:
    api_key: str = "custom-secret-123"
    url: str = ""
    raw: list[bytes] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    queries: list[dict] = field(default_factory=list)
    faults: list[tuple[int, str, dict]] = field(default_factory=list)

    def fail_next(self, status: int, message: str, times: int = 1, headers: dict | None = None) -> None:
        self.faults.extend((status, json.dumps({"error": {"message": message}}), headers or {}) for _ in range(times))

    async def _check(self, request: Request) -> tuple[dict, Response | None]:
        raw = await request.body()
        self.raw.append(raw)
        self.headers.append(dict(request.headers))
        self.queries.append(dict(request.query_params))
        try:
            body = json.loads(raw)
        except ValueError:
            return {}, JSONResponse({"error": {"message": "request body is not JSON"}}, status_code=400)
        self.requests.append(body)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return body, JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        if request.query_params.get("key") != self.api_key:
            return body, JSONResponse({"error": {"message": "missing key parameter"}}, status_code=403)
        if self.faults:
            status, text, headers = self.faults.pop(0)
            return body, Response(text, status_code=status, headers=headers, media_type="application/json")
        return body, None

    async def embed(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        if body.get("format") == "int8":
            data = [{"embedding": fake_bytes(t)} for t in body["texts"]]
        else:
            data = [{"embedding": fake_vector(t, body.get("dims", 4))} for t in body["texts"]]
        return JSONResponse({"object": "list", "data": data, "model": body.get("model"),
                             "meta": {"kind": body.get("kind")}})

    async def sparse(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        out = [{"index": i, "embedding": [{"token_id": len(word), "weight": round(len(word) / 10, 2)}
                                          for word in text.split()]} for i, text in enumerate(body["input"])]
        return JSONResponse({"request_id": "r1", "result": {"sparse_embeddings": out}})

    async def rerank(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        words = set(body["query"].lower().split())
        results = [{"index": i, "relevance_score": len(words & set(d.lower().split())) / max(1, len(words)),
                    "document": {"text": d}} for i, d in enumerate(body["documents"])]
        results.sort(key=lambda r: -r["relevance_score"])
        if body.get("top_n"):
            results = results[:body["top_n"]]
        return JSONResponse({"id": "rr", "results": results})

    async def complete(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        answer = body["prompt"].upper()
        return JSONResponse({"id": "c1", "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}},
                                                     {"index": 1, "message": {"role": "assistant", "content": "alt"}}]})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/embed", self.embed, methods=["POST"]),
            Route("/v1/sparse", self.sparse, methods=["POST"]),
            Route("/v1/rerank", self.rerank, methods=["POST"]),
            Route("/v1/complete", self.complete, methods=["POST"]),
        ])
