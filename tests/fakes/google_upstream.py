"""A simulated Google AI Studio (Gemini API) upstream, written from Google's public API description.

It shares no code with the adapters. `GeminiSim` answers GenerateContentRequests and is reused by
the Vertex AI fake (same body on other URLs). The model name picks a behaviour: "tool-model" calls
a function (then answers once it receives the function's response), "cut-stream" ends the stream
before any finishReason, "error-stream" sends an error object mid-stream, "thinking" reports
thought tokens. `fail_next` queues error answers.
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
# the exact bytes of the arguments the fake's function call carries: clients must pass them on intact
TOOL_ARGS = '{"city": "Paris", "days": 3, "units": {"temp": "C"}}'


def fake_vector(text: str, dims: int = DIMS) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest() * 4
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


def google_error(code: int, message: str, status: str, details: list | None = None) -> dict:
    err: dict = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return {"error": err}


def rate_limited(delay: str = "0s") -> dict:
    return google_error(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED", [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}])


@dataclass
class Fault:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def _check_contents(body: dict) -> None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
    for i, c in enumerate(contents):
        if c.get("role") not in ("user", "model"):
            raise BadRequest(f"Please use a valid role: user, model. (contents[{i}])")
        parts = c.get("parts")
        if not isinstance(parts, list) or not parts:
            raise BadRequest(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        for p in parts:
            if "text" in p and p["text"] == "":
                raise BadRequest(f"* GenerateContentRequest.contents[{i}].parts: text must not be empty")
    config = body.get("generationConfig") or {}
    if config.get("candidateCount", 1) != 1:
        raise BadRequest("Only one candidate can be specified")
    if "model" in body:
        raise BadRequest('Invalid JSON payload received. Unknown name "model"')


@dataclass
class GeminiSim:
    """What a Gemini model says to a GenerateContentRequest."""

    requests: list[dict] = field(default_factory=list)
    stream_pieces: int = 4

    def answer(self, model: str, body: dict) -> tuple[list[dict], str, dict]:
        """(parts, finishReason, usageMetadata) of the whole answer."""
        _check_contents(body)
        contents = body["contents"]
        prompt = " ".join(p["text"] for c in contents if c["role"] == "user" for p in c["parts"] if "text" in p)
        system = " ".join(p["text"] for p in (body.get("systemInstruction") or {}).get("parts", []))
        last = contents[-1]["parts"]
        responses = [p["functionResponse"] for p in last if "functionResponse" in p]
        if model == "tool-model" and responses:
            answer = "RESULT " + json.dumps([r["response"] for r in responses], sort_keys=True)
            parts = [{"text": answer}]
        elif model == "tool-model" and body.get("tools"):
            name = body["tools"][0]["functionDeclarations"][0]["name"]
            parts = [{"functionCall": {"name": name, "args": "__ARGS__"}, "thoughtSignature": "c2lnbmF0dXJl"}]
            answer = ""
        else:
            answer = (f"[{system}] " if system else "") + prompt.upper()
            parts = [{"text": answer}]
        thoughts = 7 if model == "thinking" else 0
        prompt_tokens = len(prompt.split()) + len(system.split())
        out_tokens = max(1, len(answer.split()))
        usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": out_tokens,
                 "totalTokenCount": prompt_tokens + out_tokens + thoughts}
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return parts, "STOP", usage

    @staticmethod
    def encode(obj: dict) -> str:
        # function-call args are written as the exact TOOL_ARGS bytes
        return json.dumps(obj).replace('"__ARGS__"', TOOL_ARGS)

    def generate(self, model: str, body: dict) -> Response:
        self.requests.append(body)
        try:
            parts, finish, usage = self.answer(model, body)
        except BadRequest as exc:
            return JSONResponse(google_error(400, exc.message, "INVALID_ARGUMENT"), status_code=400)
        resp = {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}],
                "usageMetadata": usage, "modelVersion": f"{model}-001", "responseId": "resp-fake-1"}
        return Response(self.encode(resp), media_type="application/json")

    def stream(self, model: str, body: dict) -> Response:
        self.requests.append(body)
        try:
            parts, finish, usage = self.answer(model, body)
        except BadRequest as exc:
            return JSONResponse(google_error(400, exc.message, "INVALID_ARGUMENT"), status_code=400)
        return EventSourceResponse(self._chunks(model, parts, finish, usage), ping=600, sep="\r\n")

    async def _chunks(self, model: str, parts: list[dict], finish: str, usage: dict):
        base = {"modelVersion": f"{model}-001", "responseId": "resp-fake-1"}
        pieces: list[list[dict]]
        if "text" in parts[0]:
            text = parts[0]["text"]
            n = self.stream_pieces
            size = max(1, -(-len(text) // n))
            pieces = [[{"text": text[i:i + size]}] for i in range(0, len(text), size)] or [[{"text": ""}]]
        else:
            pieces = [parts]
        total_out = usage["candidatesTokenCount"]
        for i, piece in enumerate(pieces):
            if model == "cut-stream" and i == 2:
                return  # the connection closes before any finishReason
            if model == "error-stream" and i == 1:
                yield json.dumps(google_error(500, "Internal error encountered.", "INTERNAL"))
                return
            last = i == len(pieces) - 1
            cand: dict = {"content": {"parts": piece, "role": "model"}, "index": 0}
            if last:
                cand["finishReason"] = finish
            # usageMetadata is cumulative and repeated in every chunk
            out = total_out if last else max(1, total_out * (i + 1) // len(pieces))
            chunk_usage = {**usage, "candidatesTokenCount": out,
                           "totalTokenCount": usage["totalTokenCount"] - total_out + out}
            yield self.encode({"candidates": [cand], "usageMetadata": chunk_usage, **base})


@dataclass
class FakeGoogleAiStudio:
    api_key: str = "AIza-test-key"
    sim: GeminiSim = field(default_factory=GeminiSim)
    embed_requests: list[dict] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    @property
    def requests(self) -> list[dict]:
        return self.sim.requests

    def fail_next(self, status: int, body: dict, times: int = 1, headers: dict | None = None) -> None:
        self.faults.extend(Fault(status, json.dumps(body), headers or {}) for _ in range(times))

    def _check(self, request: Request) -> Response | None:
        self.urls.append(str(request.url))
        key = request.query_params.get("key") or request.headers.get("x-goog-api-key")
        if not key:
            return JSONResponse(google_error(
                403, "Method doesn't allow unregistered callers (callers without established identity). Please use "
                     "API Key or other form of API consumer identity to call this API.", "PERMISSION_DENIED"),
                status_code=403)
        if key != self.api_key:
            return JSONResponse(google_error(400, "API key not valid. Please pass a valid API key.",
                                             "INVALID_ARGUMENT", [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                                   "reason": "API_KEY_INVALID"}]), status_code=400)
        if self.faults:
            fault = self.faults.pop(0)
            return Response(fault.body, status_code=fault.status, headers=fault.headers,
                            media_type="application/json")
        return None

    async def model_action(self, request: Request) -> Response:
        model, _, action = request.path_params["target"].rpartition(":")
        body = await request.json()
        if (err := self._check(request)) is not None:
            self.sim.requests.append(body)
            return err
        if action == "batchEmbedContents":
            return self.embed(model, body)
        if action == "generateContent":
            return self.sim.generate(model, body)
        if action == "streamGenerateContent":
            if request.query_params.get("alt") != "sse":
                return JSONResponse(google_error(400, "this fake only streams with alt=sse", "INVALID_ARGUMENT"),
                                    status_code=400)
            return self.sim.stream(model, body)
        return JSONResponse(google_error(404, f"Method not found: {action}", "NOT_FOUND"), status_code=404)

    def embed(self, model: str, body: dict) -> Response:
        self.embed_requests.append(body)
        requests = body.get("requests") or []
        if len(requests) > 100:
            return JSONResponse(google_error(
                400, "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n",
                "INVALID_ARGUMENT"), status_code=400)
        out = []
        for item in requests:
            if item.get("model") != f"models/{model}":
                return JSONResponse(google_error(
                    400, "* BatchEmbedContentsRequest.model: unexpected model name format\n", "INVALID_ARGUMENT"),
                    status_code=400)
            text = " ".join(p["text"] for p in item["content"]["parts"])
            out.append({"values": fake_vector(text, item.get("outputDimensionality", DIMS))})
        return JSONResponse({"embeddings": out})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1beta/models/{target}", self.model_action, methods=["POST"])])
