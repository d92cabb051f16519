"""A simulated Anthropic Messages API (`POST /v1/messages`): plain, streamed and tool-use answers, faults.

Written from Anthropic's public API description (docs.claude.com: Messages, streaming, errors,
rate limits); it shares no code with the adapter. It checks `x-api-key` and `anthropic-version`
and that `max_tokens` is present, as the real API does. The model name picks a behaviour:
"tool-model" (answers with tool_use blocks after a text block), "cut-stream" (the connection ends
before `message_stop`), "overloaded-stream" (an in-stream `error` event). `fail_next` queues error
answers for the next requests.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


def error_body(status: int, message: str) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": "req_011CTestFake"}


def rate_limit_headers(retry_after: str = "0") -> dict[str, str]:
    return {"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2025-01-01T00:00:30Z",
            "anthropic-ratelimit-tokens-limit": "40000", "anthropic-ratelimit-tokens-remaining": "0",
            "anthropic-ratelimit-tokens-reset": "2025-01-01T00:00:30Z", "retry-after": retry_after}


@dataclass
class Fault:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if b.get("type") == "text")


@dataclass
class FakeAnthropic:
    api_key: str = "sk-ant-test"
    requests: list[dict] = field(default_factory=list)
    headers_seen: list[dict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    url: str = ""

    def fail_next(self, status: int, message: str = "boom", times: int = 1, headers: dict | None = None) -> None:
        body = json.dumps(error_body(status, message))
        self.faults.extend(Fault(status, body, headers or {}) for _ in range(times))

    def _check(self, request: Request, body: dict) -> Response | None:
        self.headers_seen.append(dict(request.headers))
        if request.headers.get("x-api-key") != self.api_key:
            return JSONResponse(error_body(401, "invalid x-api-key"), status_code=401)
        if request.headers.get("anthropic-version") != "2026-10-21":
            return JSONResponse(error_body(400, "anthropic-version: header is required"), status_code=400)
        if self.faults:
            fault = self.faults.pop(0)
            return Response(fault.body, status_code=fault.status, headers=fault.headers,
                            media_type="application/json")
        if not isinstance(body.get("max_tokens"), int):
            return JSONResponse(error_body(400, "max_tokens: Field required"), status_code=400)
        for m in body.get("messages", []):
            if m.get("role") not in ("user", "assistant"):
                return JSONResponse(error_body(400, f"messages: Unexpected role \"{m.get('role')}\""),
                                    status_code=400)
        return None

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if (err := self._check(request, body)) is not None:
            return err
        model = body["model"]
        last_user = next((m for m in reversed(body["messages"]) if m["role"] == "user"), {"content": ""})
        if isinstance(last_user["content"], list) and any(b.get("type") == "tool_result"
                                                          for b in last_user["content"]):
            answer = "RESULTS: " + ", ".join(
                f"{b['tool_use_id']}={_text_of(b['content'])}" for b in last_user["content"]
                if b.get("type") == "tool_result")
            model_mode = "plain"
        else:
            answer = _text_of(last_user["content"]).upper()
            model_mode = model
        input_tokens = sum(len(_text_of(m["content"]).split()) for m in body["messages"]) + 7
        if body.get("stream"):
            return EventSourceResponse(self._stream(body, model, model_mode, answer, input_tokens), ping=600,
                                       sep="\n")
        content: list[dict] = []
        stop_reason = "end_turn"
        if model_mode == "tool-model":
            content = [{"type": "text", "text": "Let me check."},
                       {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                       {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {"tz": "CET"}}]
            stop_reason = "tool_use"
        else:
            content = [{"type": "text", "text": answer}]
        return JSONResponse({"id": "msg_01Fake", "type": "message", "role": "assistant", "model": model,
                             "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                             "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                                       "cache_read_input_tokens": 0, "output_tokens": 9}})

    async def _stream(self, body: dict, model: str, mode: str, answer: str, input_tokens: int):
        def ev(name: str, payload: dict) -> dict:
            return {"event": name, "data": json.dumps({"type": name, **payload})}

        try:
            yield ev("message_start", {"message": {
                "id": "msg_01Stream", "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "output_tokens": 1}}})
            yield ev("ping", {})
            if mode == "tool-model":
                yield ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
                yield ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Checking."}})
                yield ev("content_block_stop", {"index": 0})
                for block, (tid, name, pieces) in enumerate(
                        [("toolu_01A", "get_weather", ['{"city"', ': "Pa', 'ris"}']),
                         ("toolu_01B", "get_time", ['{"tz": ', '"CET"}'])], start=1):
                    yield ev("content_block_start", {"index": block, "content_block": {
                        "type": "tool_use", "id": tid, "name": name, "input": {}}})
                    yield ev("content_block_delta", {"index": block, "delta": {"type": "input_json_delta",
                                                                              "partial_json": ""}})
                    for piece in pieces:
                        yield ev("content_block_delta", {"index": block, "delta": {"type": "input_json_delta",
                                                                                  "partial_json": piece}})
                    yield ev("content_block_stop", {"index": block})
                stop_reason, deltas = "tool_use", [10, 25]
            else:
                yield ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
                words = answer.split(" ") if answer else [""]
                for i, word in enumerate(words):
                    if mode == "cut-stream" and i == 1:
                        raise ConnectionAbortedError
                    if mode == "overloaded-stream" and i == 1:
                        yield ev("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
                        return
                    yield ev("content_block_delta", {"index": 0, "delta": {
                        "type": "text_delta", "text": word if i == 0 else " " + word}})
                yield ev("content_block_stop", {"index": 0})
                stop_reason, deltas = "end_turn", [len(words) + 2]
            # message_delta usage is cumulative: several of them must not be summed by the client
            for n, out_tokens in enumerate(deltas):
                payload: dict = {"delta": {"stop_reason": stop_reason if n == len(deltas) - 1 else None,
                                           "stop_sequence": None},
                                 "usage": {"output_tokens": out_tokens}}
                yield ev("message_delta", payload)
            yield ev("message_stop", {})
        except ConnectionAbortedError:
            return
        except asyncio.CancelledError:
            raise

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])
