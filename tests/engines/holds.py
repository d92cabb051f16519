"""Hold E5's weight load or forward pass until a test opens a gate, so that a model stays `loading` or a
queue stays full for as long as the test needs (the gates open by themselves after `timeout` seconds)."""

from __future__ import annotations

import threading

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
