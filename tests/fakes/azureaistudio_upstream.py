"""A simulated Azure AI Studio / AI Foundry: one server holding three kinds of deployment.

- serverless ("token") endpoints of non-OpenAI providers speaking the Azure AI Model Inference API at
  `/embeddings` and `/chat/completions` (`?api-version=`, OpenAI-like, with an OpenAI SSE stream), and
  `/v1/rerank` (Cohere-style), authenticated by `Authorization: Bearer <key>`;
- an Azure OpenAI deployment at `/openai/deployments/{name}/embeddings|chat/completions`, `api-key` header;
- a managed online ("realtime") endpoint at `/score`: `{"input_data": {"input_string": [...],
  "parameters": {...}}}` in, `{"output": "..."}` out, `Authorization: Bearer <key>`.

Written from Azure's public docs (Azure AI model inference API, Azure ML online endpoints); it shares no
code with the adapter. Errors are Azure's `{"error": {"code", "message"}}`; 429s carry `Retry-After`
and `x-ratelimit-remaining-requests`. `fail_next` queues error answers for the next requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DIMS = 8


def fake_vector(text: str, dims: int = DIMS) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest() * 4
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


@dataclass
class Fault:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeAzureAIStudio:
    api_key: str = "azure-test-key"
    requests: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    cut_stream: bool = False
    url: str = ""

    def fail_next(self, status: int, message: str = "boom", code: str = "BadRequest", times: int = 1,
                  headers: dict | None = None) -> None:
        body = json.dumps({"error": {"code": code, "message": message}})
        self.faults.extend(Fault(status, body, headers or {}) for _ in range(times))

    def rate_limit_next(self, retry_after: str = "0.2") -> None:
        self.fail_next(429, "Rate limit is exceeded. Try again in 1 seconds.", code="429",
                       headers={"Retry-After": retry_after, "x-ratelimit-remaining-requests": "0"})

    # ------------------------------------------------------------------ plumbing

    def _check(self, request: Request, kind: str) -> Response | None:
        """kind: token | openai | realtime, each with its own credential form."""
        self.paths.append(request.url.path)
        if kind == "openai":
            ok = request.headers.get("api-key") == self.api_key
        elif kind == "realtime":
            ok = request.headers.get("authorization") == f"Bearer {self.api_key}"
        else:
            ok = request.headers.get("authorization") == f"Bearer {self.api_key}"
            if ok and not request.url.path.endswith("/rerank") and not request.query_params.get("api-version"):
                return JSONResponse({"error": {"code": "BadRequest", "message": "api-version is required"}},
                                    status_code=400)
        if not ok:
            return JSONResponse({"error": {"code": "401", "message": "Access denied due to invalid subscription "
                                                                     "key or wrong API endpoint."}}, status_code=401)
        if self.faults:
            fault = self.faults.pop(0)
            return Response(fault.body, status_code=fault.status, headers=fault.headers,
                            media_type="application/json")
        return None

    async def _body(self, request: Request) -> dict:
        body = await request.json()
        self.requests.append(body)
        return body

    # ------------------------------------------------------------------ embeddings

    def _embeddings(self, body: dict) -> Response:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = body.get("dimensions", DIMS)
        prefix = {"query": "q:", "document": "d:"}.get(body.get("input_type"), "")
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(prefix + t, dims)}
                for i, t in enumerate(inputs)]
        data.reverse()
        tokens = sum(len(t.split()) for t in inputs)
        return JSONResponse({"object": "list", "data": data, "model": "embed-v-4-0",
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def token_embeddings(self, request: Request) -> Response:
        body = await self._body(request)
        err = self._check(request, "token")
        return err if err is not None else self._embeddings(body)

    async def openai_embeddings(self, request: Request) -> Response:
        body = await self._body(request)
        err = self._check(request, "openai")
        return err if err is not None else self._embeddings(body)

    # ------------------------------------------------------------------ chat

    def _answer(self, messages: list[dict]) -> str:
        return " ".join(m["content"] for m in messages if m.get("role") == "user").upper()

    async def _chat(self, request: Request, kind: str) -> Response:
        body = await self._body(request)
        if (err := self._check(request, kind)) is not None:
            return err
        if "parameters" in body and not isinstance(body["parameters"], dict):
            return JSONResponse({"error": {"code": "BadRequest", "message": "parameters must be an object"}},
                                status_code=400)
        answer = self._answer(body["messages"])
        if body.get("stream"):
            return EventSourceResponse(self._stream(answer), ping=600, sep="\n")
        return JSONResponse({"id": "cmpl-az-1", "object": "chat.completion", "created": 1718000000,
                             "model": "meta-llama-3-8b-instruct",
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": answer}}],
                             "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})

    async def _stream(self, answer: str):
        base = {"id": "cmpl-az-1", "object": "chat.completion.chunk", "created": 1718000000,
                "model": "meta-llama-3-8b-instruct"}
        yield json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        pieces = [answer[i:i + 3] for i in range(0, len(answer), 3)] or [""]
        for n, piece in enumerate(pieces):
            if self.cut_stream and n == 1:
                return  # the body ends without [DONE]
            yield json.dumps({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
            await asyncio.sleep(0)
        yield json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces), "total_tokens":
                                    5 + len(pieces)}})
        yield "[DONE]"

    async def token_chat(self, request: Request) -> Response:
        return await self._chat(request, "token")

    async def openai_chat(self, request: Request) -> Response:
        return await self._chat(request, "openai")

    async def realtime_score(self, request: Request) -> Response:
        body = await self._body(request)
        if (err := self._check(request, "realtime")) is not None:
            return err
        data = body.get("input_data")
        if not isinstance(data, dict) or not isinstance(data.get("input_string"), list):
            return JSONResponse({"error": {"code": "UserError", "message": "input_data.input_string is required"}},
                                status_code=424)
        return JSONResponse({"output": self._answer(data["input_string"])})

    # ------------------------------------------------------------------ rerank

    async def token_rerank(self, request: Request) -> Response:
        body = await self._body(request)
        if (err := self._check(request, "token")) is not None:
            return err
        words = set(body["query"].lower().split())
        results = []
        for i, doc in enumerate(body["documents"]):
            item: dict = {"index": i, "relevance_score": len(words & set(doc.lower().split())) / max(1, len(words))}
            if body.get("return_documents"):
                item["document"] = {"text": doc}
            results.append(item)
        results.sort(key=lambda r: -r["relevance_score"])
        if body.get("top_n"):
            results = results[:body["top_n"]]
        return JSONResponse({"id": "ff2feb42", "results": results,
                             "meta": {"api_version": {"version": "1"}, "billed_units": {"search_units": 1}}})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/embeddings", self.token_embeddings, methods=["POST"]),
            Route("/chat/completions", self.token_chat, methods=["POST"]),
            Route("/v1/rerank", self.token_rerank, methods=["POST"]),
            Route("/openai/deployments/{name}/embeddings", self.openai_embeddings, methods=["POST"]),
            Route("/openai/deployments/{name}/chat/completions", self.openai_chat, methods=["POST"]),
            Route("/score", self.realtime_score, methods=["POST"]),
        ])
