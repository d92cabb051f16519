"""Bearer tokens that a provider hands out for a while (Google OAuth2, IBM Cloud IAM), cached until
shortly before they expire. One exchange at a time per key: concurrent requests wait for it."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Hashable


class ExpiringTokens:
    """Tokens by key; `margin(lifetime)` seconds before a token expires the next request exchanges again."""

    def __init__(self, margin: Callable[[float], float]) -> None:
        self._tokens: dict[Hashable, tuple[str, float]] = {}
        # asyncio locks belong to one loop; tests run several loops in one process
        self._locks: dict[Hashable, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
        self._margin = margin
        self.exchanges = 0

    def __repr__(self) -> str:  # never the tokens
        return f"{type(self).__name__}({len(self._tokens)} tokens)"

    def drop(self, key: Hashable) -> None:
        self._tokens.pop(key, None)

    def _lock(self, key: Hashable) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        held = self._locks.get(key)
        if held is None or held[0] is not loop:
            held = (loop, asyncio.Lock())
            self._locks[key] = held
        return held[1]

    def _cached(self, key: Hashable) -> str | None:
        cached = self._tokens.get(key)
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    async def get(self, key: Hashable, exchange: Callable[[], Awaitable[tuple[str, float]]]) -> str:
        """The cached token for `key`, or the one `exchange()` returns with its lifetime in seconds."""
        token = self._cached(key)
        if token is not None:
            return token
        async with self._lock(key):
            token = self._cached(key)
            if token is not None:
                return token
            self.exchanges += 1
            token, lifetime = await exchange()
            self._tokens[key] = (token, time.monotonic() + max(0.0, lifetime - self._margin(lifetime)))
            return token
