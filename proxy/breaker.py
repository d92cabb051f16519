"""Circuit breakers, one per routed-to endpoint: closed, open for a cooldown, then half-open.

After `failure_threshold` consecutive failures a target is *open*: routers skip it until the
cooldown has passed. Then it is *half-open*: the next caller is let through alone as a probe (for
a lease as long as its attempt may take) while the others keep skipping it; the probe's success
closes the breaker, its failure opens it for another cooldown.

`CircuitBreakers` keeps the state in the process. `SharedCircuitBreakers` (with `--redis`) keeps it
in one Redis hash per target, read and changed by Lua scripts on the Redis clock, so every replica
sees one breaker; while Redis does not answer it falls back to the process's own state (the
`RedisLink` rules of `shared_limits.py`).
"""

from __future__ import annotations

import enum
import time
from typing import Callable, NamedTuple

from .shared_limits import KEY_PREFIX, RedisLink


class State(enum.IntEnum):
    """Also the value of the `inference_proxy_circuit_breaker_state` gauge."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class Admission(NamedTuple):
    allowed: bool
    state: State
    wait: float = 0.0  # seconds until it may be tried again, when not allowed
    failures: int = 0  # consecutive failures so far

    @property
    def probe(self) -> bool:
        return self.allowed and self.state == State.HALF_OPEN


_CLOSED = Admission(True, State.CLOSED)


class _Entry:
    __slots__ = ("failures", "open_until", "probe_until")

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0  # 0: closed
        self.probe_until = 0.0


class CircuitBreakers:
    """Per-process breakers. `clock` is injectable so that tests can move time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    async def admit(self, target: str, lease: float) -> Admission:
        entry = self._entries.get(target)
        if entry is None:
            return _CLOSED
        if not entry.open_until:
            return Admission(True, State.CLOSED, 0.0, entry.failures)
        now = self._clock()
        if now < entry.open_until:
            return Admission(False, State.OPEN, entry.open_until - now, entry.failures)
        if entry.probe_until > now:
            return Admission(False, State.HALF_OPEN, entry.probe_until - now, entry.failures)
        entry.probe_until = now + lease
        return Admission(True, State.HALF_OPEN, 0.0, entry.failures)

    async def success(self, target: str, admission: Admission) -> None:
        if admission.failures or admission.probe:
            self._entries.pop(target, None)

    async def failure(self, target: str, admission: Admission, threshold: int, cooldown: float) -> State:
        entry = self._entries.setdefault(target, _Entry())
        entry.failures += 1
        if admission.probe or entry.failures >= threshold:
            entry.open_until = self._clock() + cooldown
            entry.probe_until = 0.0
            return State.OPEN
        return State.CLOSED


# KEYS[1]: the target's hash. ARGV[1]: probe lease (ms). Returns {allowed, state, wait ms, failures}.
_ADMIT_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'failures', 'open_until', 'probe_until')
local failures = tonumber(v[1] or '0')
local open_until = tonumber(v[2] or '0')
local probe_until = tonumber(v[3] or '0')
if open_until == 0 then return {1, 0, 0, failures} end
if now < open_until then return {0, 1, open_until - now, failures} end
if probe_until > now then return {0, 2, probe_until - now, failures} end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[1]))
return {1, 2, 0, failures}
"""

# KEYS[1]: the target's hash. ARGV: threshold, cooldown (ms), 1 when the failed call was the probe,
# expiry (ms): failures that stop coming are forgotten. Returns 1 when the breaker is now open.
_FAILURE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local opened = 0
if ARGV[3] == '1' or failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'open_until', now + tonumber(ARGV[2]), 'probe_until', 0)
  opened = 1
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return opened
"""

_FORGET_AFTER = 600.0  # seconds past the cooldown after which an idle breaker's record expires


class SharedCircuitBreakers:
    """The breakers in Redis, shared by every gateway using it; the local ones while it is away."""

    def __init__(self, link: RedisLink, local: CircuitBreakers | None = None) -> None:
        self.link = link
        self.local = local or CircuitBreakers()
        self._admit = link.client.register_script(_ADMIT_LUA)
        self._failure = link.client.register_script(_FAILURE_LUA)

    @staticmethod
    def key(target: str) -> str:
        return f"{KEY_PREFIX}breaker:{target}"

    async def admit(self, target: str, lease: float) -> Admission:
        if self.link.available:
            try:
                allowed, state, wait_ms, failures = await self._admit(keys=[self.key(target)],
                                                                      args=[max(1, round(lease * 1000))])
            except self.link.errors as exc:
                self.link.failed("breaker", exc)
            else:
                return Admission(bool(allowed), State(int(state)), int(wait_ms) / 1000, int(failures))
        return await self.local.admit(target, lease)

    async def success(self, target: str, admission: Admission) -> None:
        if not (admission.failures or admission.probe):
            return  # the common case costs no write
        if self.link.available:
            try:
                await self.link.client.delete(self.key(target))
                return
            except self.link.errors as exc:
                self.link.failed("breaker", exc)
        await self.local.success(target, admission)

    async def failure(self, target: str, admission: Admission, threshold: int, cooldown: float) -> State:
        if self.link.available:
            try:
                opened = await self._failure(keys=[self.key(target)], args=[
                    threshold, round(cooldown * 1000), 1 if admission.probe else 0,
                    round((cooldown + _FORGET_AFTER) * 1000)])
            except self.link.errors as exc:
                self.link.failed("breaker", exc)
            else:
                return State.OPEN if int(opened) else State.CLOSED
        return await self.local.failure(target, admission, threshold, cooldown)
