"""What the workers of `--workers N` and the engine host say to each other over the host's Unix socket.

A frame is a 4-byte big-endian length and a JSON array `[id, kind, payload]`. JSON rather than
msgpack because the engines hand vectors back as raw JSON (`msgspec.Raw`): a JSON frame carries
them to the worker unparsed, and the worker splices them into its response as it does in process.

The worker numbers its requests and sends `[id, op, Call]` (op: embed, sparse_embed, rerank, chat,
stream), `[id, "cancel", null]` when its caller has gone, `[id, "forget", Forget]` when an endpoint
changed or went away, and `[id, "watch", null]` to follow the models' status. The host answers a
request with frames of its id: `ok` (the result), `delta` (streamed deltas, as they are produced),
`end`, `error` (a `GatewayError` with its class, status and headers) or `status` (a snapshot).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

import proxy.errors as errors
from proxy.endpoint import Endpoint
from proxy.types import (ChatDelta, ChatRequest, ChatResult, EmbedRequest, EmbedResult, RerankRequest, RerankResult,
                         SparseEmbedResult, Usage)

_HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30  # a frame longer than this is a broken peer, not a request

OK, DELTA, END, ERROR, STATUS = "ok", "delta", "end", "error", "status"
CANCEL, FORGET, WATCH, STREAM = "cancel", "forget", "watch", "stream"

REQUESTS: dict[str, type] = {"embed": EmbedRequest, "sparse_embed": EmbedRequest, "rerank": RerankRequest,
                             "chat": ChatRequest, STREAM: ChatRequest}


class Call(msgspec.Struct, kw_only=True):
    """One backend call: the endpoint as the worker knows it, the request, and what is left of its deadline."""

    endpoint: Endpoint
    request: msgspec.Raw
    timeout: float  # seconds left (a deadline is a monotonic time, meaningful in one process only)
    timeout_text: str
    idle_timeout: float


class Forget(msgspec.Struct, kw_only=True):
    inference_id: str
    endpoint: Endpoint | None = None


class _Embedded(msgspec.Struct, kw_only=True):
    """`EmbedResult` as it crosses: its vectors stay raw JSON (`EmbedResult.vectors` is a union msgspec
    cannot decode, raw or lists)."""

    vectors: list[msgspec.Raw]
    element_type: str = "float"
    usage: Usage | None = None


_NULL = msgspec.Raw(b"null")


# `logprobs: Raw | None` is a union msgspec cannot decode: these take the raw JSON, null included
class _ChatResult(ChatResult, kw_only=True):
    logprobs: msgspec.Raw = _NULL


class _ChatDelta(ChatDelta, kw_only=True):
    logprobs: msgspec.Raw = _NULL


def _canonical(value: Any, cls: type) -> Any:
    fields = {name: getattr(value, name) for name in value.__struct_fields__}
    if bytes(fields["logprobs"]).strip() == b"null":
        fields["logprobs"] = None
    return cls(**fields)


class Failure(msgspec.Struct, kw_only=True):
    classes: list[str]  # the error's class and its bases, most specific first
    state: dict[str, Any]  # its attributes: reason, status, headers, param, messages...


_RESULTS: dict[str, Any] = {"embed": _Embedded, "sparse_embed": SparseEmbedResult, "rerank": RerankResult,
                            "chat": _ChatResult, STREAM: list[_ChatDelta]}
_frame = msgspec.json.Decoder(tuple[int, str, msgspec.Raw])
_encoder = msgspec.json.Encoder()
_decoders = {op: msgspec.json.Decoder(t) for op, t in _RESULTS.items()}
_requests = {op: msgspec.json.Decoder(t) for op, t in REQUESTS.items()}


def encode(rid: int, kind: str, payload: Any) -> bytes:
    body = _encoder.encode((rid, kind, payload))
    return _HEADER.pack(len(body)) + body


async def read(reader: asyncio.StreamReader) -> tuple[int, str, msgspec.Raw]:
    """The next frame; `asyncio.IncompleteReadError` when the peer has gone."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        raise ConnectionError(f"a frame of {size} bytes")
    return _frame.decode(await reader.readexactly(size))


def decode_request(op: str, raw: msgspec.Raw) -> Any:
    return _requests[op].decode(raw)


def decode_result(op: str, raw: msgspec.Raw) -> Any:
    value = _decoders[op].decode(raw)
    if isinstance(value, _Embedded):
        return EmbedResult(vectors=value.vectors, element_type=value.element_type, usage=value.usage)
    if isinstance(value, _ChatResult):
        return _canonical(value, ChatResult)
    if isinstance(value, list):
        return [_canonical(delta, ChatDelta) for delta in value]
    return value


def failure(exc: errors.GatewayError) -> Failure:
    state = {}
    for name, value in vars(exc).items():
        try:
            _encoder.encode(value)
        except (TypeError, msgspec.EncodeError):
            continue
        state[name] = value
    return Failure(classes=[c.__name__ for c in type(exc).__mro__], state=state)


def error(raw: msgspec.Raw) -> errors.GatewayError:
    """The host's error, of the same class (or its nearest base in `proxy.errors`) with the same status,
    headers and reason, so every surface renders it as it would in process."""
    found = msgspec.json.decode(raw, type=Failure)
    cls: type[errors.GatewayError] = errors.GatewayError
    for name in found.classes:
        candidate = getattr(errors, name, None)
        if isinstance(candidate, type) and issubclass(candidate, errors.GatewayError):
            cls = candidate
            break
    exc = cls.__new__(cls)
    Exception.__init__(exc, found.state.get("reason", ""))
    exc.headers = {}
    exc.param = None
    vars(exc).update(found.state)
    return exc
