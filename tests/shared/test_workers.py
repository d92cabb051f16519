"""Issue 9: `--workers N` on one port, sharing the SQLite store; changes reach every worker within 1 s.

Which worker answers is the kernel's choice (SO_REUSEPORT spreads connections); a keep-alive
connection stays with its worker, and `/metrics` names the worker's pid
(`inference_proxy_process{pid=...}`), so each test session below is pinned to a known worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading

import aiohttp
import pytest

from proxy.registry import Registry
from proxy.secrets import SecretBox
from proxy.settings import load
from proxy.store import sqlite as sqlite_store
from proxy.store.sqlite import SqliteStore
from proxy.types import TaskType
from proxy.workers import prepare_sqlite
from tests.fakes.openai_upstream import fake_vector
from tests.shared.conftest import Pinned, embedding_body, eventually, pin_workers, unique



async def test_registries_on_one_sqlite_file_follow_each_other(tmp_path):
    box = SecretBox(os.urandom(32))
    stores = [SqliteStore(tmp_path / "endpoints.db") for _ in range(2)]
    for s in stores:
        await s.open()
    one, two = (Registry(s, box) for s in stores)
    seen: list[tuple[str, object]] = []
    two.add_listener(lambda i, ep: seen.append((i, ep)))
    for r in (one, two):
        await r.load()
        await r.follow()
    try:
        body = {"service": "openai", "service_settings": {"api_key": "k", "model_id": "m"}}
        await one.create("ep", TaskType.TEXT_EMBEDDING, body)
        took = await eventually(lambda: asyncio.sleep(0, two.get("ep") is not None), 1.0)
        assert two.get("ep").secrets == {"api_key": "k"} and seen[-1][0] == "ep"
        await two.update("ep", None, {"task_settings": {"user": "u"}})
        await eventually(lambda: asyncio.sleep(0, one.get("ep").task_settings == {"user": "u"}), 1.0)
        await one.delete("ep", None, dry_run=False)
        await eventually(lambda: asyncio.sleep(0, two.get("ep") is None), 1.0)
        assert seen[-1] == ("ep", None)
        # a process's own writes are not reported back to it as changes
        n = len(seen)
        await two.create("own", TaskType.TEXT_EMBEDDING, body)
        await asyncio.sleep(0.6)
        assert len(seen) == n + 1
        print(f"create seen by the other registry after {took * 1000:.0f} ms")
    finally:
        for r in (one, two):
            await r.close()
        for s in stores:
            await s.close()


@pytest.mark.slow
async def test_two_workers_share_one_port_and_the_sqlite_store(gateways, session, upstream):
    gw = gateways("w", workers=2)
    await gw.wait_ready(session)
    by_pid: dict[int, Pinned] = {}
    try:
        by_pid = await pin_workers(gw.base, log=gw.log)
        first, second = by_pid.values()
        assert first.pid != second.pid and gw.proc.pid not in by_pid
        ep = unique("workers")

        assert await first.status("PUT", f"/_inference/text_embedding/{ep}", json=embedding_body(upstream)) == 200
        assert await first.identify() == first.pid  # still the same worker

        async def on_second() -> bool:
            return await second.status("GET", f"/_inference/{ep}") == 200

        took = await eventually(on_second, 1.0)
        print(f"create seen by the other worker after {took * 1000:.0f} ms")
        async with second.session.post(f"{gw.base}/_inference/text_embedding/{ep}", json={"input": "hi"}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["text_embedding"][0]["embedding"] == pytest.approx(fake_vector("hi"), abs=1e-6)
        assert await second.identify() == second.pid

        assert await second.status("DELETE", f"/_inference/{ep}") == 200

        async def gone_on_first() -> bool:
            return await first.status("GET", f"/_inference/{ep}") == 404

        await eventually(gone_on_first, 1.0)

        # a worker that dies is replaced; the port keeps answering
        os.kill(first.pid, signal.SIGKILL)
        await first.session.close()

        async def replaced() -> bool:
            p = Pinned(gw.base)
            try:
                return await p.identify() not in (first.pid, 0) and p.pid != second.pid
            except aiohttp.ClientError:
                return False
            finally:
                await p.session.close()

        await eventually(replaced, 20.0, interval=0.1)
        assert "restarting it" in gw.log()
    finally:
        for p in by_pid.values():
            await p.session.close()
    # SIGTERM to the supervisor stops every worker
    gw.proc.terminate()
    assert gw.proc.wait(timeout=30) == 0


@pytest.mark.slow
async def test_workers_that_cannot_start_stop_the_supervisor(gateways):
    gw = gateways("w", workers=2, store="mysql://nowhere/db")
    assert gw.proc.wait(timeout=60) == 2
    assert "unsupported store" in gw.log() and "before it listened" in gw.log()


# ------------------------------------------------------------------------------ a fresh data directory


def _writer_holding_the_lock(path, seconds: float) -> None:
    """Another process's connection in the middle of a write transaction, for `seconds`."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE IF NOT EXISTS other (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO other VALUES (1)")
    threading.Timer(seconds, lambda: (other.execute("COMMIT"), other.close())).start()


def test_switching_a_busy_file_to_wal_waits_instead_of_failing(tmp_path):
    path = tmp_path / "endpoints.db"
    _writer_holding_the_lock(path, 0.3)
    # what a worker did before: SQLite does not wait for a lock when switching to WAL, busy timeout or not
    plain = sqlite3.connect(path, isolation_level=None, timeout=5)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        plain.execute("PRAGMA journal_mode=WAL")
    plain.close()
    conn = sqlite_store.connect(path)  # waits for the writer, then switches
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("SELECT count(*) FROM other").fetchone()[0] == 1
    finally:
        conn.close()


def test_the_supervisor_prepares_the_sqlite_store_before_the_workers_start(tmp_path):
    prepare_sqlite(load({"data_dir": str(tmp_path / "data")}, env={}))
    elsewhere = f"sqlite://{tmp_path / 'elsewhere.db'}"
    prepare_sqlite(load({"data_dir": str(tmp_path / "other"), "store": elsewhere}, env={}))
    prepare_sqlite(load({"data_dir": str(tmp_path / "pg"), "store": "postgresql://nowhere/db"}, env={}))
    for path in (tmp_path / "data" / "endpoints.db", tmp_path / "elsewhere.db"):
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert {"endpoints", "api_keys", "usage"} <= tables
        finally:
            conn.close()
    assert not (tmp_path / "other" / "endpoints.db").exists()  # the store lives elsewhere
    assert not (tmp_path / "pg").exists() or not list((tmp_path / "pg").iterdir())
