"""Shared state in Redis (`--redis redis://...`): per-endpoint rate limits across replicas.

`SharedRateLimiter` keeps the semantics of `limits.RateLimiter` (GCRA: each request takes the next
free slot; a caller whose slot lies beyond its deadline is refused at once with 429 and takes no
slot) but the theoretical arrival time lives in Redis and is read and advanced by one Lua script,
atomically, on the Redis clock, so every replica and worker draws from one bucket.

Redis is an accelerator, not a dependency: when a call fails, `RedisLink` marks it unavailable
(log line, `inference_proxy_redis_available` 0), every limiter falls back to its process-local
bucket (so each process then allows the full rate on its own), and a background task pings Redis
every second until it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .errors import RateLimitReached
from .limits import RateLimiter
from .metrics import Metrics
from .store.base import StartupError, redact

log = logging.getLogger("proxy.redis")

KEY_PREFIX = "inference-proxy:"
_OP_TIMEOUT = 0.25  # seconds: a Redis call slower than this counts as a failure
_PROBE_EVERY = 1.0  # seconds between pings while Redis is unavailable

# KEYS[1]: the bucket. ARGV: interval, tolerance, longest acceptable wait (all in microseconds).
# Returns {1, wait} when a slot was taken (sleep `wait` µs first when positive), {0, wait} when refused.
GCRA_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 and wait > max_wait then
  return {0, math.floor(wait)}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, math.floor(wait)}
"""


class RedisLink:
    """One Redis client for the process, and whether Redis is answering."""

    def __init__(self, url: str, metrics: Metrics, *, cache_ttl: int = 0) -> None:
        self.url = url
        self.metrics = metrics
        self.cache_ttl = cache_ttl
        self.available = False
        self.client: Any = None
        self.gcra: Any = None
        self._probe: asyncio.Task | None = None
        self.errors: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)

    def __repr__(self) -> str:
        return f"RedisLink({redact(self.url)!r}, available={self.available})"

    async def start(self) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
        except ImportError:
            raise StartupError("--redis needs the redis package: pip install 'inference-proxy[shared]'") from None
        self.errors = (RedisError, OSError, asyncio.TimeoutError)
        # no client-side retries: a failed call falls back to local state at once, and the probe retries
        self.client = aioredis.from_url(self.url, socket_timeout=_OP_TIMEOUT, socket_connect_timeout=_OP_TIMEOUT,
                                        retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        self.gcra = self.client.register_script(GCRA_LUA)
        try:
            await self.client.ping()
        except self.errors as exc:
            self.metrics.redis_errors.labels("ping").inc()
            log.warning("Redis at %s is unreachable (%s: %s); serving with per-process rate limits%s until it "
                        "answers", redact(self.url), type(exc).__name__, exc,
                        " and no embedding cache" if self.cache_ttl else "")
            self._start_probe()
            return
        self._up()
        log.info("Redis at %s: shared rate limits%s", redact(self.url),
                 f", embedding cache for {self.cache_ttl} s" if self.cache_ttl else "")

    def _up(self) -> None:
        self.available = True
        self.metrics.redis_available.set(1)

    def failed(self, operation: str, exc: BaseException) -> None:
        """A call failed: count it and, the first time, switch to local state and start probing."""
        self.metrics.redis_errors.labels(operation).inc()
        if not self.available:
            return
        self.available = False
        self.metrics.redis_available.set(0)
        # rate limits, budgets, breakers and latencies all share this link, so all fall back together
        log.warning("Redis at %s stopped answering (%s: %s, in %s); rate limits, budgets, breakers and "
                    "latencies are now per process%s until it is back", redact(self.url), type(exc).__name__, exc,
                    operation, ", embedding cache off" if self.cache_ttl else "")
        self._start_probe()

    def _start_probe(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_until_up(), name="redis-probe")

    async def _probe_until_up(self) -> None:
        while True:
            await asyncio.sleep(_PROBE_EVERY)
            try:
                await self.client.ping()
            except self.errors:
                continue
            self._up()
            log.info("Redis at %s answers again: rate limits are shared again", redact(self.url))
            return

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self.client is not None:
            try:
                await self.client.aclose()
            except self.errors:
                pass


class SharedRateLimiter:
    """`limits.RateLimiter` with its bucket in Redis; the local bucket serves while Redis is away."""

    def __init__(self, link: RedisLink, inference_id: str, requests_per_minute: int,
                 burst: int | None = None) -> None:
        self.link = link
        self.local = RateLimiter(requests_per_minute, burst)
        self.interval = self.local.interval
        self.key = f"{KEY_PREFIX}rate:{inference_id}"
        self._args = (round(self.interval * 1e6), round(self.local._tolerance * 1e6))

    async def acquire(self, deadline: float, inference_id: str, timeout_text: str) -> None:
        if self.link.available:
            max_wait = round((deadline - time.monotonic()) * 1e6)
            try:
                allowed, wait_us = await self.link.gcra(keys=[self.key], args=[*self._args, max_wait])
            except self.link.errors as exc:
                self.link.failed("rate_limit", exc)
            else:
                wait = int(wait_us) / 1e6
                if not int(allowed):
                    raise RateLimitReached(inference_id, timeout_text, 60.0 / self.interval, wait)
                if wait > 0:
                    await asyncio.sleep(wait)
                return
        await self.local.acquire(deadline, inference_id, timeout_text)
