"""What the core hands to the code that reaches a model, and what it gets back.

`Backend` is served by `proxy.backends.RemoteBackend` (an adapter plus the transport) and by
`engines.manager.LocalBackend`; `UpstreamRequest` and `Framing` are what an adapter gives the transport.
They live in the core so that adapters and engines import the core, never the other way round.
"""

from __future__ import annotations

import enum
import time
from typing import AsyncIterator, NamedTuple, Protocol

import msgspec

from .errors import GatewayError
from .types import (ChatDelta, ChatRequest, ChatResult, EmbedRequest, EmbedResult, RerankRequest, RerankResult,
                    SparseEmbedResult, Usage)


class CallContext(msgspec.Struct, kw_only=True):
    inference_id: str
    deadline: float  # time.monotonic() by which the request must be answered
    timeout_text: str  # as the client gave it, for messages ("30s")
    idle_timeout: float = 60.0  # longest silence inside a stream
    max_attempts: int = 0  # tries of one upstream call; 0: as many as fit before the deadline (a router sets it)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class Backend(Protocol):
    async def embed(self, req: EmbedRequest, ctx: CallContext) -> EmbedResult: ...
    async def sparse_embed(self, req: EmbedRequest, ctx: CallContext) -> SparseEmbedResult: ...
    async def rerank(self, req: RerankRequest, ctx: CallContext) -> RerankResult: ...
    async def chat(self, req: ChatRequest, ctx: CallContext) -> ChatResult: ...
    def stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatDelta | list[ChatDelta]]:
        """Deltas, one at a time or in batches that arrived together (written to the client together)."""


class StreamWire(enum.Enum):
    """A client API's stream format that an upstream may speak itself (`Adapter.stream_wire`): its events
    can then be passed through to that API's clients (`proxy.wire.openai_relay`) instead of translated."""

    OPENAI_CHAT = "openai.chat"


class Relayed(NamedTuple):
    """Frames of a pass-through stream, already in the client's format (`proxy.wire.openai_relay`), the
    usage found in them, and the error that ended them (raised once `data` has been written)."""

    data: bytes
    usage: tuple[Usage, ...] = ()
    error: GatewayError | None = None


class Framing(enum.Enum):
    """How an upstream stream is cut into frames before the adapter's stream parser sees them."""

    NONE = "none"
    SSE = "sse"
    NDJSON = "ndjson"
    AWS_EVENTSTREAM = "aws_eventstream"


class UpstreamRequest(msgspec.Struct, kw_only=True):
    url: str
    body: bytes
    headers: dict[str, str] = {}
    method: str = "POST"
    # The URL came from the endpoint's own `url` setting: gateway-wide origin overrides do not apply.
    explicit_url: bool = False

    def __repr__(self) -> str:  # headers, and some query strings (`?key=`), carry credentials
        return f"UpstreamRequest({self.method} {self.url.split('?')[0]})"
