"""The HTTP pump for streamed answers: peek, prepare, relay frame by frame, end properly.

The first delta is awaited before any header is sent, so an early upstream failure is still a real
HTTP error. After that, errors go in-band through the renderer and the stream ends without its
success terminator. One frame is in flight at a time: `write()` waits for the socket to drain, so a
slow client slows our upstream reads instead of growing a buffer.
"""

from __future__ import annotations

import logging
import time
from typing import AsyncIterator, Protocol

from aiohttp import web

from . import appkeys
from .errors import GatewayError
from .perform import count_usage, scrub
from .types import ChatDelta

log = logging.getLogger("proxy.streaming")


class Renderer(Protocol):
    def frame(self, delta: ChatDelta) -> bytes | None: ...
    def done(self) -> bytes | None: ...
    def error(self, err: GatewayError) -> bytes: ...


async def pump(request: web.Request, deltas: AsyncIterator[ChatDelta | list[ChatDelta]],
               renderer: Renderer) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        first: ChatDelta | list[ChatDelta] | None = await anext(deltas)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await deltas.aclose()
        raise
    ep = request.get(appkeys.ENDPOINT)
    if ep is not None:
        request.app[appkeys.METRICS].ttft.labels(ep.service, ep.task_type.value).observe(time.perf_counter() - started)
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        if first is not None:
            await _write(request, response, renderer, first)
            async for item in deltas:
                await _write(request, response, renderer, item)
        tail = renderer.done()
        if tail:
            await response.write(tail)
    except GatewayError as err:
        await response.write(renderer.error(scrub(request, err)))
    except (ConnectionResetError, ConnectionError):
        log.debug("client left %s during the stream", request.path)
        return response
    except Exception:
        log.exception("stream failed on %s", request.path)
        await response.write(renderer.error(GatewayError("An internal error occurred during the stream")))
    finally:
        # releases the upstream connection or aborts the engine request, also on cancellation
        await deltas.aclose()
    await response.write_eof()
    return response


async def _write(request: web.Request, response: web.StreamResponse, renderer: Renderer,
                 item: ChatDelta | list[ChatDelta]) -> None:
    """Render a delta, or a batch that arrived together, and send it in one write."""
    batch = item if isinstance(item, list) else [item]
    frames = []
    for delta in batch:
        if delta.usage is not None:
            count_usage(request, delta.usage)
        frame = renderer.frame(delta)
        if frame:
            frames.append(frame)
    if frames:
        await response.write(frames[0] if len(frames) == 1 else b"".join(frames))
