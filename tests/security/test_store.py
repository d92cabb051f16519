"""The endpoint store: an outage is a 503 in the ES envelope (never a 500), and the files that hold
keys and sealed secrets are private to the gateway's user."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat

import aiohttp
import pytest

from proxy.server import create_app
from tests.conftest import make_settings
from tests.faults.helpers import assert_es_envelope
from tests.security.conftest import create_key
from tests.shared.conftest import pg_dsn  # noqa: F401 - the fixture: a throwaway PostgreSQL database


def body(n: int = 0) -> dict:
    return {"service": "openai", "service_settings": {"api_key": f"sk-store-{n}", "model_id": "m"}}


async def test_a_locked_sqlite_store_is_a_503(tmp_path, aiohttp_server):
    settings = make_settings(tmp_path)
    gateway = await aiohttp_server(create_app(settings))
    blocker = sqlite3.connect(settings.data_path / "endpoints.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # held past the store's busy_timeout (5 s)
    try:
        async with aiohttp.ClientSession(base_url=str(gateway.make_url("/"))) as http:
            async with http.put("/_inference/text_embedding/locked", json=body()) as resp:
                assert resp.status == 503, await resp.text()
                err = assert_es_envelope(await resp.json(), 503)
                assert err["reason"] == "The endpoint store is unavailable; retry later"
            blocker.execute("ROLLBACK")
            async with http.put("/_inference/text_embedding/locked", json=body()) as resp:
                assert resp.status == 200, await resp.text()
    finally:
        blocker.close()


@pytest.mark.slow
async def test_killed_postgresql_connections_are_503s_never_500s(tmp_path, aiohttp_server, pg_dsn):  # noqa: F811
    import asyncpg

    gateway = await aiohttp_server(create_app(make_settings(tmp_path, store=pg_dsn)))
    admin = await asyncpg.connect(pg_dsn)
    database = pg_dsn.rpartition("/")[2]
    stop = asyncio.Event()
    killed = 0

    async def killer() -> None:
        nonlocal killed
        while not stop.is_set():
            rows = await admin.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND "
                                     "pid <> pg_backend_pid() AND application_name LIKE 'inference-proxy/%'", database)
            killed += sum(1 for r in rows if r[0])
            await asyncio.sleep(0.01)

    statuses: dict[int, int] = {}

    async def writer(http: aiohttp.ClientSession, worker: int) -> None:
        for i in range(40):
            async with http.put(f"/_inference/text_embedding/w{worker}-{i}", json=body(i)) as resp:
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status != 200:
                    assert_es_envelope(await resp.json(), resp.status)

    task = asyncio.create_task(killer())
    try:
        async with aiohttp.ClientSession(base_url=str(gateway.make_url("/")),
                                         timeout=aiohttp.ClientTimeout(total=60)) as http:
            await asyncio.gather(*(writer(http, w) for w in range(8)))
    finally:
        stop.set()
        await task
        await admin.close()
    assert killed > 0  # the store really went away under the writes
    assert set(statuses) <= {200, 503}, statuses


async def test_data_files_are_private(tmp_path, aiohttp_server):
    settings = make_settings(tmp_path)
    gateway = await aiohttp_server(create_app(settings))
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/"))) as http:
        async with http.put("/_inference/text_embedding/one", json=body()) as resp:
            assert resp.status == 200
    create_key(settings.data_path)
    data = settings.data_path
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [data / name for name in ("endpoints.db", "endpoints.db-wal", "endpoints.db-shm", "secret.key",
                                      "keys.required")]
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {f.name: "0o600" for f in files}


async def test_files_left_open_by_an_older_version_are_narrowed(tmp_path, aiohttp_server):
    settings = make_settings(tmp_path)
    data = settings.data_path
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    sqlite3.connect(data / "endpoints.db").close()
    os.chmod(data / "endpoints.db", 0o644)
    await aiohttp_server(create_app(settings))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "endpoints.db").stat().st_mode) == 0o600
