"""Simulated Amazon Bedrock Runtime and SageMaker Runtime upstreams.

Written from AWS's public API descriptions and sharing no code with `adapters/aws.py`: every request
must carry a valid Signature Version 4, which is recomputed here from the request as received (raw
path, query, the headers named in SignedHeaders, the body); streams are AWS event streams whose
frames are built here, CRC32s included. Errors are AWS REST-JSON errors with `x-amzn-ErrorType`.

Bedrock picks a behaviour from the model id ("cut-stream", "exception-stream", "partial-frame");
SageMaker from the endpoint name (`<api>-<task>[-<variant>]`, e.g. "openai-chat", "elastic-embed-byte").
`fail_next` queues error answers for the next requests.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import parse_qsl, quote, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DIMS = 8
EVENTSTREAM = "application/vnd.amazon.eventstream"
PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
TOOL_INPUT = {"city": "Paris", "units": "celsius", "nested": {"list": [1, 2.5, "ü"], "flag": True}}


def fake_vector(text: str, dims: int = DIMS) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:dims]]


# ------------------------------------------------------------------------------ SigV4 verification


def _enc(text: str) -> str:
    return quote(text, safe="-_.~")


def _canonical_path(raw_path: str) -> str:
    parts = [p for p in raw_path.split("/") if p not in ("", ".")]
    return "/" + "/".join(_enc(_enc(unquote(p))) for p in parts)


def _canonical_query(raw_query: str) -> str:
    items = sorted((_enc(k), _enc(v)) for k, v in parse_qsl(raw_query, keep_blank_values=True))
    return "&".join(k + "=" + v for k, v in items)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass
class AwsKey:
    access_key: str
    secret_key: str
    session_token: str | None = None


_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
                   r"\s*Signature=(?P<sig>[0-9a-f]{64})$")


def verify_sigv4(request: Request, body: bytes, keys: dict[str, AwsKey], region: str,
                 service: str) -> tuple[int, str, str] | None:
    """None when the signature is valid, else (status, x-amzn-ErrorType, message) as AWS answers."""
    auth = request.headers.get("authorization")
    if not auth:
        return 403, "MissingAuthenticationTokenException", "Missing Authentication Token"
    m = _AUTH.match(auth)
    if not m:
        return 403, "IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and " \
                                                    "'SignedHeaders' parameters."
    akid, date, cred_region, cred_service, terminal = (m["cred"].split("/") + ["", "", "", "", ""])[:5]
    key = keys.get(akid)
    if key is None:
        return 403, "UnrecognizedClientException", "The security token included in the request is invalid."
    if terminal != "aws4_request" or cred_service != service:
        return 403, "InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'. "
    if cred_region != region:
        return 403, "InvalidSignatureException", "Credential should be scoped to a valid region. "
    stamp = request.headers.get("x-amz-date", "")
    if not re.fullmatch(r"\d{8}T\d{6}Z", stamp) or stamp[:8] != date:
        return 403, "IncompleteSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 " \
                                                    "version of date from HTTP"
    if abs(time.time() - calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))) > 15 * 60:
        return 403, "InvalidSignatureException", f"Signature expired: {stamp} is now earlier than the allowed window."
    signed = m["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed or signed != sorted(signed):
        return 403, "InvalidSignatureException", "The request signature we calculated does not match the signature " \
                                                 "you provided."
    token = request.headers.get("x-amz-security-token")
    if key.session_token is not None and (token != key.session_token or "x-amz-security-token" not in signed):
        return 403, "UnrecognizedClientException", "The security token included in the request is invalid."
    lines = [request.method, _canonical_path(request.scope["raw_path"].decode("latin-1")),
             _canonical_query(request.scope.get("query_string", b"").decode("latin-1"))]
    for name in signed:
        values = request.headers.getlist(name)
        if not values:
            return 403, "InvalidSignatureException", f"The request signature we calculated does not match the " \
                                                     f"signature you provided. Signed header [{name}] is missing."
        lines.append(name + ":" + ",".join(" ".join(v.split()) for v in values))
    lines += ["", ";".join(signed), hashlib.sha256(body).hexdigest()]
    canonical = "\n".join(lines)
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    k = _hmac(_hmac(_hmac(_hmac(("AWS4" + key.secret_key).encode(), date), region), service), "aws4_request")
    expected = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m["sig"]):
        return 403, "InvalidSignatureException", (
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
            "Access Key and signing method. Consult the service documentation for details.")
    return None


# ------------------------------------------------------------------------------ event-stream frames


def _header(name: str, value: Any) -> bytes:
    raw = name.encode()
    out = bytes([len(raw)]) + raw
    if isinstance(value, bool):
        return out + bytes([0 if value else 1])
    if isinstance(value, int):
        return out + b"\x04" + struct.pack(">i", value)
    data = str(value).encode()
    return out + b"\x07" + struct.pack(">H", len(data)) + data


def frame(headers: dict[str, Any], payload: bytes) -> bytes:
    """One `application/vnd.amazon.eventstream` message."""
    block = b"".join(_header(k, v) for k, v in headers.items())
    total = 16 + len(block) + len(payload)
    prelude = struct.pack(">II", total, len(block))
    head = prelude + struct.pack(">I", zlib.crc32(prelude))
    body = head + block + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, payload: dict | bytes, content_type: str = "application/json") -> bytes:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return frame({":event-type": event_type, ":content-type": content_type, ":message-type": "event"}, data)


def exception(exception_type: str, message: str, key: str = "message") -> bytes:
    return frame({":exception-type": exception_type, ":content-type": "application/json",
                  ":message-type": "exception"}, json.dumps({key: message}).encode())


def _in_pieces(frames: Iterable[bytes]):
    """Frames as the wire carries them: each cut in two at an odd place."""
    for f in frames:
        cut = max(1, len(f) // 3)
        yield f[:cut]
        yield f[cut:]


@dataclass
class Fault:
    status: int
    error_type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    body: dict | None = None


class _AwsFake:
    service = ""
    message_key = "message"

    def __init__(self, region: str = "us-east-1", access_key: str = "AKIDFAKEEXAMPLE",
                 secret_key: str = "fake/secret+KEY0123456789", session_token: str | None = None) -> None:
        self.region = region
        self.key = AwsKey(access_key, secret_key, session_token)
        self.requests: list[dict] = []
        self.seen: list[dict] = []  # path and headers of every request
        self.faults: list[Fault] = []
        self.url = ""

    def fail_next(self, status: int, error_type: str, message: str, times: int = 1,
                  headers: dict | None = None, body: dict | None = None) -> None:
        self.faults.extend(Fault(status, error_type, message, headers or {}, body) for _ in range(times))

    def error(self, status: int, error_type: str, message: str, headers: dict | None = None,
              body: dict | None = None) -> Response:
        return JSONResponse(body if body is not None else {self.message_key: message}, status_code=status,
                            headers={"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon/",
                                     "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000", **(headers or {})})

    async def _admit(self, request: Request) -> tuple[Any, Response | None]:
        raw = await request.body()
        self.seen.append({"path": request.scope["raw_path"].decode(), "headers": dict(request.headers)})
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(body)
        failure = verify_sigv4(request, raw, {self.key.access_key: self.key}, self.region, self.service)
        if failure is not None:
            return body, self.error(*failure)
        if self.faults:
            f = self.faults.pop(0)
            return body, self.error(f.status, f.error_type, f.message, f.headers, f.body)
        if body is None:
            return body, self.error(400, "ValidationException", "Malformed input request, please reformat your "
                                                                "input and try again.")
        return body, None


# ------------------------------------------------------------------------------ Bedrock


def _texts(blocks: list[dict]) -> list[str]:
    return [b["text"] for b in blocks if "text" in b]


class FakeBedrock(_AwsFake):
    service = "bedrock"

    def _validate_converse(self, body: dict) -> str | None:
        allowed = {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields",
                   "requestMetadata", "outputConfig"}
        if set(body) - allowed:
            return f"Malformed input request: extraneous key [{sorted(set(body) - allowed)[0]}] is not permitted"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "A conversation must start with a user message. Try again with a conversation that starts " \
                   "with a user message."
        if messages[0].get("role") != "user":
            return "A conversation must start with a user message. Try again with a conversation that starts " \
                   "with a user message."
        for prev, cur in zip(messages, messages[1:]):
            if prev.get("role") == cur.get("role"):
                return "A conversation must alternate between user and assistant roles. Make sure the " \
                       "conversation alternates between user and assistant roles and try again."
        uses_tools = False
        for m in messages:
            if not isinstance(m.get("content"), list) or not m["content"]:
                return "The content field in the Message object at messages.0 is empty."
            for block in m["content"]:
                if len(block) != 1 or next(iter(block)) not in ("text", "image", "toolUse", "toolResult"):
                    return f"Malformed input request: unknown content block {sorted(block)}"
                uses_tools = uses_tools or "toolUse" in block or "toolResult" in block
                if "toolUse" in block and not isinstance(block["toolUse"].get("input"), dict):
                    return "Malformed input request: toolUse.input must be an object"
        if uses_tools and "toolConfig" not in body:
            return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        config = body.get("inferenceConfig", {})
        if set(config) - {"maxTokens", "temperature", "topP", "stopSequences"}:
            return "Malformed input request: unknown inferenceConfig key"
        return None

    def _answer(self, body: dict) -> tuple[list[dict], str]:
        """(content blocks, stopReason) of the assistant's answer."""
        last = body["messages"][-1]
        results = [b["toolResult"] for b in last["content"] if "toolResult" in b]
        if results:
            text = "Result: " + " ".join(t for r in results for t in _texts(r.get("content", [])))
            return [{"text": text}], "end_turn"
        tools = (body.get("toolConfig") or {}).get("tools") or []
        if tools:
            name = tools[0]["toolSpec"]["name"]
            return [{"text": "Let me check."},
                    {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": name,
                                 "input": TOOL_INPUT}}], "tool_use"
        text = " ".join(_texts(last["content"])).upper()
        text_format = (body.get("outputConfig") or {}).get("textFormat")
        if text_format:  # structured output: an object with each required property set to the prompt
            schema = json.loads(text_format["structure"]["jsonSchema"]["schema"])
            text = json.dumps({name: text for name in schema.get("required", [])})
        return [{"text": text}], "end_turn"

    @staticmethod
    def _usage(body: dict, blocks: list[dict]) -> dict:
        words = sum(len(t.split()) for m in body["messages"] for t in _texts(m["content"]))
        out = sum(len(t.split()) for t in _texts(blocks)) + 1
        return {"inputTokens": words, "outputTokens": out, "totalTokens": words + out}

    async def converse(self, request: Request) -> Response:
        body, err = await self._admit(request)
        if err is not None:
            return err
        problem = self._validate_converse(body)
        if problem:
            return self.error(400, "ValidationException", problem)
        blocks, stop = self._answer(body)
        return JSONResponse({"output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop,
                             "usage": self._usage(body, blocks), "metrics": {"latencyMs": 42}})

    async def converse_stream(self, request: Request) -> Response:
        body, err = await self._admit(request)
        if err is not None:
            return err
        problem = self._validate_converse(body)
        if problem:
            return self.error(400, "ValidationException", problem)
        model = request.path_params["model_id"]
        blocks, stop = self._answer(body)
        return StreamingResponse(_in_pieces(self._stream_frames(model, body, blocks, stop)), media_type=EVENTSTREAM,
                                 headers={"x-amzn-RequestId": "11111111-1111-1111-1111-111111111111"})

    def _stream_frames(self, model: str, body: dict, blocks: list[dict], stop: str):
        yield event("messageStart", {"p": PADDING[:7], "role": "assistant"})
        for index, block in enumerate(blocks):
            if "text" in block:
                text = block["text"]
                pieces = [text[i:i + 3] for i in range(0, len(text), 3)] or [""]
                for n, piece in enumerate(pieces):
                    if model == "cut-stream" and n == 2:
                        return  # the body ends without messageStop and metadata
                    if model == "partial-frame" and n == 2:
                        yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}})[:20]
                        return
                    if model == "exception-stream" and n == 1:
                        yield exception("modelStreamErrorException", "The model stream failed: upstream reset")
                        return
                    yield event("contentBlockDelta", {"p": PADDING[:n % 9], "contentBlockIndex": index,
                                                      "delta": {"text": piece}})
            else:
                use = block["toolUse"]
                yield event("contentBlockStart", {"contentBlockIndex": index, "p": PADDING[:3], "start": {
                    "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}})
                args = json.dumps(use["input"])
                for i in range(0, len(args), 5):
                    yield event("contentBlockDelta", {"contentBlockIndex": index,
                                                      "delta": {"toolUse": {"input": args[i:i + 5]}}})
            yield event("contentBlockStop", {"contentBlockIndex": index, "p": PADDING[:2]})
        yield event("messageStop", {"p": PADDING[:4], "stopReason": stop})
        yield event("metadata", {"metrics": {"latencyMs": 77}, "p": PADDING[:5], "usage": self._usage(body, blocks)})

    async def invoke(self, request: Request) -> Response:
        body, err = await self._admit(request)
        if err is not None:
            return err
        model = request.path_params["model_id"]
        if request.headers.get("content-type") != "application/json":
            return self.error(400, "ValidationException", "Unsupported content type")
        if model.startswith("amazon.titan-embed"):
            extra = set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"}
            if not isinstance(body.get("inputText"), str) or extra:
                return self.error(400, "ValidationException",
                                  f"Malformed input request: #: extraneous key [{sorted(extra)[0] if extra else ''}] "
                                  f"is not permitted, please reformat your input and try again.")
            dims = body.get("dimensions", DIMS)
            text = body["inputText"]
            return JSONResponse({"embedding": fake_vector(text, dims), "inputTextTokenCount": len(text.split())})
        if model.startswith("cohere.embed"):
            texts = body.get("texts")
            if "input_type" not in body:
                return self.error(400, "ValidationException", "Malformed input request: #: required key "
                                                              "[input_type] not found, please reformat your input")
            if not isinstance(texts, list) or not 0 < len(texts) <= 96:
                return self.error(400, "ValidationException", "Malformed input request: #/texts: expected maximum "
                                                              "item count: 96")
            prefix = body["input_type"][:8] + ":"
            return JSONResponse({"embeddings": [fake_vector(prefix + t) for t in texts], "id": "emb-1",
                                 "response_type": "embeddings_floats", "texts": texts})
        return self.error(400, "ValidationException", "The provided model identifier is invalid.")

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/model/{model_id:path}/converse-stream", self.converse_stream, methods=["POST"]),
            Route("/model/{model_id:path}/converse", self.converse, methods=["POST"]),
            Route("/model/{model_id:path}/invoke", self.invoke, methods=["POST"]),
        ])


# ------------------------------------------------------------------------------ SageMaker


class FakeSageMaker(_AwsFake):
    service = "sagemaker"
    message_key = "Message"  # SageMaker Runtime errors: {"ErrorCode"?, "Message"}

    def _check_headers(self, request: Request, stream: bool) -> Response | None:
        accept = request.headers.get("x-amzn-sagemaker-accept" if stream else "accept")
        if request.headers.get("content-type") != "application/json" or accept != "application/json":
            return self.error(400, "ValidationError", "Content type or accept header not supported by the model")
        if stream and "x-amzn-sagemaker-target-model" in request.headers:
            return self.error(400, "ValidationError", "TargetModel is not a parameter of this operation")
        return None

    @staticmethod
    def _inputs(body: dict) -> list[str]:
        value = body.get("input")
        return value if isinstance(value, list) else [value]

    async def invoke(self, request: Request) -> Response:
        body, err = await self._admit(request)
        if err is not None:
            return err
        name = request.path_params["name"]
        if (err := self._check_headers(request, stream=False)) is not None:
            return err
        if name == "model-error":
            return self.error(424, "ModelError", "Received client error (400) from primary with message "
                                                 "\"bad input\". See https://console.aws.amazon.com/ for more.",
                              body={"ErrorCode": "CLIENT_ERROR_FROM_MODEL", "OriginalStatusCode": 400,
                                    "OriginalMessage": "bad input",
                                    "Message": "Received client error (400) from primary with message \"bad input\"."})
        api, _, task = name.partition("-")
        if api == "openai" and task == "embed":
            if "model" in body or "input_type" in body:
                return self.error(424, "ModelError", "unexpected field")
            inputs = self._inputs(body)
            dims = body.get("dimensions", DIMS)
            data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, dims)} for i, t in enumerate(inputs)]
            return JSONResponse({"object": "list", "data": data[::-1], "model": "e5",
                                 "usage": {"prompt_tokens": 4, "total_tokens": 4}})
        if api == "openai" and task.startswith("chat"):
            return JSONResponse(self._chat_completion(body))
        if api == "elastic":
            return JSONResponse(self._elastic(task, body))
        return self.error(400, "ValidationError", f"Endpoint {name} of account 123456789012 not found.")

    def _chat_completion(self, body: dict) -> dict:
        last = body["messages"][-1]
        if body.get("tools") and last.get("role") != "tool":
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": body["tools"][0]["function"]["name"], "arguments": json.dumps(TOOL_INPUT)}}]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": str(last.get("content")).upper()}
            finish = "stop"
        return {"id": "chatcmpl-sm", "object": "chat.completion", "created": int(time.time()), "model": "tgi",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}

    def _elastic(self, task: str, body: dict) -> dict:
        inputs = self._inputs(body)
        if task.startswith("embed"):
            kind = task.partition("-")[2] or "float"
            if kind == "float":
                return {"text_embedding": [{"embedding": fake_vector(t)} for t in inputs]}
            ints = [[int(x * 200) for x in fake_vector(t)] for t in inputs]
            key = "text_embedding_bytes" if kind == "byte" else "text_embedding_bits"
            return {key: [{"embedding": v} for v in ints]}
        if task == "sparse":
            return {"sparse_embedding": [{"is_truncated": False, "embedding": {w: round(1 / (i + 1), 3) for i, w in
                                                                                 enumerate(t.lower().split())}}
                                         for t in inputs]}
        if task == "rerank":
            words = set(body["query"].lower().split())
            ranked = [{"index": i, "relevance_score": len(words & set(d.lower().split())) / max(1, len(words))}
                      for i, d in enumerate(inputs)]
            if body.get("return_documents"):
                for r in ranked:
                    r["text"] = inputs[r["index"]]
            ranked.sort(key=lambda r: -r["relevance_score"])
            return {"rerank": ranked[:body["top_n"]] if body.get("top_n") else ranked}
        if task == "completion":
            return {"completion": [{"result": t.upper()} for t in inputs]}
        return self._chat_completion(body)

    async def invoke_stream(self, request: Request) -> Response:
        body, err = await self._admit(request)
        if err is not None:
            return err
        if (err := self._check_headers(request, stream=True)) is not None:
            return err
        name = request.path_params["name"]
        return StreamingResponse(_in_pieces(self._stream_frames(name, body)), media_type=EVENTSTREAM)

    def _stream_frames(self, name: str, body: dict):
        api, _, task = name.partition("-")
        if api == "elastic" and task == "completion":
            for t in self._inputs(body):
                for i in range(0, len(t), 4):
                    yield event("PayloadPart", json.dumps({"completion": [{"delta": t[i:i + 4].upper()}]}).encode(),
                                "application/octet-stream")
            return
        chunks = list(self._chunks(body))
        if api == "elastic":
            for c in chunks:
                yield event("PayloadPart", json.dumps(c).encode(), "application/octet-stream")
            return
        # api=openai: the container's SSE text, cut into parts that do not respect event boundaries
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
        if task.endswith("cut"):
            text = text[:text.rindex("data: ", 0, text.index('"finish_reason": "'))]  # no end, no [DONE]
        else:
            text += "data: [DONE]\n\n"
        raw = text.encode()
        step = 23
        for n, i in enumerate(range(0, len(raw), step)):
            if task.endswith("streamerror") and n == 8:  # after the first whole chunk
                yield exception("ModelStreamError", "Model stream error: container exited", key="Message")
                return
            yield event("PayloadPart", raw[i:i + step], "application/octet-stream")

    def _chunks(self, body: dict):
        base = {"id": "chatcmpl-sm", "object": "chat.completion.chunk", "created": 1, "model": "tgi"}
        answer = self._chat_completion(body)["choices"][0]
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        if answer["finish_reason"] == "tool_calls":
            call = answer["message"]["tool_calls"][0]
            yield {**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": call["id"], "type": "function",
                 "function": {"name": call["function"]["name"], "arguments": ""}}]}}]}
            args = call["function"]["arguments"]
            for i in range(0, len(args), 6):
                yield {**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                    {"index": 0, "function": {"arguments": args[i:i + 6]}}]}}]}
        else:
            text = answer["message"]["content"]
            for i in range(0, len(text), 3):
                yield {**base, "choices": [{"index": 0, "delta": {"content": text[i:i + 3]}}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": answer["finish_reason"]}]}
        if (body.get("stream_options") or {}).get("include_usage"):
            yield {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/endpoints/{name}/invocations-response-stream", self.invoke_stream, methods=["POST"]),
            Route("/endpoints/{name}/invocations", self.invoke, methods=["POST"]),
        ])
