"""A simulated Alibaba Cloud AI Search (OpenSearch) workspace API, from the response shapes Alibaba
documents and ES's response-entity javadocs (no code shared with the adapter).

`POST /v3/openapi/workspaces/{workspace}/{text-embedding|text-sparse-embedding|ranker|text-generation}/{service_id}`
with `Authorization: Bearer <key>`; every answer carries `request_id`, `latency` and `usage` around `result`.
Errors are `{"request_id","latency","code","message"}`; a 429 is Alibaba's flow-control throttling body.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DIMS = 5


def fake_vector(text: str, dims: int = DIMS) -> list[float]:
    digest = hashlib.sha256(("ali:" + text).encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


def ali_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"request_id": str(uuid.uuid4()).upper(), "latency": 0, "code": code, "message": message},
                        status_code=status)


@dataclass
class FakeAlibaba:
    api_key: str = "OS-alibaba-key"
    workspace: str = "default"
    requests: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    faults: list[tuple[int, str, str, dict]] = field(default_factory=list)
    url: str = ""

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def fail_next(self, status: int, code: str, message: str, times: int = 1, headers: dict | None = None) -> None:
        self.faults.extend((status, code, message, headers or {}) for _ in range(times))

    async def _check(self, request: Request) -> tuple[dict, Response | None]:
        body = await request.json()
        self.requests.append(body)
        self.paths.append(request.url.path)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return body, ali_error(401, "InvalidApiKey", "Invalid API key provided.")
        if request.path_params["workspace"] != self.workspace:
            return body, ali_error(404, "WorkspaceNotExist", "The workspace does not exist.")
        if self.faults:
            status, code, message, headers = self.faults.pop(0)
            resp = ali_error(status, code, message)
            resp.headers.update(headers)
            return body, resp
        if body.get("input_type") not in (None, "document", "query"):
            return body, ali_error(400, "InvalidParameter", "JSON parse error: Cannot deserialize value of type "
                                   f"`InputType` from String \"{body['input_type']}\"")
        return body, None

    def _ok(self, result: dict, usage: dict) -> JSONResponse:
        return JSONResponse({"request_id": str(uuid.uuid4()).upper(), "latency": 38, "usage": usage,
                             "result": result})

    async def embedding(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        items = [{"index": i, "embedding": fake_vector(t)} for i, t in enumerate(body["input"])]
        items.reverse()  # answer out of order: clients must use `index`
        return self._ok({"embeddings": items}, {"token_count": sum(len(t) for t in body["input"])})

    async def sparse(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        out = []
        for i, text in enumerate(body["input"]):
            tokens = []
            for word in text.split():
                entry: dict = {"token_id": int(hashlib.sha256(word.encode()).hexdigest()[:5], 16),
                               "weight": round(len(word) / 10, 3)}
                if body.get("return_token"):
                    entry["token"] = word
                tokens.append(entry)
            tokens.append({"token_id": 6, "weight": 0.0, **({"token": ""} if body.get("return_token") else {})})
            out.append({"index": i, "embedding": tokens})
        return self._ok({"sparse_embeddings": out}, {"token_count": 11})

    async def ranker(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        words = set(body["query"].lower().split())
        scores = [{"index": i, "score": round(len(words & set(d.lower().split())) - 0.3, 3)}
                  for i, d in enumerate(body["docs"])]
        scores.sort(key=lambda s: -s["score"])
        return self._ok({"scores": scores}, {"doc_count": len(body["docs"])})

    async def generation(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        text = " | ".join(f"{m['role']}:{m['content']}" for m in body["messages"])
        return JSONResponse({"request_id": "450fcb80-f796-46c1-8d69-e1e86d29aa9f", "latency": 564.9,
                             "result": {"text": text},
                             "usage": {"output_tokens": 6, "input_tokens": 35, "total_tokens": 41}})

    def app(self) -> Starlette:
        base = "/v3/openapi/workspaces/{workspace}"
        return Starlette(routes=[
            Route(base + "/text-embedding/{service_id}", self.embedding, methods=["POST"]),
            Route(base + "/text-sparse-embedding/{service_id}", self.sparse, methods=["POST"]),
            Route(base + "/ranker/{service_id}", self.ranker, methods=["POST"]),
            Route(base + "/text-generation/{service_id}", self.generation, methods=["POST"]),
        ])

