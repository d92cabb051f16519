"""The embedded default store: SQLite in WAL mode, every statement on one writer thread.

`synchronous=FULL` makes each acknowledged write durable before the HTTP answer goes out, so a
`kill -9` (or a power cut) right after the answer loses nothing. The event loop never blocks on
the database: all calls go through a single-thread executor, which also serialises writers.

Several processes may share the file (`--workers N`): `watch` polls `PRAGMA data_version` on that
same thread every 250 ms, which changes only when another connection committed, and then asks the
registry to compare its map with the file. The supervisor of `--workers` calls `prepare` before the
workers start, so they never race to create the file or switch it to WAL.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..errors import ServiceUnavailableError
from .base import ChangeCallback, StoredEndpoint, StoredKey, StoredResponse, UsageRow
from .files import private_file

R = TypeVar("R")
POLL_INTERVAL = 0.25
BUSY_TIMEOUT_S = 5.0  # how long a statement waits for another connection's lock before "database is locked"
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
_DOCUMENTS = "CREATE TABLE IF NOT EXISTS documents (doc_id TEXT PRIMARY KEY, body BLOB NOT NULL)"

_KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    owner          TEXT NOT NULL DEFAULT '',
    digest         BLOB NOT NULL,
    created_at     REAL NOT NULL,
    expiration     REAL,
    invalidated_at REAL,
    doc            BLOB NOT NULL DEFAULT '{}'
)
"""
# keys written by the first `inference-proxy keys` (role and revoked columns) gain the new columns
_KEYS_FROM_ROLES = (
    "ALTER TABLE api_keys ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE api_keys ADD COLUMN expiration REAL",
    "ALTER TABLE api_keys ADD COLUMN invalidated_at REAL",
    "ALTER TABLE api_keys ADD COLUMN doc BLOB NOT NULL DEFAULT '{}'",
    "UPDATE api_keys SET owner = name, doc = '{\"roles\":[\"' || role || '\"]}', "
    "invalidated_at = CASE WHEN revoked = 1 THEN created_at END",
)
_USAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    bucket        INTEGER NOT NULL,
    key_id        TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    requests      INTEGER NOT NULL DEFAULT 0,
    errors        INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, key_id, endpoint)
)
"""
_RESPONSES_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    body       BLOB NOT NULL,
    created_at REAL NOT NULL
)
"""
_RESPONSES_INDEX = "CREATE INDEX IF NOT EXISTS responses_created_at ON responses (created_at)"  # retention
_KEY_COLUMNS = "id, name, owner, digest, created_at, expiration, invalidated_at, doc"
_USAGE_COLUMNS = "bucket, key_id, endpoint, requests, errors, input_tokens, output_tokens"


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with the schema in place, that waits for locks instead of failing.

    The busy timeout comes first, so every later statement waits up to BUSY_TIMEOUT_S for another
    process's lock. Switching the file to WAL is the exception: SQLite answers SQLITE_BUSY at once,
    without calling the busy handler, when another connection holds a lock at that moment ("database
    is locked" in a worker started next to another on a fresh file), so that switch is retried until
    the same deadline. `prepare` does it all once before `--workers` processes start, after which the
    file is in WAL already and no worker needs to switch it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_file(path)  # 0600 before SQLite creates it, so its -wal and -shm files are 0600 too
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(api_keys)")}
        if columns and "doc" not in columns:
            with conn:  # one transaction: a crash leaves the old table as it was
                conn.execute("BEGIN IMMEDIATE")
                for statement in _KEYS_FROM_ROLES:
                    conn.execute(statement)
        conn.execute(_KEYS_SCHEMA)
        conn.execute(_USAGE_SCHEMA)
        conn.execute(_DOCUMENTS)
        conn.execute(_RESPONSES_SCHEMA)
        conn.execute(_RESPONSES_INDEX)
    except BaseException:
        conn.close()
        raise
    return conn


def prepare(path: Path) -> None:
    """Create the file, switch it to WAL and create or migrate the tables, once, before several processes
    open it."""
    connect(path).close()


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._watcher: asyncio.Task | None = None
        self._key_listeners: list[Callable[[], None]] = []

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except (sqlite3.OperationalError, sqlite3.InternalError) as exc:
            # locked past busy_timeout, disk full, I/O error, a read-only or vanished file
            log.warning("endpoint store unavailable: %s", exc)
            raise ServiceUnavailableError("The endpoint store is unavailable; retry later") from exc
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # integrity and programming errors are not outages
                raise
            log.error("endpoint store unreadable: %s", exc)  # "database disk image is malformed"
            raise ServiceUnavailableError("The endpoint store is unavailable; retry later") from exc

    def _connect(self) -> None:
        self._conn = connect(self.path)

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
                except (sqlite3.Error, ServiceUnavailableError, RuntimeError) as exc:  # RuntimeError: shut down
                    log.warning("polling the endpoint store for changes failed: %s", exc)
                    continue
                if version != seen:
                    seen = version
                    callback(None)
                    for listener in self._key_listeners:
                        listener()

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

    # ------------------------------------------------------------------ keys and usage

    def watch_keys(self, callback: Callable[[], None]) -> None:
        self._key_listeners.append(callback)

    def _load_keys(self) -> list[StoredKey]:
        assert self._conn is not None
        rows = self._conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at")
        return [StoredKey(id=r[0], name=r[1], owner=r[2], digest=bytes(r[3]), created_at=r[4], expiration=r[5],
                          invalidated_at=r[6], doc=bytes(r[7])) for r in rows]

    def _insert_key(self, k: StoredKey) -> bool:
        assert self._conn is not None
        try:
            self._conn.execute(f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               (k.id, k.name, k.owner, k.digest, k.created_at, k.expiration, k.invalidated_at,
                                k.doc))
        except sqlite3.IntegrityError:
            return False
        return True

    def _invalidate_keys(self, ids: list[str], at: float) -> list[str]:
        assert self._conn is not None
        done = []
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            for key_id in ids:
                cur = self._conn.execute("UPDATE api_keys SET invalidated_at = ? WHERE id = ? AND "
                                         "invalidated_at IS NULL", (at, key_id))
                if cur.rowcount == 1:
                    done.append(key_id)
        return done

    def _add_usage(self, rows: list[UsageRow]) -> None:
        assert self._conn is not None
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                f"INSERT INTO usage ({_USAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (bucket, key_id, endpoint) DO UPDATE SET requests = requests + excluded.requests, "
                "errors = errors + excluded.errors, input_tokens = input_tokens + excluded.input_tokens, "
                "output_tokens = output_tokens + excluded.output_tokens",
                [(r.bucket, r.key_id, r.endpoint, r.requests, r.errors, r.input_tokens, r.output_tokens)
                 for r in rows])

    def _query_usage(self, key_id: str | None, endpoint: str | None, start: int, end: int) -> list[UsageRow]:
        assert self._conn is not None
        rows = self._conn.execute(
            f"SELECT {_USAGE_COLUMNS} FROM usage WHERE bucket >= ? AND bucket < ? AND (? IS NULL OR key_id = ?) "
            "AND (? IS NULL OR endpoint = ?) ORDER BY bucket", (start, end, key_id, key_id, endpoint, endpoint))
        return [UsageRow(bucket=r[0], key_id=r[1], endpoint=r[2], requests=r[3], errors=r[4], input_tokens=r[5],
                         output_tokens=r[6]) for r in rows]

    async def load_keys(self) -> list[StoredKey]:
        return await self._run(self._load_keys)

    async def insert_key(self, key: StoredKey) -> bool:
        return await self._run(self._insert_key, key)

    async def invalidate_keys(self, ids: list[str], at: float) -> list[str]:
        return await self._run(self._invalidate_keys, ids, at)

    async def add_usage(self, rows: list[UsageRow]) -> None:
        await self._run(self._add_usage, rows)

    async def query_usage(self, key_id: str | None, endpoint: str | None, start: int, end: int) -> list[UsageRow]:
        return await self._run(self._query_usage, key_id, endpoint, start, end)

    def _load_documents(self) -> dict[str, bytes]:
        assert self._conn is not None
        return {r[0]: bytes(r[1]) for r in self._conn.execute("SELECT doc_id, body FROM documents")}

    def _get_document(self, doc_id: str) -> bytes | None:
        assert self._conn is not None
        r = self._conn.execute("SELECT body FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return None if r is None else bytes(r[0])

    def _put_document(self, doc_id: str, body: bytes) -> None:
        assert self._conn is not None
        self._conn.execute("INSERT INTO documents (doc_id, body) VALUES (?, ?) "
                           "ON CONFLICT (doc_id) DO UPDATE SET body = excluded.body", (doc_id, body))

    def _delete_document(self, doc_id: str) -> bool:
        assert self._conn is not None
        return self._conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,)).rowcount == 1

    async def load_documents(self) -> dict[str, bytes]:
        return await self._run(self._load_documents)

    async def get_document(self, doc_id: str) -> bytes | None:
        return await self._run(self._get_document, doc_id)

    async def put_document(self, doc_id: str, body: bytes) -> None:
        await self._run(self._put_document, doc_id, body)

    async def delete_document(self, doc_id: str) -> bool:
        return await self._run(self._delete_document, doc_id)

    # ------------------------------------------------------------------ responses

    def _put_response(self, r: StoredResponse) -> None:
        assert self._conn is not None
        self._conn.execute("INSERT OR REPLACE INTO responses (id, owner, body, created_at) VALUES (?, ?, ?, ?)",
                           (r.id, r.owner, r.body, r.created_at))

    def _get_response(self, response_id: str, owner: str) -> StoredResponse | None:
        assert self._conn is not None
        r = self._conn.execute("SELECT id, owner, body, created_at FROM responses WHERE id = ? AND owner = ?",
                               (response_id, owner)).fetchone()
        return None if r is None else StoredResponse(id=r[0], owner=r[1], body=bytes(r[2]), created_at=r[3])

    def _delete_response(self, response_id: str, owner: str) -> bool:
        assert self._conn is not None
        return self._conn.execute("DELETE FROM responses WHERE id = ? AND owner = ?",
                                  (response_id, owner)).rowcount == 1

    def _delete_responses_before(self, cutoff: float) -> int:
        assert self._conn is not None
        return self._conn.execute("DELETE FROM responses WHERE created_at < ?", (cutoff,)).rowcount

    async def delete_responses_before(self, cutoff: float) -> int:
        return await self._run(self._delete_responses_before, cutoff)

    async def put_response(self, row: StoredResponse) -> None:
        await self._run(self._put_response, row)

    async def get_response(self, response_id: str, owner: str) -> StoredResponse | None:
        return await self._run(self._get_response, response_id, owner)

    async def delete_response(self, response_id: str, owner: str) -> bool:
        return await self._run(self._delete_response, response_id, owner)
