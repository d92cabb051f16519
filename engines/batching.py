"""Dynamic batching for encoder models: one owner per model, a token budget, a bounded queue.

The design of text-embeddings-inference's `queue.rs`: callers put their inputs in a queue and wait
on a future; the owner task takes waiting inputs in arrival order until the next one would go over
the token budget (or the item cap), runs one forward pass in a worker thread, and hands each caller
its slice of the outputs. While a pass runs, new requests pile up and ride the next pass together,
so concurrent single-sentence requests are served in a few large passes instead of many small ones.

- A caller that has gone (its future cancelled: a timeout or a dropped request) is skipped: its
  inputs that were not yet taken never reach the model, and the room they held in the queue is freed.
- When the inputs waiting would exceed `max_queue`, the request is refused with 429 at once instead
  of queueing without bound. A request arriving at an empty queue is always accepted, whatever its size.
- `concurrency` owners can run passes at once (the endpoint's `num_allocations`), each pass in a
  thread of the batcher's own executor, so the event loop never blocks on the model.
- An owner that finds work while another pass runs lets its batch form first: the callers of the
  pass that ended last come back together once answered, so it waits until as many inputs wait as
  that pass held (or the running passes, if fewer), until a pass ends, or `linger` seconds at most.
  Without this, those callers reached an idle owner one by one: with 64 HTTP clients on two
  allocations, half the passes held under 8 inputs and each pass has a fixed cost (all-MiniLM-L6-v2
  on one thread: about 6 ms, two inputs' worth). An owner with no other pass running starts at once.
- `forward_passes` counts passes (tests use it to prove batching).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Generic, Sequence, TypeVar

from proxy.errors import TooManyRequestsError

log = logging.getLogger("engines.batching")
_MAX_THREADS = 32

I = TypeVar("I")
O = TypeVar("O")


class _Entry:
    """One caller: its inputs, where the next untaken input is, and its outputs so far."""

    __slots__ = ("items", "costs", "next", "results", "remaining", "future")

    def __init__(self, items: Sequence[Any], costs: list[int], future: asyncio.Future) -> None:
        self.items = items
        self.costs = costs
        self.next = 0  # index of the first input not yet taken into a pass
        self.results: list[Any] = [None] * len(items)
        self.remaining = len(items)  # outputs still to come
        self.future = future


class Batcher(Generic[I, O]):
    def __init__(self, name: str, run: Callable[[list[I]], Sequence[O]], *,
                 cost: Callable[[I], int] = lambda _item: 1, max_batch_tokens: int = 8192,
                 max_batch_items: int = 256, max_queue: int = 1024, concurrency: int = 1,
                 linger: float = 0.02) -> None:
        self.name = name
        self._run = run  # blocking: a list of inputs in, one output per input out
        self._cost = cost
        self.max_batch_tokens = max(1, max_batch_tokens)
        self.max_batch_items = max(1, max_batch_items)
        self.max_queue = max(1, max_queue)
        self.linger = linger
        self._queue: collections.deque[_Entry] = collections.deque()
        self._queued_items = 0  # inputs waiting, not yet taken into a pass
        self._wake = asyncio.Event()
        self._moved = asyncio.Event()  # an input arrived or a pass ended: a lingering owner looks again
        self._running_items = 0  # inputs in the passes running now
        self._last_pass = 0  # inputs of the pass that ended last: its callers come back together
        self._workers: list[asyncio.Task] = []
        self._concurrency = max(1, concurrency)
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        # statistics
        self.forward_passes = 0
        self.items_done = 0
        self.largest_batch = 0
        self.busy_seconds = 0.0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._executor is None:
            # threads are made lazily: the pool only bounds them; `concurrency` owners use it
            self._executor = ThreadPoolExecutor(max_workers=_MAX_THREADS, thread_name_prefix=f"batch-{self.name}")
        self._workers = [t for t in self._workers if not t.done()]
        while len(self._workers) < self._concurrency:
            index = len(self._workers)
            self._workers.append(asyncio.create_task(self._owner(index), name=f"batcher-{self.name}-{index}"))

    def set_concurrency(self, n: int) -> None:
        """Change how many passes may run at once (the endpoint's allocations).

        Owners beyond the new count retire after their current pass; none is interrupted."""
        n = max(1, min(n, _MAX_THREADS))
        if n == self._concurrency:
            return
        self._concurrency = n
        if n < len(self._workers):
            self._workers = self._workers[:n] + [t for t in self._workers[n:] if not t.done()]
            self._wake.set()  # idle owners wake up to see that they retire
        elif self._executor is not None:
            self.start()

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @property
    def queued(self) -> int:
        return self._queued_items

    async def close(self) -> None:
        self._closed = True
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._workers.clear()
        while self._queue:
            entry = self._queue.popleft()
            if not entry.future.done():
                entry.future.set_exception(_closed_error(self.name))
        self._queued_items = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    # ------------------------------------------------------------------ callers

    async def submit(self, items: Sequence[I]) -> list[O]:
        """Outputs for `items`, in order. Raises 429 when the queue is full."""
        if not items:
            return []
        if self._closed:
            raise _closed_error(self.name)
        if self._queued_items and self._queued_items + len(items) > self.max_queue:
            raise TooManyRequestsError(
                f"[{self.name}] inference process queue is full. Unable to execute command "
                f"({self._queued_items} inputs waiting, the limit is {self.max_queue})",
                headers={"Retry-After": "1"})
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        entry = _Entry(items, [max(1, self._cost(item)) for item in items], future)
        future.add_done_callback(lambda _f, e=entry: self._forget(e))
        self._queue.append(entry)
        self._queued_items += len(items)
        self._wake.set()
        self._moved.set()
        return await future

    def _forget(self, entry: _Entry) -> None:
        """A caller is done (answered, failed or gone): its untaken inputs leave the queue."""
        untaken = len(entry.items) - entry.next
        if untaken:
            entry.next = len(entry.items)
            self._queued_items -= untaken

    # ------------------------------------------------------------------ the owner

    def _take(self) -> list[tuple[_Entry, int, int]]:
        """Slices (entry, start, stop) for the next pass, in arrival order, within the budget."""
        taken: list[tuple[_Entry, int, int]] = []
        tokens = 0
        count = 0
        while self._queue and count < self.max_batch_items:
            entry = self._queue[0]
            if entry.future.done() or entry.next >= len(entry.items):
                self._queue.popleft()  # a caller that has gone, or one wholly taken already
                continue
            start = stop = entry.next
            while stop < len(entry.items) and count < self.max_batch_items:
                cost = entry.costs[stop]
                if count and tokens + cost > self.max_batch_tokens:
                    break
                tokens += cost
                count += 1
                stop += 1
            if stop == start:
                break
            entry.next = stop
            self._queued_items -= stop - start
            taken.append((entry, start, stop))
            if stop < len(entry.items):
                break  # the budget is spent
            self._queue.popleft()
        if not self._queue:
            self._wake.clear()
        return taken

    async def _owner(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if index >= self._concurrency:
                if not self._queue:
                    self._wake.clear()
                return
            if self.linger and self._queued_items < min(self._running_items, self._last_pass):
                await self._gather()
            taken = self._take()
            if not taken:
                continue
            inputs: list[I] = []
            for entry, start, stop in taken:
                inputs.extend(entry.items[start:stop])
            self.forward_passes += 1
            self.largest_batch = max(self.largest_batch, len(inputs))
            began = time.perf_counter()
            self._running_items += len(inputs)
            try:
                assert self._executor is not None
                outputs = await loop.run_in_executor(self._executor, self._run, inputs)
                if len(outputs) != len(inputs):
                    raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(inputs)} inputs")
            except asyncio.CancelledError:
                for entry, _, _ in taken:
                    if not entry.future.done():
                        entry.future.set_exception(_closed_error(self.name))
                raise
            except Exception as exc:  # the pass failed: every caller in it gets the error
                log.exception("forward pass of [%s] failed on %d inputs", self.name, len(inputs))
                for entry, _, _ in taken:
                    if not entry.future.done():
                        entry.future.set_exception(exc)
                continue
            finally:
                self.busy_seconds += time.perf_counter() - began
                self._running_items -= len(inputs)
                self._last_pass = len(inputs)
                self._moved.set()
            self.items_done += len(inputs)
            pos = 0
            for entry, start, stop in taken:
                n = stop - start
                if not entry.future.done():
                    entry.results[start:stop] = outputs[pos:pos + n]
                    entry.remaining -= n
                    if entry.remaining == 0:
                        entry.future.set_result(entry.results)
                pos += n

    async def _gather(self) -> None:
        """Wait while another pass runs: until the callers of the last pass are back, a pass ends, or `linger`."""
        running = self._running_items
        target = min(running, self._last_pass)
        over = False

        def linger_over() -> None:
            nonlocal over
            over = True
            self._moved.set()

        timer = asyncio.get_running_loop().call_later(self.linger, linger_over)
        try:
            while not over and self._running_items >= running and self._queued_items < target:
                self._moved.clear()
                await self._moved.wait()
        finally:
            timer.cancel()

    def stats(self) -> dict[str, float]:
        return {"forward_passes": self.forward_passes, "items_done": self.items_done, "queued": self._queued_items,
                "largest_batch": self.largest_batch, "concurrency": self._concurrency,
                "busy_seconds": round(self.busy_seconds, 3)}


def _closed_error(name: str) -> Exception:
    from proxy.errors import ServiceUnavailableError

    return ServiceUnavailableError(f"The local model [{name}] was unloaded while the request waited; retry")
