"""Stored Responses API responses expire after `responses_retention_s` (OpenAI keeps them 30 days): an old
one reads as absent at once, and the next process to write sweeps it out of the store, in SQLite and in
PostgreSQL alike."""

from __future__ import annotations

import os
import time

from proxy.responses_store import ResponseStore
from proxy.secrets import SecretBox
from proxy.store import StoredResponse
from proxy.store.sqlite import SqliteStore


async def _expires_and_is_swept(store) -> None:
    box = SecretBox(os.urandom(32))
    kept = ResponseStore(store, box, retention_s=3600)
    await kept.put({"id": "resp_new"}, [], owner="k1")
    # a row written 2 h ago, as an older process would have left it
    await store.put_response(StoredResponse(id="resp_old", owner="k1", created_at=time.time() - 7200,
                                            body=box.seal(b'{"response":{"id":"resp_old"},"items":[]}',
                                                          "response:resp_old")))
    assert await store.get_response("resp_old", "k1") is not None
    assert await kept.get("resp_old", "k1") is None  # past the retention: gone for readers at once
    assert (await kept.get("resp_new", "k1")) == ({"id": "resp_new"}, [])

    # this process swept when it first wrote; another process sweeps on its first write
    await ResponseStore(store, box, retention_s=3600).put({"id": "resp_next"}, [], owner="k2")
    assert await store.get_response("resp_old", "k1") is None
    assert await store.get_response("resp_new", "k1") is not None
    assert await store.delete_responses_before(time.time() + 1) == 2


async def test_sqlite_store(tmp_path):
    store = SqliteStore(tmp_path / "store.db")
    await store.open()
    try:
        await _expires_and_is_swept(store)
    finally:
        await store.close()


async def test_postgres_store(pg_dsn):
    from proxy.store.postgres import PostgresStore

    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        await _expires_and_is_swept(store)
    finally:
        await store.close()
