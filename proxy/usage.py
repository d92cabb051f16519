"""Usage per API key and per endpoint: requests, errors, input and output tokens, by the minute.

Each process adds to counters in memory (nothing on the hot path but a dict update) and a flusher
adds them to the store every few seconds, in one batched write. The store adds, never overwrites,
so every replica's counts sum up there. Counts not yet flushed when a process is killed are lost
(a few seconds' worth at most); a store that is away keeps them waiting for the next flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Mapping

from .store import Store, UsageRow

log = logging.getLogger("proxy.usage")
BUCKET_S = 60
NO_KEY = ""  # requests made while access control is off


class UsageRecorder:
    def __init__(self, store: Store, flush_every: float = 5.0) -> None:
        self._store = store
        self._flush_every = flush_every
        self._pending: dict[tuple[int, str, str], list[int]] = {}
        self._task: asyncio.Task | None = None

    def add(self, key_id: str, endpoint: str, *, error: bool, input_tokens: int, output_tokens: int) -> None:
        bucket = int(time.time()) // BUCKET_S * BUCKET_S
        counts = self._pending.get((bucket, key_id, endpoint))
        if counts is None:
            counts = self._pending[(bucket, key_id, endpoint)] = [0, 0, 0, 0]
        counts[0] += 1
        counts[1] += error
        counts[2] += input_tokens
        counts[3] += output_tokens

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-flush")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every)
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        taken, self._pending = self._pending, {}
        rows = [UsageRow(bucket=b, key_id=k, endpoint=e, requests=c[0], errors=c[1], input_tokens=c[2],
                         output_tokens=c[3]) for (b, k, e), c in taken.items()]
        try:
            await self._store.add_usage(rows)
        except Exception as exc:  # keep the counts for the next flush
            log.warning("could not write usage to the store (%s: %s); keeping it for the next flush",
                        type(exc).__name__, exc)
            for key, counts in taken.items():
                mine = self._pending.setdefault(key, [0, 0, 0, 0])
                for i, n in enumerate(counts):
                    mine[i] += n

    async def query(self, key_id: str | None, endpoint: str | None, start: int, end: int) -> list[UsageRow]:
        await self.flush()  # this process's latest counts are part of the answer
        return await self._store.query_usage(key_id, endpoint, start, end)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()


FIELDS = ("requests", "errors", "input_tokens", "output_tokens")


def summarize(rows: list[UsageRow], start: float, interval: float | None, prices: Mapping[str, Any],
              key_names: Mapping[str, str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows summed per (key, endpoint), with per-interval buckets (`start` in epoch seconds) when an
    interval is given and cost where the endpoint has a price: (entries, totals)."""
    groups: dict[tuple[str, str], tuple[dict[str, int], dict[int, dict[str, int]]]] = {}
    for row in rows:
        sums, buckets = groups.setdefault((row.key_id, row.endpoint), (dict.fromkeys(FIELDS, 0), {}))
        values = (row.requests, row.errors, row.input_tokens, row.output_tokens)
        targets = [sums]
        if interval is not None:
            slot = int(start + (row.bucket - start) // interval * interval)
            targets.append(buckets.setdefault(slot, dict.fromkeys(FIELDS, 0)))
        for target in targets:
            for name, value in zip(FIELDS, values):
                target[name] += value
    entries = []
    totals: dict[str, Any] = dict.fromkeys(FIELDS, 0)
    if prices:
        totals["cost"] = 0.0
    for (key_id, endpoint), (sums, buckets) in sorted(groups.items()):
        entry: dict[str, Any] = {"key": key_id or None}
        if key_id in key_names:
            entry["key_name"] = key_names[key_id]
        entry["endpoint"] = endpoint
        entry.update(sums)
        price = prices.get(endpoint)
        if price is not None:
            entry["cost"] = round(sums["input_tokens"] / 1e6 * price.input + sums["output_tokens"] / 1e6 * price.output,
                                  6)
            totals["cost"] = round(totals["cost"] + entry["cost"], 6)
        if interval is not None:
            entry["buckets"] = [{"start": slot, **counts} for slot, counts in sorted(buckets.items())]
        entries.append(entry)
        for name in FIELDS:
            totals[name] += sums[name]
    return entries, totals
