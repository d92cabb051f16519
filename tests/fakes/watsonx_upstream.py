"""A simulated IBM watsonx.ai with its IBM Cloud IAM token endpoint, written from IBM's public API
description and the recorded bodies in IBM's own SDK tests (no code shared with the adapter).

* `POST /identity/token` (form `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=...`) issues bearer
  tokens for the one API key it knows; a wrong key gets IAM's 400 `BXNIM0415E` body.
* `POST /ml/v1/text/{embeddings,rerank,chat,chat_stream}?version=YYYY-MM-DD` accept only tokens it issued
  and answer in watsonx's shapes; errors are `{"errors":[{code,message,more_info}],"trace","status_code"}`.
* `chat_stream` sends `id:`/`event: message`/`data:` events, a finish chunk, then a usage chunk with
  `"choices": []`, and no `[DONE]`. Model names pick behaviours: "tool-model", "cut-stream",
  "error-stream".
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DIMS = 6
GRANT = "urn:ibm:params:oauth:grant-type:apikey"


def fake_vector(text: str, dims: int = DIMS) -> list[float]:
    digest = hashlib.sha256(("wx:" + text).encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


def wx_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"code": code, "message": message,
                                     "more_info": "https://cloud.ibm.com/apidocs/watsonx-ai"}],
                         "trace": "3c9cfd5d1f5a4c7f8e1b", "status_code": status}, status_code=status)


@dataclass
class FakeWatsonx:
    api_key: str = "ibm-cloud-api-key"
    token_lifetime: int = 3600
    url: str = ""
    tokens: set[str] = field(default_factory=set)
    exchanges: int = 0
    requests: list[dict] = field(default_factory=list)
    queries: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    faults: list[tuple[int, str, dict]] = field(default_factory=list)
    iam_faults: list[int] = field(default_factory=list)
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def iam_url(self) -> str:
        return f"{self.url}/identity/token"

    def fail_next(self, status: int, code: str = "internal_error", message: str = "boom", times: int = 1,
                  headers: dict | None = None) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}], "trace": "t", "status_code": status})
        self.faults.extend((status, body, headers or {}) for _ in range(times))

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    # ------------------------------------------------------------------ IAM

    async def token(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return JSONResponse({"errorCode": "BXNIM0109E", "errorMessage": "Property missing or empty."}, 400)
        form = parse_qs((await request.body()).decode())
        if self.iam_faults:
            status = self.iam_faults.pop(0)
            return JSONResponse({"errorCode": "BXNIM0002E", "errorMessage": "Internal error."}, status)
        if form.get("grant_type") != [GRANT] or form.get("apikey") != [self.api_key]:
            return JSONResponse({"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found.",
                                 "context": {"requestId": "bTlidjk-91c2c5d4", "url": "https://iam.cloud.ibm.com"}},
                                status_code=400)
        self.exchanges += 1
        token = f"wx-token-{next(self._counter)}"
        self.tokens.add(token)
        now = int(time.time())
        return JSONResponse({"access_token": token, "refresh_token": "not_supported", "ims_user_id": 13176852,
                             "token_type": "Bearer", "expires_in": self.token_lifetime,
                             "expiration": now + self.token_lifetime, "scope": "ibm openid"})

    # ------------------------------------------------------------------ watsonx.ai

    async def _check(self, request: Request) -> tuple[dict | None, Response | None]:
        body = await request.json()
        self.requests.append(body)
        self.queries.append(dict(request.query_params))
        self.paths.append(request.url.path)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return body, wx_error(401, "authentication_token_not_valid",
                                  "Failed to authenticate the request due to invalid token: Failed to parse and "
                                  "verify token")
        if not request.query_params.get("version"):
            return body, wx_error(400, "missing_version", "The version parameter is required")
        if not body.get("project_id"):
            return body, wx_error(400, "json_validation_error", "Either 'space_id' or 'project_id' is required")
        if self.faults:
            status, text, headers = self.faults.pop(0)
            return body, Response(text, status_code=status, headers=headers, media_type="application/json")
        return body, None

    async def embeddings(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        inputs = body["inputs"]
        return JSONResponse({"model_id": body["model_id"], "results": [{"embedding": fake_vector(t)} for t in inputs],
                             "created_at": "2025-01-01T00:00:00.000Z",
                             "input_token_count": sum(len(t.split()) for t in inputs)})

    async def rerank(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        words = set(body["query"].lower().split())
        options = body.get("parameters", {}).get("return_options", {})
        results = []
        for i, item in enumerate(body["inputs"]):
            found = words & set(item["text"].lower().split())
            result: dict = {"index": i, "score": round(len(found) - 1.5, 3)}  # raw logits: negatives happen
            if options.get("inputs"):
                result["input"] = {"text": item["text"]}
            results.append(result)
        results.sort(key=lambda r: -r["score"])
        if options.get("top_n"):
            results = results[:options["top_n"]]
        return JSONResponse({"model_id": body["model_id"], "results": results,
                             "created_at": "2025-01-01T00:00:00.000Z", "input_token_count": 12})

    def _answer(self, body: dict) -> str:
        return " ".join(m["content"] for m in body["messages"] if isinstance(m.get("content"), str)).upper()

    async def chat(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        model = body["model_id"]
        message: dict = {"role": "assistant", "content": self._answer(body)}
        finish = "stop"
        if model == "tool-model" and body["messages"][-1]["role"] != "tool":
            message = {"role": "assistant", "tool_calls": [
                {"id": "chatcmpl-tool-1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
            finish = "tool_calls"
        elif model == "tool-model":
            message = {"role": "assistant", "content": f"It is {body['messages'][-1]['content']}."}
        return JSONResponse({"id": "chatcmpl-wx1", "object": "chat.completion", "model_id": model, "model": model,
                             "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                             "created": 1749736055, "model_version": "3.3.0",
                             "created_at": "2025-06-12T13:47:35.541Z",
                             "usage": {"completion_tokens": 5, "prompt_tokens": 7, "total_tokens": 12}})

    async def chat_stream(self, request: Request) -> Response:
        body, err = await self._check(request)
        if err is not None:
            return err
        return EventSourceResponse(self._events(body), ping=600, sep="\n")

    async def _events(self, body: dict):
        model = body["model_id"]
        base = {"id": "chatcmpl-wx2", "object": "chat.completion.chunk", "model_id": model, "model": model,
                "created": 1749736055, "model_version": "3.3.0", "created_at": "2025-06-12T13:47:35.541Z"}
        n = itertools.count(1)

        def event(payload: dict) -> dict:
            return {"id": str(next(n)), "event": "message", "data": json.dumps({**base, **payload})}

        yield event({"choices": [{"index": 0, "finish_reason": None, "delta": {"role": "assistant", "content": ""}}]})
        if model == "tool-model":
            yield event({"choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                {"index": 0, "id": "chatcmpl-tool-1", "type": "function",
                 "function": {"name": "get_weather", "arguments": ""}}]}}]})
            for piece in ('{"city"', ': "Paris"}'):
                yield event({"choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                    {"index": 0, "function": {"name": "", "arguments": piece}}]}}]})
            finish = "tool_calls"
        else:
            answer = self._answer(body)
            for i in range(0, len(answer), 3):
                if model == "cut-stream" and i >= 3:
                    return  # the body ends with neither a finish_reason nor the usage chunk
                if model == "error-stream" and i >= 3:
                    yield {"id": str(next(n)), "event": "error", "data": json.dumps(
                        {"errors": [{"code": "downstream_request_failed", "message": "Model crashed"}],
                         "trace": "t", "status_code": 500})}
                    return
                yield event({"choices": [{"index": 0, "finish_reason": None, "delta": {"content": answer[i:i + 3]}}]})
            finish = "stop"
        yield event({"choices": [{"index": 0, "finish_reason": finish, "delta": {"content": ""}}]})
        yield event({"choices": [], "usage": {"completion_tokens": 4, "prompt_tokens": 9, "total_tokens": 13}})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/identity/token", self.token, methods=["POST"]),
            Route("/ml/v1/text/embeddings", self.embeddings, methods=["POST"]),
            Route("/ml/v1/text/rerank", self.rerank, methods=["POST"]),
            Route("/ml/v1/text/chat", self.chat, methods=["POST"]),
            Route("/ml/v1/text/chat_stream", self.chat_stream, methods=["POST"]),
        ])
