"""A simulated Contextual AI rerank API (`POST /v1/rerank`), with errors and 429s.

Written from https://docs.contextual.ai/api-reference/rerank/rerank; it shares no code with the adapter.
The score rewards query words found in the document, plus a bonus for documents that contain a word of
the `instruction`, so tests can see the instruction was sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Fault:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeContextual:
    api_key: str = "key-ctxl-test"
    requests: list[dict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    url: str = ""

    def fail_next(self, status: int, detail: str = "boom", times: int = 1, headers: dict | None = None) -> None:
        self.faults.extend(Fault(status, json.dumps({"detail": detail}), headers or {}) for _ in range(times))

    def rate_limit_next(self, retry_after: str = "0.2") -> None:
        self.faults.append(Fault(429, json.dumps({"detail": "Rate limit exceeded"}), {"Retry-After": retry_after}))

    async def rerank(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"detail": "Invalid authentication credentials"}, status_code=401)
        if self.faults:
            fault = self.faults.pop(0)
            return Response(fault.body, status_code=fault.status, headers=fault.headers,
                            media_type="application/json")
        missing = [k for k in ("query", "documents", "model") if k not in body]
        if missing:
            return JSONResponse({"detail": [{"loc": ["body", k], "msg": "Field required", "type": "missing"}
                                            for k in missing]}, status_code=422)
        words = set(body["query"].lower().split())
        hints = set((body.get("instruction") or "").lower().split())
        results = []
        for i, doc in enumerate(body["documents"]):
            tokens = set(doc.lower().split())
            score = len(words & tokens) / max(1, len(words)) + (0.5 if hints & tokens else 0.0)
            results.append({"index": i, "relevance_score": score})
        results.sort(key=lambda r: -r["relevance_score"])
        if body.get("top_n"):
            results = results[:body["top_n"]]
        return JSONResponse({"results": results})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/rerank", self.rerank, methods=["POST"])])
