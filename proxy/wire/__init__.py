"""The client APIs' wire formats: bodies to canonical requests, canonical results to bodies, errors."""

from __future__ import annotations

from typing import Protocol

from ..errors import GatewayError
from ..types import ChatDelta, TaskType


class ErrorSurface(Protocol):
    """How one client API writes an error. Chosen when its routes are registered (`proxy.surfaces`)."""

    def error(self, err: GatewayError) -> tuple[int, str, bytes]:
        """Status, content type and body of the answer that reports `err`."""

    def for_task(self, task: TaskType) -> "ErrorSurface":
        """The same surface once the endpoint's task is known (ES chat_completion has its own error shape)."""

    def no_route(self, method: str, path: str, path_qs: str,
                 allowed: set[str] | None) -> tuple[int, str, bytes, dict[str, str]]:
        """No route for the URL (`allowed` None), or not for this method: status, type, body, headers."""


class StreamRenderer(Protocol):
    """Writes one stream's frames in a client API's format (used by `proxy.streaming.pump`)."""

    def frame(self, delta: ChatDelta) -> bytes | None: ...
    def frames(self, batch: list[ChatDelta]) -> bytes:
        """The frames of the deltas that arrived together, in one piece (b"" when none)."""
    def done(self) -> bytes | None: ...
    def error(self, err: GatewayError) -> bytes: ...


class FrameByFrame:
    """`frames` for the renderers that write each delta on its own."""

    def frame(self, delta: ChatDelta) -> bytes | None:
        raise NotImplementedError

    def frames(self, batch: list[ChatDelta]) -> bytes:
        return b"".join(filter(None, map(self.frame, batch)))
