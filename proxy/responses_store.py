"""Stored Responses API responses (`store: true`), for `GET`/`DELETE /v1/responses/{id}` and
`previous_response_id`.

SQLite next to the endpoints (`responses.db` in the data directory, mode 0600: it holds conversations),
on one writer thread so the event loop never blocks. Each row keeps the rendered response and the
conversation it ends (canonical messages, without instructions), so a follow-up needs one read, and
the API key that made it: another key neither reads, continues nor deletes it.
Several workers on one machine share the file; replicas on several machines do not share it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from .types import ChatMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id         TEXT PRIMARY KEY,
    response   BLOB NOT NULL,
    messages   BLOB NOT NULL,
    owner      TEXT NOT NULL,
    created_at REAL NOT NULL DEFAULT (julianday('now'))
)
"""

_messages = msgspec.json.Decoder(list[ChatMessage])
_any = msgspec.json.Decoder(dict[str, Any])


class ResponseStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="responses-store")
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def put(self, response: dict[str, Any], messages: list[ChatMessage], owner: str) -> None:
        """`owner`: the id of the API key that made the response ("" while access control is off)."""
        row = (response["id"], msgspec.json.encode(response), msgspec.json.encode(messages), owner)
        await self._run(lambda: self._db().execute(
            "INSERT OR REPLACE INTO responses (id, response, messages, owner) VALUES (?, ?, ?, ?)", row))

    async def get(self, response_id: str, owner: str) -> tuple[dict[str, Any], list[ChatMessage]] | None:
        row = await self._run(lambda: self._db().execute(
            "SELECT response, messages FROM responses WHERE id = ? AND owner = ?", (response_id, owner)).fetchone())
        if row is None:
            return None
        return _any.decode(row[0]), _messages.decode(row[1])

    async def delete(self, response_id: str, owner: str) -> bool:
        cursor = await self._run(lambda: self._db().execute(
            "DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner)))
        return cursor.rowcount > 0

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(close)
        self._executor.shutdown(wait=False)
