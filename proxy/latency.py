"""Moving averages of each routed-to endpoint's time to first token, for `least_latency` routers.

An exponentially weighted moving average (the newest answer weighs `ALPHA`) per target id: in the
process, or with `--redis` in one Redis hash that every replica reads and updates (one Lua script
per update, so concurrent updates do not lose each other); the local figures serve while Redis is away.
"""

from __future__ import annotations

from typing import Iterable

from .shared_limits import KEY_PREFIX, RedisLink

ALPHA = 0.3


class Latencies:
    def __init__(self) -> None:
        self._ewma: dict[str, float] = {}

    async def get(self, targets: Iterable[str]) -> dict[str, float | None]:
        return {t: self._ewma.get(t) for t in targets}

    async def record(self, target: str, seconds: float) -> None:
        old = self._ewma.get(target)
        self._ewma[target] = seconds if old is None else old + ALPHA * (seconds - old)


# KEYS[1]: the hash; ARGV: target id, seconds, alpha.
_RECORD_LUA = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local x = tonumber(ARGV[2])
if old then x = old + tonumber(ARGV[3]) * (x - old) end
redis.call('HSET', KEYS[1], ARGV[1], tostring(x))
return 1
"""


class SharedLatencies:
    def __init__(self, link: RedisLink, local: Latencies | None = None) -> None:
        self.link = link
        self.local = local or Latencies()
        self.key = f"{KEY_PREFIX}latency"
        self._record = link.client.register_script(_RECORD_LUA)

    async def get(self, targets: Iterable[str]) -> dict[str, float | None]:
        ids = list(targets)
        if self.link.available:
            try:
                values = await self.link.client.hmget(self.key, ids)
            except self.link.errors as exc:
                self.link.failed("latency", exc)
            else:
                return {t: None if v is None else float(v) for t, v in zip(ids, values)}
        return await self.local.get(ids)

    async def record(self, target: str, seconds: float) -> None:
        await self.local.record(target, seconds)  # ready for when Redis goes away
        if self.link.available:
            try:
                await self._record(keys=[self.key], args=[target, repr(seconds), ALPHA])
            except self.link.errors as exc:
                self.link.failed("latency", exc)
