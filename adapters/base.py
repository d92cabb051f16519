"""The adapter contract: pure translation between canonical types and one provider's wire format.

An adapter never opens a socket. It builds `UpstreamRequest`s, parses response bodies, turns stream
frames into canonical deltas and extracts the provider's error message; `proxy.backends` does the
I/O, retries, batching and rate limiting around it.
"""

from __future__ import annotations

import re
from types import TracebackType
from urllib.parse import urlsplit
from typing import Any, ClassVar, Mapping, Protocol

import msgspec

# The core types an adapter works with, importable from here for every adapter module.
from proxy.chat_params import check as check_chat_params
from proxy.chat_params import unsupported  # re-exported: adapters import it from here
from proxy.contract import Framing, StreamWire, UpstreamRequest
from proxy.errors import StatusError, StreamCut, ValidationError, malformed
from proxy.sse import FrameDecoder, NDJSONDecoder, SSEDecoder, SSEEvent
from proxy.types import (CanonicalRequest, ChatDelta, ChatRequest, ChatResult, EmbedPart, EmbedRequest, EmbedResult,
                         InputType, RerankRequest, RerankResult, SparseEmbedResult, TaskType)


class ProviderError(msgspec.Struct, kw_only=True):
    """What a provider said in an error body."""

    message: str | None = None
    type: str | None = None
    code: str | None = None
    # None: decided by the status (Adapter.retry_statuses); a provider may know better from the body
    retryable: bool | None = None
    # seconds to wait, for providers that say so in the body rather than in a Retry-After header
    retry_after: float | None = None


class StreamParser(Protocol):
    def feed(self, frame: Any) -> list[ChatDelta]:
        """One decoded frame (an `SSEEvent`, an NDJSON line or an event-stream message) to deltas."""

    def finish(self) -> list[ChatDelta]:
        """The upstream closed; raise `StreamCut` if it ended without its terminator."""


class StreamReader(Protocol):
    """An upstream stream's bytes to deltas, read by read: a stream decoder and parser together."""

    def feed(self, chunk: bytes, out: list[ChatDelta]) -> None:
        """Appends the deltas of the frames that `chunk` completes to `out`; when it raises, the deltas of the
        frames before the failing one are in `out` already."""

    def close(self, out: list[ChatDelta]) -> None:
        """The upstream closed: the last frame's deltas, then the parser's end check (`finish`)."""


class FramedReader:
    """The reader of every adapter that does not fuse the two: its decoder's frames through its parser."""

    __slots__ = ("decoder", "parser")

    def __init__(self, decoder: FrameDecoder, parser: StreamParser) -> None:
        self.decoder = decoder
        self.parser = parser

    def feed(self, chunk: bytes, out: list[ChatDelta]) -> None:
        parse = self.parser.feed
        for frame in self.decoder.feed(chunk):
            out.extend(parse(frame))

    def close(self, out: list[ChatDelta]) -> None:
        for frame in self.decoder.close():
            out.extend(self.parser.feed(frame))
        out.extend(self.parser.finish())


class EndpointView(Protocol):
    """What an adapter may know of an endpoint (a `proxy.registry.Endpoint` satisfies it)."""

    inference_id: str
    task_type: TaskType
    service: str
    service_settings: dict[str, Any]
    task_settings: dict[str, Any]
    secrets: dict[str, Any]


_generic_error = msgspec.json.Decoder(Any)


def generic_error(body: bytes) -> ProviderError | None:
    """The common error shapes: `{"error": {"message"...}}`, `{"error": "..."}`, `{"message": ...}`, `{"detail": ...}`."""
    try:
        data = _generic_error.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return ProviderError(message=text[:500]) if text else None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        code = err.get("code")
        return ProviderError(message=_text(err.get("message")), type=_text(err.get("type")),
                             code=None if code is None else str(code))
    if isinstance(err, str):
        return ProviderError(message=err, type=_text(data.get("error_type")))
    for key in ("message", "detail", "errors"):
        if key in data:
            return ProviderError(message=_text(data[key]))
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


class decoding:
    """`with decoding():` around a response parser: a body that does not decode into the shape the provider
    documents is the upstream's fault, reported as 502 (`malformed`), never as the gateway's 500."""

    __slots__ = ("what", "also")

    def __init__(self, what: str = "response", also: tuple[type[Exception], ...] = ()) -> None:
        self.what = what
        self.also = also  # further exceptions a parser raises on a wrong shape (KeyError on a missing key)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if kind is not None and issubclass(kind, (msgspec.DecodeError, msgspec.ValidationError, *self.also)):
            raise malformed(self.what) from None
        return False


def reject_input_type(input_type: InputType | None) -> None:
    """ES `validateInputTypeIsUnspecifiedOrInternal` for services without an input type."""
    if input_type is not None:
        raise ValidationError(f"Invalid input_type [{input_type.value}]. The input_type option is not supported "
                              f"by this service")


def map_input_type(input_type: InputType | None, mapping: Mapping[InputType, str], service: str) -> str | None:
    if input_type is None:
        return None
    try:
        return mapping[input_type]
    except KeyError:
        raise ValidationError(f"Input type [{input_type.value}] is not supported for [{service}]") from None


def single_part(group: list[EmbedPart], service: str) -> EmbedPart:
    """The one item of an `embedding` input, for providers that embed one text or one image per input."""
    if len(group) != 1:
        raise StatusError(f"The [{service}] service embeds one item per input; several items in one content "
                          f"object are not supported")
    return group[0]


def split_data_uri(value: str) -> tuple[str | None, str]:
    """(media type, base64 payload) of a `data:` URI; (None, value) for plain base64."""
    if value.startswith("data:") and "," in value:
        head, data = value.split(",", 1)
        return head[5:].split(";", 1)[0] or None, data
    return None, value


def host_region(url: Any, pattern: str) -> str | None:
    """The region named in a URL's host, by a pattern with one group (for `data_location`)."""
    if not isinstance(url, str):
        return None
    m = re.search(pattern, urlsplit(url if "//" in url else f"//{url}").hostname or "")
    return m.group(1) if m else None


class Adapter:
    """Base for all adapters. An adapter serves the tasks whose methods it defines (`tasks()`): the
    request builder and response parser of each task below, and a stream parser for chat."""

    service: ClassVar[str]
    framing: ClassVar[Framing] = Framing.SSE
    # The client API whose stream format the provider's stream already is, event for event: a client of that
    # API then gets the events passed through (`proxy.wire.openai_relay`); None: always parsed and rendered
    stream_wire: ClassVar[StreamWire | None] = None
    # Largest number of inputs one upstream embedding call may carry; None: no known limit.
    embed_batch_size: ClassVar[int | None] = None
    # Statuses worth retrying for this provider (429 and 5xx by default).
    retry_statuses: ClassVar[frozenset[int]] = frozenset({408, 429, 500, 502, 503, 504, 529})
    # The optional chat parameters (`proxy.chat_params.OPTIONAL`) this adapter maps, and the names in
    # `ChatRequest.extra` it maps (None: it passes them all on verbatim)
    chat_params: ClassVar[frozenset[str]] = frozenset()
    extra_params: ClassVar[frozenset[str] | None] = frozenset()

    def __init__(self, endpoint: EndpointView) -> None:
        self.endpoint = endpoint
        self.task = endpoint.task_type

    # True when the adapter maps a chat request's `reasoning` to its provider; otherwise `check_chat` refuses it
    maps_reasoning: ClassVar[bool] = False

    # True when the provider's embeddings API takes arrays of token ids as inputs: a client's token ids
    # (`EmbedRequest.token_ids`) then go to it as they came, and their decoded text to the others
    takes_token_ids: ClassVar[bool] = False

    # True when the adapter serves the `embedding` task itself (content parts, `embeds_images`); otherwise
    # an `embedding` endpoint is served through this adapter's text_embedding path, for text only
    handles_embedding_task: ClassVar[bool] = False

    @classmethod
    def tasks(cls) -> frozenset[TaskType]:
        """The tasks whose request builder this adapter defines (`completion` and `chat_completion` share the
        chat methods, `text_embedding` and `embedding` the embed methods); tests hold them to the catalogue."""
        return frozenset(task for builder, tasks in _TASK_BUILDERS.items()
                         if getattr(cls, builder) is not getattr(Adapter, builder) for task in tasks)

    @classmethod
    def embeds_images(cls, settings: Mapping[str, Any]) -> bool:
        """Whether the endpoint's model takes images on the `embedding` task."""
        return False

    @classmethod
    def data_location(cls, settings: Mapping[str, Any]) -> tuple[str, str] | None:
        """Where an endpoint's data is processed, `(cloud, region)`, as its settings tell; None when they do
        not (the region policy, `proxy/region.py`, then allows it under no policy)."""
        return None

    def setting(self, name: str, default: Any = None) -> Any:
        settings = self.endpoint.service_settings
        if name in settings:
            return settings[name]
        return self.endpoint.secrets.get(name, default)

    def task_setting(self, req: CanonicalRequest, name: str, default: Any = None) -> Any:
        """A request-level task setting wins over the stored one (ES precedence)."""
        if name in req.task_settings:
            return req.task_settings[name]
        return self.endpoint.task_settings.get(name, default)

    def check_chat(self, req: ChatRequest) -> None:
        """Refuse, by name, what this adapter does not map (before anything is sent)."""
        check_chat_params(req, self.service, *self.mapped_chat_params())
        if req.reasoning is not None and not self.maps_reasoning:
            raise unsupported("reasoning", self.service)

    def mapped_chat_params(self) -> tuple[frozenset[str], frozenset[str] | None]:
        """`chat_params` and `extra_params`, for adapters whose mapping depends on the endpoint."""
        return self.chat_params, self.extra_params

    # -- the tasks: an adapter overrides the methods of the tasks it serves ------------------------
    def _unserved(self) -> StatusError:
        # unreachable through the API (the catalogue routes no other task here); a safeguard for direct calls
        return StatusError(f"The [{self.service}] service does not support task type [{self.task.value}]")

    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        raise self._unserved()

    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        raise self._unserved()

    def sparse_request(self, req: EmbedRequest) -> UpstreamRequest:
        raise self._unserved()

    def parse_sparse(self, req: EmbedRequest, body: bytes) -> SparseEmbedResult:
        raise self._unserved()

    def rerank_request(self, req: RerankRequest) -> UpstreamRequest:
        raise self._unserved()

    def parse_rerank(self, req: RerankRequest, body: bytes) -> RerankResult:
        raise self._unserved()

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        raise self._unserved()

    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        raise self._unserved()

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        raise StatusError(f"Streaming is not allowed for service [{self.service}].", status=405)

    # -- around every task ----------------------------------------------------------------------
    async def authorize(self, up: UpstreamRequest, client: Any) -> UpstreamRequest:
        """Add credentials that need I/O (token exchange, request signing); default: as is.

        `client` has aiohttp's `request`/`post` and applies the service's routing, proxy and TLS settings.
        """
        return up

    def stream_decoder(self) -> FrameDecoder:
        """Cuts the upstream stream's bytes into the frames `stream_parser` takes."""
        if self.framing == Framing.NDJSON:
            return NDJSONDecoder()
        if self.framing == Framing.SSE:
            return SSEDecoder()
        raise NotImplementedError(f"{type(self).__name__} streams nothing")

    def stream_reader(self, req: ChatRequest) -> StreamReader:
        """What `proxy.backends` reads a chat stream with: `stream_decoder` and `stream_parser` in turn,
        unless the adapter reads its provider's framing in one pass."""
        return FramedReader(self.stream_decoder(), self.stream_parser(req))

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        return generic_error(body)

    def split_embed(self, req: EmbedRequest) -> list[EmbedRequest]:
        size = self.embed_batch_size
        if size is None or len(req.inputs) <= size:
            return [req]
        return [msgspec.structs.replace(req, inputs=req.inputs[i:i + size],
                                        contents=None if req.contents is None else req.contents[i:i + size],
                                        token_ids=None if req.token_ids is None else req.token_ids[i:i + size])
                for i in range(0, len(req.inputs), size)]


# each task's request builder, and the catalogue's task types it serves
_TASK_BUILDERS: Mapping[str, tuple[TaskType, ...]] = {
    "embed_request": (TaskType.TEXT_EMBEDDING, TaskType.EMBEDDING),
    "sparse_request": (TaskType.SPARSE_EMBEDDING,),
    "rerank_request": (TaskType.RERANK,),
    "chat_request": (TaskType.COMPLETION, TaskType.CHAT_COMPLETION),
}


__all__ = ["Adapter", "EndpointView", "FramedReader", "Framing", "ProviderError", "SSEEvent", "StreamCut",
           "StreamParser", "StreamReader", "StreamWire", "UpstreamRequest", "decoding", "generic_error", "malformed",
           "map_input_type", "reject_input_type", "unsupported"]
