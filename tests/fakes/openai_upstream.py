"""A simulated OpenAI-format upstream: embeddings, chat (plain, streamed, tool calls) and faults.

It shares no code with the adapters: it is written from OpenAI's public API description. The
model name picks a behaviour ("tool-model", "agent-model", "slow-stream", "cut-stream", "error-stream",
"malformed", "stall"),
and `fail_next` queues error answers (status, body, headers) for the next requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import time
from dataclasses import dataclass, field

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DIMS = 8


# what the `deepseek-reasoner` model thinks, in streamed pieces (api-docs.deepseek.com/guides/reasoning_model)
REASONING = ["The user ", "says hi; ", "answer in caps."]


def fake_vector(text: str | list[int], dims: int = DIMS) -> list[float]:
    """A vector that depends on the input: a text, or an array of token ids (which OpenAI's `input` takes)."""
    if not isinstance(text, str):
        text = "ids:" + ",".join(map(str, text))
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


@dataclass
class Fault:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeOpenAI:
    api_key: str = "sk-test-key"
    requests: list[dict] = field(default_factory=list)
    headers_seen: list[dict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    stream_events: int = 5
    disconnects: int = 0
    stream_started: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def fail_next(self, status: int, message: str = "boom", times: int = 1, headers: dict | None = None,
                  raw: str | None = None) -> None:
        body = raw if raw is not None else json.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})
        self.faults.extend(Fault(status, body, headers or {}) for _ in range(times))

    # ------------------------------------------------------------------ handlers

    def _check(self, request: Request) -> Response | None:
        self.headers_seen.append(dict(request.headers))
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                           "param": None, "code": "invalid_api_key"}}, status_code=401)
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
        given = body["input"]
        # a string, strings, one array of token ids, or arrays of them
        inputs = [given] if isinstance(given, str) or (given and isinstance(given[0], int)) else given
        dims = body.get("dimensions", DIMS)
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, dims)} for i, t in enumerate(inputs)]
        if body.get("encoding_format") == "base64":
            import base64
            for item in data:
                item["embedding"] = base64.b64encode(struct.pack(f"<{dims}f", *item["embedding"])).decode()
        data.reverse()  # real servers may answer out of order; clients must use `index`
        tokens = sum(len(t.split()) if isinstance(t, str) else len(t) for t in inputs)
        return JSONResponse({"object": "list", "data": data, "model": body.get("model"),
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if (err := self._check(request)) is not None:
            return err
        model = body.get("model") or "default-model"
        if model == "slow" and not body.get("stream"):
            for _ in range(100):  # a long answer; notice when the caller goes away
                if await request.is_disconnected():
                    self.disconnects += 1
                    self.closed.set()
                    return Response(status_code=499)
                await asyncio.sleep(0.05)
        if model == "malformed":
            return Response('{"choices": [', media_type="application/json")
        prompt = " ".join(m["content"] if isinstance(m.get("content"), str) else "" for m in body["messages"])
        answer = prompt.upper()
        last = body["messages"][-1]
        tool_name = "get_weather"
        if model == "agent-model":
            # an agent's loop: call the first tool offered, then answer with what the tool returned
            if last.get("role") == "tool" or not body.get("tools"):
                model, answer = "default-model", f"RESULT: {last.get('content')}"
            else:
                model, tool_name = "tool-model", body["tools"][0]["function"]["name"]
        if body.get("stream"):
            return EventSourceResponse(self._stream(request, body, model, answer, tool_name), ping=600, sep="\n")
        message: dict = {"role": "assistant", "content": answer}
        if model == "deepseek-reasoner":
            message["reasoning_content"] = "".join(REASONING)
        finish = "stop"
        if model == "tool-model":
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": tool_name,
                                                                  "arguments": '{"city": "Paris"}'}}]}
            finish = "tool_calls"
        usage: dict = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        choice: dict = {"index": 0, "message": message, "finish_reason": finish}
        if model == "details":  # what OpenAI reports for a cached prompt and a reasoning model
            usage = {"prompt_tokens": 2048, "completion_tokens": 0, "total_tokens": 2048,
                     "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
                     "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                   "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [{"token": answer[:1], "logprob": -0.25, "bytes": [ord(answer[:1])],
                                               "top_logprobs": []}], "refusal": None}
        return JSONResponse({"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                             "model": model, "choices": [choice], "usage": usage})

    async def _stream(self, request: Request, body: dict, model: str, answer: str, tool_name: str = "get_weather"):
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model}
        self.stream_started.set()
        try:
            yield json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            if model == "deepseek-reasoner":  # DeepSeek streams its reasoning first, as `reasoning_content`
                for piece in REASONING:
                    yield json.dumps({**base, "choices": [{"index": 0, "delta": {"content": None,
                                                                                 "reasoning_content": piece}}]})
            if model == "tool-model":
                args = ['{"city"', ': "Pa', 'ris"}']
                yield json.dumps({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function",
                     "function": {"name": tool_name, "arguments": ""}}]}}]})
                for piece in args:
                    yield json.dumps({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                        {"index": 0, "function": {"arguments": piece}}]}}]})
                finish = "tool_calls"
            else:
                count = self.stream_events
                for i in range(count):
                    if model == "cut-stream" and i == 2:
                        raise ConnectionAbortedError  # sse-starlette ends the body without [DONE]
                    if model == "error-stream" and i == 2:  # an error after the stream started, as OpenAI sends it
                        yield json.dumps({"error": {"message": "The server had an error", "type": "server_error",
                                                    "param": None, "code": None}})
                        return
                    if model == "slow-stream":
                        await asyncio.sleep(0.2)
                    if model == "stall" and i == 1:
                        await asyncio.sleep(30)
                    piece = answer[i::count] if model != "numbers" else f"{i},"
                    yield json.dumps({**base, "choices": [{"index": 0, "delta": {"content": f"<{i}>{piece}"}}]})
                finish = "stop"
            yield json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                yield json.dumps({**base, "choices": [],
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})
            yield "[DONE]"
        except ConnectionAbortedError:
            return
        except asyncio.CancelledError:
            self.disconnects += 1
            self.closed.set()
            raise

    async def rerank(self, request: Request) -> Response:
        """Cohere/vLLM-style rerank: score = share of query words found in the document."""
        body = await request.json()
        self.requests.append(body)
        if (err := self._check(request)) is not None:
            return err
        words = set(body["query"].lower().split())
        results = []
        for i, doc in enumerate(body["documents"]):
            found = words & set(doc.lower().split())
            item: dict = {"index": i, "relevance_score": len(found) / max(1, len(words))}
            if body.get("return_documents"):
                item["document"] = {"text": doc}
            results.append(item)
        results.sort(key=lambda r: -r["relevance_score"])
        if body.get("top_n"):
            results = results[:body["top_n"]]
        return JSONResponse({"id": "rr-1", "results": results, "usage": {"prompt_tokens": 4, "total_tokens": 4}})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/rerank", self.rerank, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
        ])
