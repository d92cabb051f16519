"""A simulated Cohere v2 API: `/v2/embed`, `/v2/rerank`, `/v2/chat` (plain, streamed, tool calls), faults.

Written from Cohere's public API reference (docs.cohere.com: Embed, Rerank, Chat, Chat with
streaming) and shares no code with the adapter. It checks the bearer token, that v2 embed gets the
required `input_type` and `embedding_types`, and the 96-text limit, answering with Cohere's error
body `{"message": ...}`. Chat streams are SSE events named by their `type`. The model name picks a
behaviour: "tool-model" (tool calls), "cut-stream" (ends before `message-end`). `fail_next` queues
error answers. Cohere sends no rate-limit headers on production keys (ES CohereResponseHandler), so
a 429 carries only the trial-key call counters when a test asks for them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DIMS = 8
TRIAL_HEADERS = {"x-endpoint-monthly-call-limit": "1000", "x-trial-endpoint-call-limit": "40",
                 "x-trial-endpoint-call-remaining": "0"}


def fake_vector(text: str, dims: int = DIMS) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


def fake_int8(text: str, dims: int = DIMS) -> list[int]:
    return [b - 128 for b in hashlib.sha256(text.encode()).digest()[:dims]]


def fake_binary(text: str, dims: int = DIMS) -> list[int]:
    # packed bits, signed int8 precision: dims / 8 values
    return [b - 128 for b in hashlib.sha256(text.encode()).digest()[dims:dims + max(1, dims // 8)]]


@dataclass
class Fault:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeCohere:
    api_key: str = "co-test-key"
    requests: list[dict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    url: str = ""

    def fail_next(self, status: int, message: str = "boom", times: int = 1, headers: dict | None = None) -> None:
        self.faults.extend(Fault(status, json.dumps({"message": message}), headers or {}) for _ in range(times))

    def _check(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"message": "invalid api token"}, status_code=401)
        if self.faults:
            fault = self.faults.pop(0)
            return Response(fault.body, status_code=fault.status, headers=fault.headers,
                            media_type="application/json")
        return None

    @staticmethod
    def _bad(message: str) -> Response:
        return JSONResponse({"message": message}, status_code=400)

    async def embed(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if (err := self._check(request)) is not None:
            return err
        texts = body.get("texts") or []
        if len(texts) > 96:
            return self._bad(f"invalid request: total number of texts must be at most 96 - received {len(texts)}")
        if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering",
                                          "image"):
            return self._bad("invalid request: input_type is a required field for v3+ models")
        types = body.get("embedding_types")
        if not types:
            return self._bad("invalid request: embedding_types is required")
        dims = body.get("output_dimension") or DIMS
        makers = {"float": fake_vector, "int8": fake_int8, "binary": fake_binary}
        embeddings = {}
        for t in types:
            if t not in makers:
                return self._bad(f"invalid request: embedding type {t} is not supported")
            embeddings[t] = [makers[t](text, dims) for text in texts]
        tokens = sum(len(t.split()) for t in texts)
        return JSONResponse({"id": "emb-1", "embeddings": embeddings, "texts": texts,
                             "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
                             "response_type": "embeddings_by_type"})

    async def rerank(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if (err := self._check(request)) is not None:
            return err
        words = set(body["query"].lower().split())
        results = [{"index": i, "relevance_score": len(words & set(doc.lower().split())) / max(1, len(words))}
                   for i, doc in enumerate(body["documents"])]
        results.sort(key=lambda r: -r["relevance_score"])
        if body.get("top_n"):
            results = results[:body["top_n"]]
        return JSONResponse({"id": "rr-1", "results": results,
                             "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}})

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if (err := self._check(request)) is not None:
            return err
        model = body.get("model")
        messages = body.get("messages") or []
        for m in messages:
            if m.get("role") not in ("system", "user", "assistant", "tool"):
                return self._bad(f"invalid request: invalid role {m.get('role')}")
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            answer = "RESULTS: " + ", ".join(f"{m['tool_call_id']}={m['content']}" for m in messages
                                             if m.get("role") == "tool")
            mode = "plain"
        else:
            content = last.get("content", "")
            answer = content.upper() if isinstance(content, str) else ""
            mode = model
        usage = {"billed_units": {"input_tokens": 5, "output_tokens": 7},
                 "tokens": {"input_tokens": 71, "output_tokens": 7}}
        if body.get("stream"):
            return EventSourceResponse(self._stream(mode, answer, usage), ping=600, sep="\n")
        message: dict = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
        finish = "COMPLETE"
        if mode == "tool-model":
            message = {"role": "assistant", "tool_plan": "I will look up the weather.",
                       "tool_calls": [{"id": "get_weather_1", "type": "function",
                                       "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
            finish = "TOOL_CALL"
        return JSONResponse({"id": "chat-1", "finish_reason": finish, "message": message, "usage": usage})

    async def _stream(self, mode: str, answer: str, usage: dict):
        def ev(kind: str, payload: dict) -> dict:
            return {"event": kind, "data": json.dumps({"type": kind, **payload})}

        yield ev("message-start", {"id": "chat-stream-1", "delta": {"message": {
            "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}})
        if mode == "tool-model":
            yield ev("tool-plan-delta", {"delta": {"message": {"tool_plan": "I will check"}}})
            calls = [("get_weather_1", "get_weather", ['{"city"', ':"Paris"}']),
                     ("get_time_2", "get_time", ['{"tz":', '"CET"}'])]
            for i, (cid, name, pieces) in enumerate(calls):
                yield ev("tool-call-start", {"index": i, "delta": {"message": {"tool_calls": {
                    "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}}}})
                for piece in pieces:
                    yield ev("tool-call-delta", {"index": i, "delta": {"message": {"tool_calls": {
                        "function": {"arguments": piece}}}}})
                yield ev("tool-call-end", {"index": i})
            finish = "TOOL_CALL"
        else:
            yield ev("content-start", {"index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}})
            words = answer.split(" ") if answer else [""]
            for i, word in enumerate(words):
                if mode == "cut-stream" and i == 1:
                    return  # the body ends without message-end
                yield ev("content-delta", {"index": 0, "delta": {"message": {"content": {
                    "text": word if i == 0 else " " + word}}}})
            yield ev("content-end", {"index": 0})
            finish = "COMPLETE"
        yield ev("message-end", {"delta": {"finish_reason": finish, "usage": usage}})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v2/embed", self.embed, methods=["POST"]),
            Route("/v2/rerank", self.rerank, methods=["POST"]),
            Route("/v2/chat", self.chat, methods=["POST"]),
        ])
