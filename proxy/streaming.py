"""The HTTP pump for streamed answers: peek, prepare, relay frame by frame, end properly.

The first delta is awaited before any header is sent, so an early upstream failure is still a real
HTTP error. After that, errors go in-band through the renderer and the stream ends without its
success terminator. One frame is in flight at a time: `write()` waits for the socket to drain, so a
slow client slows our upstream reads instead of growing a buffer.
"""

from __future__ import annotations

import logging
import time
from typing import AsyncIterator, Callable

from aiohttp import web

from . import appkeys
from .contract import Relayed
from .errors import GatewayError
from .scrubbing import scrubbed_traceback, secret_strings
from .types import ChatDelta, Usage
from .wire import StreamRenderer

log = logging.getLogger("proxy.streaming")


async def pump(request: web.Request, deltas: AsyncIterator[ChatDelta | list[ChatDelta] | Relayed],
               renderer: StreamRenderer,
               count_usage: Callable[[Usage], None],
               scrub: Callable[[GatewayError], GatewayError]) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        first: ChatDelta | list[ChatDelta] | Relayed | None = await anext(deltas)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await deltas.aclose()
        raise
    ep = request.get(appkeys.ENDPOINT)
    if ep is not None:
        request.app[appkeys.METRICS].first_token(ep.service, ep.task_type.value, time.perf_counter() - started)
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        if first is not None:
            await _write(response, renderer, first, count_usage)
            async for item in deltas:
                await _write(response, renderer, item, count_usage)
        tail = renderer.done()
        if tail:
            await response.write(tail)
    except GatewayError as err:
        await response.write(renderer.error(scrub(err)))
    except (ConnectionResetError, ConnectionError):
        log.debug("client left %s during the stream", request.path)
        return response
    except Exception as exc:
        secrets = secret_strings(ep.secrets) if ep is not None else []
        log.error("stream failed on %s\n%s", request.path, scrubbed_traceback(exc, secrets))
        await response.write(renderer.error(GatewayError("An internal error occurred during the stream")))
    finally:
        # releases the upstream connection or aborts the engine request, also on cancellation
        await deltas.aclose()
    await response.write_eof()
    return response


async def _write(response: web.StreamResponse, renderer: StreamRenderer, item: ChatDelta | list[ChatDelta] | Relayed,
                 count_usage: Callable[[Usage], None]) -> None:
    """Render a delta, or a batch that arrived together, and send it in one write; a pass-through
    stream's frames are already rendered."""
    if isinstance(item, Relayed):
        for usage in item.usage:
            count_usage(usage)
        if item.data:
            await response.write(item.data)
        return
    batch = item if isinstance(item, list) else [item]
    data = renderer.frames(batch)
    for delta in batch:
        if delta.usage is not None:
            count_usage(delta.usage)
    if data:
        await response.write(data)
