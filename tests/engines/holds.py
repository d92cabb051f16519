"""Hold E5's weight load or forward pass until a test opens a gate, so that a model stays `loading` or a
queue stays full for as long as the test needs (the gates open by themselves after `timeout` seconds)."""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp

from engines import cpu


def hold_e5_load(monkeypatch, timeout: float = 30) -> threading.Event:
    gate = threading.Event()
    real_load = cpu.E5Engine._load

    def held_load(self):
        gate.wait(timeout)
        real_load(self)

    monkeypatch.setattr(cpu.E5Engine, "_load", held_load)
    return gate


def hold_e5_runs(monkeypatch, timeout: float = 20) -> tuple[threading.Event, threading.Event]:
    """(gate, entered): `entered` is set once a forward pass is waiting at the gate."""
    gate, entered = threading.Event(), threading.Event()
    real_run = cpu.E5Engine._run

    def held_run(self, items):
        entered.set()
        gate.wait(timeout)
        return real_run(self, items)

    monkeypatch.setattr(cpu.E5Engine, "_run", held_run)
    return gate, entered


async def until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def check_a_full_queue_answers_429(url, batcher, gate: threading.Event, entered: threading.Event) -> None:
    """With `local_queue_size=2` and the runs held: one input in the pass, two queued, the next refused."""
    async with aiohttp.ClientSession() as http:
        first = asyncio.create_task(http.post(url, json={"input": ["in the pass"]}))
        await asyncio.to_thread(entered.wait, 10)
        second = asyncio.create_task(http.post(url, json={"input": ["queued", "queued too"]}))
        await until(lambda: batcher().queued == 2)
        async with http.post(url, json={"input": ["one too many"]}) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "1"
            assert "queue is full" in (await resp.json())["error"]["reason"]
        gate.set()
        for task in (first, second):
            resp = await task
            assert resp.status == 200
            resp.release()
