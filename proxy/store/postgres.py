"""The shared store: PostgreSQL through asyncpg, for several gateway replicas.

- The schema is created and migrated on start, under a transaction-scoped advisory lock so that
  replicas starting together do not race; `schema_version` records what was applied, and a gateway
  refuses to start on a schema newer than it knows.
- An acknowledged write is a committed transaction (PostgreSQL's default `synchronous_commit=on`):
  a `kill -9` of the gateway right after its answer loses nothing.
- A row trigger calls `pg_notify` on every insert, update and delete, in the writing transaction,
  so the notification goes out exactly when the change commits, whoever made it (a replica or an
  operator with psql). The payload is `inference_id|application_name`; each replica connects with
  its own application name and so ignores its own writes. Every replica LISTENs on one dedicated
  connection; when that connection drops it reconnects and asks for a full comparison, since
  notifications sent while it was away are lost.
- The channel name is derived from the database and the table's schema, so gateways that keep
  their endpoints in different schemas of one database (`?search_path=...` in the URL) do not hear
  each other.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from typing import Any

try:
    import asyncpg
except ImportError:  # pragma: no cover - the `shared` extra is not installed
    asyncpg = None  # type: ignore[assignment]

from ..errors import ServiceUnavailableError
from .base import ChangeCallback, StartupError, StoredEndpoint, StoredKey, StoredResponse, UsageRow, redact

log = logging.getLogger("proxy.store")

_LOCK_KEY = 0x1F0E_7A11  # pg_advisory_xact_lock key held while migrating
_CONNECT_FOR = 10.0  # seconds to keep trying to reach the database at start
_WATCHDOG_EVERY = 5.0  # seconds between liveness checks of the LISTEN connection

_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION inference_proxy_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('inference_proxy_' || md5(current_database() || '.' || TG_TABLE_SCHEMA),
                      (CASE TG_OP WHEN 'DELETE' THEN OLD.inference_id ELSE NEW.inference_id END)
                      || '|' || current_setting('application_name'));
    RETURN NULL;
END
$$
"""

# API keys ride the endpoints' channel; a payload `/keys|origin` cannot be an endpoint id (ids have no `/`)
_NOTIFY_KEYS_FUNCTION = """
CREATE OR REPLACE FUNCTION inference_proxy_notify_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('inference_proxy_' || md5(current_database() || '.' || TG_TABLE_SCHEMA),
                      '/keys|' || current_setting('application_name'));
    RETURN NULL;
END
$$
"""
KEYS_PAYLOAD = "/keys"

# version -> statements; append new versions, never edit applied ones
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE endpoints (
            inference_id text PRIMARY KEY,
            task_type    text NOT NULL,
            service      text NOT NULL,
            config       bytea NOT NULL,
            secrets      bytea NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now()
        )""",
        _NOTIFY_FUNCTION,
        """CREATE TRIGGER endpoints_changed AFTER INSERT OR UPDATE OR DELETE ON endpoints
           FOR EACH ROW EXECUTE FUNCTION inference_proxy_notify()""",
    ]),
    (2, [
        """CREATE TABLE api_keys (
            id             text PRIMARY KEY,
            name           text NOT NULL,
            owner          text NOT NULL,
            digest         bytea NOT NULL,
            created_at     double precision NOT NULL,
            expiration     double precision,
            invalidated_at double precision,
            doc            bytea NOT NULL
        )""",
        _NOTIFY_KEYS_FUNCTION,
        """CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
           FOR EACH STATEMENT EXECUTE FUNCTION inference_proxy_notify_keys()""",
        """CREATE TABLE usage (
            bucket        bigint NOT NULL,
            key_id        text NOT NULL,
            endpoint      text NOT NULL,
            requests      bigint NOT NULL DEFAULT 0,
            errors        bigint NOT NULL DEFAULT 0,
            input_tokens  bigint NOT NULL DEFAULT 0,
            output_tokens bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (bucket, key_id, endpoint)
        )""",
    ]),
    (3, [
        # gateway-wide documents (the region policy), announced on the endpoints' channel by their id
        """CREATE TABLE documents (
            doc_id     text PRIMARY KEY,
            body       bytea NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )""",
        """CREATE OR REPLACE FUNCTION inference_proxy_notify_document() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('inference_proxy_' || md5(current_database() || '.' || TG_TABLE_SCHEMA),
                      (CASE TG_OP WHEN 'DELETE' THEN OLD.doc_id ELSE NEW.doc_id END)
                      || '|' || current_setting('application_name'));
    RETURN NULL;
END
$$""",
        """CREATE TRIGGER documents_changed AFTER INSERT OR UPDATE OR DELETE ON documents
           FOR EACH ROW EXECUTE FUNCTION inference_proxy_notify_document()""",
    ]),
    (4, [
        # Responses API responses, read by id and owner only (no change feed: nothing is cached)
        """CREATE TABLE responses (
            id         text PRIMARY KEY,
            owner      text NOT NULL,
            body       bytea NOT NULL,
            created_at double precision NOT NULL
        )""",
        "CREATE INDEX responses_created_at ON responses (created_at)",  # the retention sweep
    ]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
_KEY_COLUMNS = "id, name, owner, digest, created_at, expiration, invalidated_at, doc"
_USAGE_COLUMNS = "bucket, key_id, endpoint, requests, errors, input_tokens, output_tokens"

_COLUMNS = "inference_id, task_type, service, config, secrets"


def _record(row: Any) -> StoredEndpoint:
    return StoredEndpoint(inference_id=row[0], task_type=row[1], service=row[2], config=bytes(row[3]),
                          secrets=bytes(row[4]))


# SQLSTATE classes of a database that cannot serve now: 08 connection, 53 insufficient resources,
# 57 operator intervention (shutdown, terminated backend), 58 system error
_OUTAGE_CLASSES = ("08", "53", "57", "58")


def _unreachable(exc: BaseException) -> bool:
    if asyncpg is None:
        return False
    if isinstance(exc, asyncpg.PostgresError):
        return (getattr(exc, "sqlstate", None) or "")[:2] in _OUTAGE_CLASSES
    # InternalClientError: asyncpg's pool or protocol losing track of a connection killed mid-call
    return isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError))


class PostgresStore:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._sizes = (min_size, max_size)
        # this process's writes carry this name; the trigger puts it in each notification
        self.origin = f"inference-proxy/{os.getpid()}/{os.urandom(4).hex()}"
        self._pool: Any = None
        self.channel = ""
        self._watcher: asyncio.Task | None = None
        self._listen_conn: Any = None
        self._key_listeners: list[Any] = []

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.dsn)!r})"

    # ------------------------------------------------------------------ lifecycle

    async def _connect(self, **kw: Any) -> Any:
        return await asyncpg.connect(self.dsn, server_settings={"application_name": self.origin}, timeout=5,
                                     **kw)

    async def open(self) -> None:
        if asyncpg is None:
            raise StartupError("a postgresql:// store needs asyncpg: pip install 'inference-proxy[shared]'")
        started = time.monotonic()
        while True:
            try:
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=self._sizes[0], max_size=self._sizes[1], timeout=5, command_timeout=30,
                    server_settings={"application_name": self.origin})
                break
            except Exception as exc:
                if not _unreachable(exc) or time.monotonic() - started > _CONNECT_FOR:
                    raise StartupError(f"cannot open the endpoint store [{redact(self.dsn)}]: "
                                       f"{type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(0.5)
        try:
            async with self._pool.acquire() as conn:
                await self._migrate(conn)
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise
        log.info("endpoint store: %s (schema version %d)", redact(self.dsn), SCHEMA_VERSION)

    async def _migrate(self, conn: Any) -> None:
        database, schema = await conn.fetchrow("SELECT current_database(), current_schema()")
        if schema is None:
            raise StartupError(f"the store [{redact(self.dsn)}] has no schema to create tables in: create the "
                               f"schema named in its search_path first")
        self.channel = "inference_proxy_" + hashlib.md5(f"{database}.{schema}".encode()).hexdigest()
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                               "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            if current > SCHEMA_VERSION:
                raise StartupError(f"the store's schema is at version {current}, newer than this gateway's "
                                   f"{SCHEMA_VERSION}: upgrade the gateway")
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
                log.info("endpoint store migrated to schema version %d", version)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        await self._drop_listener()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # ------------------------------------------------------------------ change feed

    async def watch(self, callback: ChangeCallback) -> None:
        """LISTEN for changes made by other processes; returns once listening."""

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            inference_id, _, origin = payload.partition("|")
            if origin == self.origin:
                return
            if inference_id == KEYS_PAYLOAD:
                for listener in self._key_listeners:
                    listener()
            else:
                callback(inference_id)

        lost = asyncio.Event()
        await self._listen(on_notify, lost)

        async def keep_listening() -> None:
            while True:
                try:
                    await asyncio.wait_for(lost.wait(), _WATCHDOG_EVERY)
                except asyncio.TimeoutError:
                    try:  # a silent network cut is only noticed by asking
                        await self._listen_conn.fetchval("SELECT 1", timeout=2)
                        continue
                    except Exception:
                        pass
                log.warning("lost the endpoint store's change feed; reconnecting")
                await self._drop_listener()
                delay = 0.25
                while True:
                    lost.clear()
                    try:
                        await self._listen(on_notify, lost)
                        break
                    except Exception as exc:
                        log.warning("the endpoint store is unreachable (%s: %s); retrying in %.1f s",
                                    type(exc).__name__, exc, delay)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)
                log.info("endpoint store change feed restored")
                callback(None)  # notifications sent meanwhile are lost: compare everything
                for listener in self._key_listeners:
                    listener()

        self._watcher = asyncio.create_task(keep_listening(), name="postgres-store-watch")

    async def _listen(self, on_notify: Any, lost: asyncio.Event) -> None:
        conn = await self._connect()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(self.channel, on_notify)
        except BaseException:
            conn.terminate()
            raise
        self._listen_conn = conn

    async def _drop_listener(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                conn.terminate()

    # ------------------------------------------------------------------ reads and writes

    async def _call(self, method: str, query: str, *args: Any) -> Any:
        try:
            return await getattr(self._pool, method)(query, *args)
        except Exception as exc:
            if _unreachable(exc):
                log.warning("endpoint store unreachable: %s: %s", type(exc).__name__, exc)
                raise ServiceUnavailableError("The endpoint store is unavailable; retry later") from exc
            raise

    async def load_all(self) -> list[StoredEndpoint]:
        rows = await self._call("fetch", f"SELECT {_COLUMNS} FROM endpoints ORDER BY inference_id")
        return [_record(r) for r in rows]

    async def get(self, inference_id: str) -> StoredEndpoint | None:
        row = await self._call("fetchrow", f"SELECT {_COLUMNS} FROM endpoints WHERE inference_id = $1",
                               inference_id)
        return None if row is None else _record(row)

    async def insert(self, record: StoredEndpoint) -> bool:
        status = await self._call(
            "execute", f"INSERT INTO endpoints ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
                       f"ON CONFLICT (inference_id) DO NOTHING",
            record.inference_id, record.task_type, record.service, record.config, record.secrets)
        return status == "INSERT 0 1"

    async def replace(self, record: StoredEndpoint) -> bool:
        status = await self._call(
            "execute", "UPDATE endpoints SET task_type = $2, service = $3, config = $4, secrets = $5, "
                       "updated_at = now() WHERE inference_id = $1",
            record.inference_id, record.task_type, record.service, record.config, record.secrets)
        return status == "UPDATE 1"

    async def delete(self, inference_id: str) -> bool:
        status = await self._call("execute", "DELETE FROM endpoints WHERE inference_id = $1", inference_id)
        return status == "DELETE 1"

    # ------------------------------------------------------------------ keys and usage

    def watch_keys(self, callback: Any) -> None:
        self._key_listeners.append(callback)

    async def load_keys(self) -> list[StoredKey]:
        rows = await self._call("fetch", f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at")
        return [StoredKey(id=r[0], name=r[1], owner=r[2], digest=bytes(r[3]), created_at=r[4], expiration=r[5],
                          invalidated_at=r[6], doc=bytes(r[7])) for r in rows]

    async def insert_key(self, key: StoredKey) -> bool:
        status = await self._call(
            "execute", f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                       "ON CONFLICT (id) DO NOTHING",
            key.id, key.name, key.owner, key.digest, key.created_at, key.expiration, key.invalidated_at, key.doc)
        return status == "INSERT 0 1"

    async def invalidate_keys(self, ids: list[str], at: float) -> list[str]:
        rows = await self._call("fetch", "UPDATE api_keys SET invalidated_at = $2 WHERE id = ANY($1::text[]) AND "
                                         "invalidated_at IS NULL RETURNING id", ids, at)
        done = {r[0] for r in rows}
        return [i for i in ids if i in done]

    async def add_usage(self, rows: list[UsageRow]) -> None:
        await self._call(
            "executemany",
            f"INSERT INTO usage ({_USAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (bucket, key_id, endpoint) DO UPDATE SET requests = usage.requests + excluded.requests, "
            "errors = usage.errors + excluded.errors, input_tokens = usage.input_tokens + excluded.input_tokens, "
            "output_tokens = usage.output_tokens + excluded.output_tokens",
            [(r.bucket, r.key_id, r.endpoint, r.requests, r.errors, r.input_tokens, r.output_tokens) for r in rows])

    async def query_usage(self, key_id: str | None, endpoint: str | None, start: int, end: int) -> list[UsageRow]:
        rows = await self._call(
            "fetch", f"SELECT {_USAGE_COLUMNS} FROM usage WHERE bucket >= $1 AND bucket < $2 "
                     "AND ($3::text IS NULL OR key_id = $3) AND ($4::text IS NULL OR endpoint = $4) ORDER BY bucket",
            start, end, key_id, endpoint)
        return [UsageRow(bucket=r[0], key_id=r[1], endpoint=r[2], requests=r[3], errors=r[4], input_tokens=r[5],
                         output_tokens=r[6]) for r in rows]

    async def load_documents(self) -> dict[str, bytes]:
        rows = await self._call("fetch", "SELECT doc_id, body FROM documents")
        return {r[0]: bytes(r[1]) for r in rows}

    async def get_document(self, doc_id: str) -> bytes | None:
        body = await self._call("fetchval", "SELECT body FROM documents WHERE doc_id = $1", doc_id)
        return None if body is None else bytes(body)

    async def put_document(self, doc_id: str, body: bytes) -> None:
        await self._call("execute", "INSERT INTO documents (doc_id, body) VALUES ($1, $2) ON CONFLICT (doc_id) "
                                    "DO UPDATE SET body = excluded.body, updated_at = now()", doc_id, body)

    async def delete_document(self, doc_id: str) -> bool:
        status = await self._call("execute", "DELETE FROM documents WHERE doc_id = $1", doc_id)
        return status == "DELETE 1"

    async def put_response(self, row: StoredResponse) -> None:
        await self._call("execute", "INSERT INTO responses (id, owner, body, created_at) VALUES ($1, $2, $3, $4) "
                                    "ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, body = excluded.body, "
                                    "created_at = excluded.created_at", row.id, row.owner, row.body, row.created_at)

    async def get_response(self, response_id: str, owner: str) -> StoredResponse | None:
        r = await self._call("fetchrow", "SELECT id, owner, body, created_at FROM responses WHERE id = $1 AND "
                                         "owner = $2", response_id, owner)
        return None if r is None else StoredResponse(id=r[0], owner=r[1], body=bytes(r[2]), created_at=r[3])

    async def delete_response(self, response_id: str, owner: str) -> bool:
        status = await self._call("execute", "DELETE FROM responses WHERE id = $1 AND owner = $2",
                                  response_id, owner)
        return status == "DELETE 1"

    async def delete_responses_before(self, cutoff: float) -> int:
        status = await self._call("execute", "DELETE FROM responses WHERE created_at < $1", cutoff)
        return int(status.split()[-1])
