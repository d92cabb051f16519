"""The batcher on its own, with a fake model: batching, the token budget, 429, callers that leave."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from engines.batching import Batcher
from proxy.errors import TooManyRequestsError

NEEDS_NO_MODELS = True


class FakeModel:
    """Doubles each input; records every pass; can be held inside a pass until released."""

    def __init__(self, delay: float = 0.0) -> None:
        self.passes: list[list[int]] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.passes.append(list(items))
        self.entered.set()
        self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)
        return [2 * i for i in items]


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_concurrent_callers_share_forward_passes_and_get_their_own_outputs():
    model = FakeModel(delay=0.02)
    batcher = Batcher("fake", model, max_batch_tokens=10_000)
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(40)))
        assert results == [[2 * i, 2 * (i + 100)] for i in range(40)]
        assert batcher.forward_passes == len(model.passes) < 40 / 2
        assert batcher.items_done == 80
    finally:
        await batcher.close()


async def test_the_token_budget_bounds_each_pass_and_splits_large_requests():
    model = FakeModel()
    batcher = Batcher("fake", model, cost=lambda _i: 10, max_batch_tokens=30)
    batcher.start()
    try:
        assert await batcher.submit(list(range(7))) == [0, 2, 4, 6, 8, 10, 12]
        assert [len(p) for p in model.passes] == [3, 3, 1]
        # an input over the budget on its own still goes through, alone
        big = Batcher("big", model, cost=lambda _i: 100, max_batch_tokens=30)
        big.start()
        assert await big.submit([1, 2]) == [2, 4]
        assert [len(p) for p in model.passes[-2:]] == [1, 1]
        await big.close()
    finally:
        await batcher.close()


async def test_a_full_queue_answers_429_at_once():
    model = FakeModel()
    model.gate.clear()
    batcher = Batcher("fake", model, max_queue=3)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.to_thread(model.entered.wait, 5)  # the owner is inside a pass, holding [1]
        queued = asyncio.create_task(batcher.submit([2, 3, 4]))
        await _until(lambda: batcher.queued == 3)
        with pytest.raises(TooManyRequestsError) as info:
            await batcher.submit([5])
        assert info.value.status == 429
        assert "queue is full" in info.value.reason
        model.gate.set()
        assert await first == [2]
        assert await queued == [4, 6, 8]
        assert batcher.queued == 0
        assert await batcher.submit([5]) == [10]  # room again
    finally:
        model.gate.set()
        await batcher.close()


async def test_callers_that_have_gone_are_skipped_and_free_their_room():
    model = FakeModel()
    model.gate.clear()
    batcher = Batcher("fake", model, max_queue=4)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.to_thread(model.entered.wait, 5)
        gone = asyncio.create_task(batcher.submit([7, 7, 7, 7]))
        await _until(lambda: batcher.queued == 4)
        gone.cancel()  # e.g. its request timed out
        await asyncio.sleep(0)
        assert batcher.queued == 0  # its room is free before the owner gets to it
        stays = asyncio.create_task(batcher.submit([3]))
        await asyncio.sleep(0.01)
        model.gate.set()
        assert await first == [2]
        assert await stays == [6]
        assert all(7 not in p for p in model.passes), model.passes  # never reached the model
    finally:
        model.gate.set()
        await batcher.close()


async def test_a_failed_pass_fails_its_callers_only():
    calls = []

    def flaky(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return items

    batcher = Batcher("flaky", flaky)
    batcher.start()
    try:
        with pytest.raises(RuntimeError):
            await batcher.submit([1])
        assert await batcher.submit([2]) == [2]
    finally:
        await batcher.close()


async def test_concurrency_runs_passes_side_by_side():
    model = FakeModel(delay=0.1)
    batcher = Batcher("fake", model, max_batch_items=1, concurrency=1)
    batcher.start()
    try:
        began = time.perf_counter()
        await asyncio.gather(*(batcher.submit([i]) for i in range(4)))
        serial = time.perf_counter() - began
        batcher.set_concurrency(4)
        began = time.perf_counter()
        await asyncio.gather(*(batcher.submit([i]) for i in range(4)))
        parallel = time.perf_counter() - began
        assert batcher.concurrency == 4
        assert parallel < serial * 0.6, (serial, parallel)
        batcher.set_concurrency(1)
        assert await batcher.submit([5]) == [10]
    finally:
        await batcher.close()


async def test_while_a_pass_runs_the_next_one_waits_for_the_callers_that_come_back():
    model = FakeModel()
    batcher = Batcher("fake", model, concurrency=2, linger=30.0)  # only the batch forming ends the wait here
    batcher.start()
    try:
        assert await asyncio.gather(*(batcher.submit([i]) for i in range(3))) == [[0], [2], [4]]
        model.gate.clear()
        model.entered.clear()
        held = asyncio.gather(*(batcher.submit([i]) for i in (10, 11, 12)))
        await asyncio.to_thread(model.entered.wait, 5)  # one owner is inside a pass of 3
        back = []
        for i in (20, 21, 22):  # the callers of the last pass come back one by one
            back.append(asyncio.create_task(batcher.submit([i])))
            await asyncio.sleep(0.01)
        await _until(lambda: len(model.passes) == 3)
        assert model.passes[-1] == [20, 21, 22]  # one pass, not three of one input
        # and a lingering owner goes as soon as the running pass ends
        model.gate.set()
        assert await held == [[20], [22], [24]]
        assert [await t for t in back] == [[40], [42], [44]]
        model.gate.clear()
        model.entered.clear()
        held = asyncio.gather(*(batcher.submit([i]) for i in (1, 2, 3)))
        await asyncio.to_thread(model.entered.wait, 5)
        alone = asyncio.create_task(batcher.submit([9]))
        await asyncio.sleep(0.01)
        assert len(model.passes) == 4  # [9] waits for company while the pass of 3 runs
        model.gate.set()
        assert await held == [[2], [4], [6]]
        assert await alone == [18]
    finally:
        model.gate.set()
        await batcher.close()
