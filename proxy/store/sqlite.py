"""The embedded default store: SQLite in WAL mode, every statement on one writer thread.

`synchronous=FULL` makes each acknowledged write durable before the HTTP answer goes out, so a
`kill -9` (or a power cut) right after the answer loses nothing. The event loop never blocks on
the database: all calls go through a single-thread executor, which also serialises writers.

Several processes may share the file (`--workers N`): `watch` polls `PRAGMA data_version` on that
same thread every 250 ms, which changes only when another connection committed, and then asks the
registry to compare its map with the file.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from .base import ChangeCallback, StoredEndpoint

R = TypeVar("R")
POLL_INTERVAL = 0.25
log = logging.getLogger("proxy.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    inference_id TEXT PRIMARY KEY,
    task_type    TEXT NOT NULL,
    service      TEXT NOT NULL,
    config       BLOB NOT NULL,
    secrets      BLOB NOT NULL,
    updated_at   REAL NOT NULL DEFAULT (julianday('now'))
)
"""


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._watcher: asyncio.Task | None = None

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute(_SCHEMA)
        self._conn = conn

    async def open(self) -> None:
        await self._run(self._connect)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    def _load_all(self) -> list[StoredEndpoint]:
        assert self._conn is not None
        rows = self._conn.execute(
            "SELECT inference_id, task_type, service, config, secrets FROM endpoints ORDER BY inference_id")
        return [StoredEndpoint(inference_id=r[0], task_type=r[1], service=r[2], config=bytes(r[3]),
                               secrets=bytes(r[4])) for r in rows]

    def _get(self, inference_id: str) -> StoredEndpoint | None:
        assert self._conn is not None
        r = self._conn.execute("SELECT inference_id, task_type, service, config, secrets FROM endpoints "
                               "WHERE inference_id = ?", (inference_id,)).fetchone()
        return None if r is None else StoredEndpoint(inference_id=r[0], task_type=r[1], service=r[2],
                                                     config=bytes(r[3]), secrets=bytes(r[4]))

    def _data_version(self) -> int:
        assert self._conn is not None
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    async def watch(self, callback: ChangeCallback) -> None:
        """Report commits made by other connections (other workers, other processes) within ~250 ms."""
        first = await self._run(self._data_version)

        async def poll() -> None:
            seen = first
            while True:
                await asyncio.sleep(POLL_INTERVAL)
                try:
                    version = await self._run(self._data_version)
                except (sqlite3.Error, RuntimeError) as exc:  # RuntimeError: executor shut down
                    log.warning("polling the endpoint store for changes failed: %s", exc)
                    continue
                if version != seen:
                    seen = version
                    callback(None)

        self._watcher = asyncio.create_task(poll(), name="sqlite-store-watch")

    def _insert(self, rec: StoredEndpoint) -> bool:
        assert self._conn is not None
        try:
            self._conn.execute(
                "INSERT INTO endpoints (inference_id, task_type, service, config, secrets) VALUES (?, ?, ?, ?, ?)",
                (rec.inference_id, rec.task_type, rec.service, rec.config, rec.secrets))
        except sqlite3.IntegrityError:
            return False
        return True

    def _replace(self, rec: StoredEndpoint) -> bool:
        assert self._conn is not None
        cur = self._conn.execute(
            "UPDATE endpoints SET task_type = ?, service = ?, config = ?, secrets = ?, "
            "updated_at = julianday('now') WHERE inference_id = ?",
            (rec.task_type, rec.service, rec.config, rec.secrets, rec.inference_id))
        return cur.rowcount == 1

    def _delete(self, inference_id: str) -> bool:
        assert self._conn is not None
        return self._conn.execute("DELETE FROM endpoints WHERE inference_id = ?", (inference_id,)).rowcount == 1

    async def load_all(self) -> list[StoredEndpoint]:
        return await self._run(self._load_all)

    async def get(self, inference_id: str) -> StoredEndpoint | None:
        return await self._run(self._get, inference_id)

    async def insert(self, record: StoredEndpoint) -> bool:
        return await self._run(self._insert, record)

    async def replace(self, record: StoredEndpoint) -> bool:
        return await self._run(self._replace, record)

    async def delete(self, inference_id: str) -> bool:
        return await self._run(self._delete, inference_id)
