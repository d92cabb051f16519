"""Limits per API key: requests per minute and tokens per day or month, across replicas.

A key's limits are in its metadata, where Elasticsearch keeps what an application attaches to a key:
`{"inference_limits": {"requests_per_minute": 60, "tokens_per_day": 100000, "tokens_per_month": 2000000}}`.
Windows are fixed (the UTC minute, day and month). With `--redis` the counters live there, so every
replica and worker draws from one budget; without it, or while Redis is away, each process counts
on its own (logged, and `inference_proxy_redis_available` says so), as rate limits do.

A request over a limit gets 429 with `Retry-After` (the end of the window) and a message naming the
budget. Tokens are counted when an answer reports them, so the request that crosses a token budget
completes and the next one is refused.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

import msgspec

from .errors import IllegalArgumentError, TooManyRequestsError
from .keys import ApiKey
from .shared_limits import KEY_PREFIX

LIMITS_FIELD = "inference_limits"


class KeyLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None

    def token_windows(self, now: float) -> list[tuple[str, int, float]]:
        """(window name, limit, end of the window) for each token budget."""
        out = []
        day = time.gmtime(now)
        if self.tokens_per_day:
            end = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0)) + 86400
            out.append((f"day:{day.tm_year}-{day.tm_yday}", self.tokens_per_day, end))
        if self.tokens_per_month:
            year, month = (day.tm_year, day.tm_mon + 1) if day.tm_mon < 12 else (day.tm_year + 1, 1)
            out.append((f"month:{day.tm_year}-{day.tm_mon}", self.tokens_per_month,
                        calendar.timegm((year, month, 1, 0, 0, 0))))
        return out


def parse_limits(metadata: dict[str, Any]) -> KeyLimits | None:
    raw = metadata.get(LIMITS_FIELD)
    if raw is None:
        return None
    try:
        limits = msgspec.convert(raw, KeyLimits)
    except msgspec.ValidationError as exc:
        raise IllegalArgumentError(f"[metadata.{LIMITS_FIELD}] is not valid: {exc}") from None
    for name in KeyLimits.__struct_fields__:
        value = getattr(limits, name)
        if value is not None and value <= 0:
            raise IllegalArgumentError(f"[metadata.{LIMITS_FIELD}.{name}] must be positive, got [{value}]")
    return limits


class Budgets:
    def __init__(self) -> None:
        self._local: dict[str, int] = {}
        self._local_window = 0  # the minute the local counters were last pruned in

    async def _add(self, link: Any, key: str, amount: int, ttl: float) -> int:
        """Add to a window's counter and return its new value: in Redis when it answers, else here."""
        if link is not None and link.available:
            try:
                pipe = link.client.pipeline(transaction=True)
                pipe.incrby(KEY_PREFIX + key, amount)
                pipe.expire(KEY_PREFIX + key, max(1, int(ttl) + 60))
                value, _ = await pipe.execute()
                return int(value)
            except link.errors as exc:
                link.failed("budget", exc)
        self._prune()
        self._local[key] = self._local.get(key, 0) + amount
        return self._local[key]

    def _prune(self) -> None:
        minute = int(time.time()) // 60
        if minute != self._local_window:  # windows that ended are of no more use
            self._local_window = minute
            self._local = {k: v for k, v in self._local.items() if not k.startswith("budget:rpm:")
                           or k.endswith(f":{minute}")}

    async def admit(self, link: Any, key: ApiKey, limits: KeyLimits) -> None:
        now = time.time()
        if limits.requests_per_minute:
            minute = int(now) // 60
            used = await self._add(link, f"budget:rpm:{key.id}:{minute}", 1, 60)
            if used > limits.requests_per_minute:
                raise _over(key, f"{limits.requests_per_minute} requests per minute", (minute + 1) * 60 - now)
        for window, limit, end in limits.token_windows(now):
            used = await self._add(link, f"budget:tokens:{key.id}:{window}", 0, end - now)
            if used >= limit:
                raise _over(key, f"{limit} tokens per {window.partition(':')[0]}", end - now)

    async def spend(self, link: Any, key: ApiKey, limits: KeyLimits, tokens: int) -> None:
        now = time.time()
        for window, _, end in limits.token_windows(now):
            await self._add(link, f"budget:tokens:{key.id}:{window}", tokens, end - now)


def _over(key: ApiKey, budget: str, retry_in: float) -> TooManyRequestsError:
    seconds = max(1, int(retry_in + 0.999))
    return TooManyRequestsError(f"API key [{key.name}] (id [{key.id}]) is over its budget of [{budget}]; it "
                                f"resets in [{seconds}s]", headers={"Retry-After": str(seconds)})
