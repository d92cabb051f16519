"""Per-endpoint rate limits from `rate_limit.requests_per_minute`.

GCRA (a token bucket kept as one timestamp): each request takes the next free slot. A caller
whose slot lies beyond its deadline is refused at once with 429 instead of sleeping until it would
time out anyway, and takes no slot, so refused requests cost later ones nothing.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .errors import RateLimitReached, TooManyRequestsError


class RateLimiter:
    def __init__(self, requests_per_minute: int, burst: int | None = None) -> None:
        self.interval = 60.0 / requests_per_minute
        # up to one second's worth of requests (at least one) may go out back to back
        burst = burst if burst is not None else max(1, requests_per_minute // 60)
        self._tolerance = (burst - 1) * self.interval
        self._tat = 0.0  # theoretical arrival time of the next request

    async def acquire(self, deadline: float, inference_id: str, timeout_text: str) -> None:
        now = time.monotonic()
        tat = max(self._tat, now)
        wait = tat - self._tolerance - now
        if wait > 0 and now + wait > deadline:
            raise RateLimitReached(inference_id, timeout_text, 60.0 / self.interval, wait)
        self._tat = tat + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


class Admission:
    """A global bound on requests handled at once: past it, 429 at once instead of growing memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if self.active >= self.limit:
            raise TooManyRequestsError(f"The gateway is handling its limit of [{self.limit}] requests; retry later",
                                       headers={"Retry-After": "1"})
        self.active += 1
        try:
            return await handler(request)
        finally:
            self.active -= 1
