"""Issue 9: endpoints in PostgreSQL shared by several gateway processes.

Two replicas on different ports share one store: what one creates, the other serves within a
second; updates and deletes travel too (LISTEN/NOTIFY). An acknowledged write survives `kill -9`
of the replica that acknowledged it. A replica with another secret key refuses to start.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from proxy.store import StartupError, StoredEndpoint
from tests.fakes.openai_upstream import fake_vector
from tests.shared.conftest import embedding_body, eventually, new_key, unique

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------ the store alone


async def test_schema_is_created_once_and_versioned(pg_dsn):
    import asyncpg

    from proxy.store.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresStore

    stores = [PostgresStore(pg_dsn) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))  # replicas starting together do not race
    try:
        conn = await asyncpg.connect(pg_dsn)
        try:
            applied = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
            assert applied == [(version,) for version, _ in MIGRATIONS]  # each once
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", SCHEMA_VERSION + 1)
        finally:
            await conn.close()
        newer = PostgresStore(pg_dsn)
        with pytest.raises(StartupError, match="newer than this gateway"):
            await newer.open()
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_store_reports_other_writers_changes_and_not_its_own(pg_dsn):
    from proxy.store.postgres import PostgresStore

    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    await a.open()
    await b.open()
    seen_a: list[str | None] = []
    seen_b: list[str | None] = []
    await a.watch(seen_a.append)
    await b.watch(seen_b.append)
    try:
        rec = StoredEndpoint(inference_id="one", task_type="text_embedding", service="openai", config=b"{}",
                             secrets=b"sealed")
        assert await a.insert(rec) is True
        assert await a.insert(rec) is False
        assert await a.replace(rec) is True
        assert await b.get("one") == rec
        assert await a.delete("one") is True
        assert await a.delete("one") is False
        assert await b.replace(rec) is False
        await eventually(lambda: asyncio.sleep(0, len(seen_b) == 3), 2)
        assert seen_b == ["one", "one", "one"]
        assert seen_a == []
    finally:
        await a.close()
        await b.close()


# ------------------------------------------------------------------------------ two replicas


async def _get_status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as resp:
        await resp.read()
        return resp.status


async def test_two_replicas_share_endpoints_within_a_second(pg_dsn, gateways, session, upstream):
    key = new_key()
    a = gateways("a", store=pg_dsn, secret_key=key)
    b = gateways("b", store=pg_dsn, secret_key=key)
    await asyncio.gather(a.wait_ready(session), b.wait_ready(session))
    ep = unique("shared-emb")

    # create on A: B serves it (its sealed api_key opens there: the fake checks it) within 1 s
    async with session.put(f"{a.base}/_inference/text_embedding/{ep}", json=embedding_body(upstream)) as resp:
        assert resp.status == 200, await resp.text()
    took = await eventually(lambda: _is(session, f"{b.base}/_inference/{ep}", 200), 1.0)
    print(f"create visible on the other replica after {took * 1000:.0f} ms")
    async with session.post(f"{b.base}/_inference/text_embedding/{ep}", json={"input": ["hello"]}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["text_embedding"][0]["embedding"] == pytest.approx(fake_vector("hello"), abs=1e-6)
    assert upstream.requests[-1]["model"] == "text-embedding-3-small"

    # update on B: A serves the new settings within 1 s
    async with session.put(f"{b.base}/_inference/{ep}/_update",
                           json={"service_settings": {"api_key": upstream.api_key}, "task_settings": {"user": "u2"}}
                           ) as resp:
        assert resp.status == 200, await resp.text()

    async def a_has_update() -> bool:
        async with session.get(f"{a.base}/_inference/{ep}") as r:
            return r.status == 200 and (await r.json())["endpoints"][0].get("task_settings") == {"user": "u2"}

    await eventually(a_has_update, 1.0)
    async with session.post(f"{a.base}/_inference/text_embedding/{ep}", json={"input": "again"}) as resp:
        assert resp.status == 200, await resp.text()
    assert upstream.requests[-1]["user"] == "u2"

    # delete on B: gone from A within 1 s
    async with session.delete(f"{b.base}/_inference/{ep}") as resp:
        assert resp.status == 200, await resp.text()
    took = await eventually(lambda: _is(session, f"{a.base}/_inference/{ep}", 404), 1.0)
    print(f"delete visible on the other replica after {took * 1000:.0f} ms")
    async with session.post(f"{a.base}/_inference/text_embedding/{ep}", json={"input": "gone"}) as resp:
        assert resp.status == 404

    # the id is free again everywhere: a create through A right away succeeds
    async with session.put(f"{a.base}/_inference/text_embedding/{ep}", json=embedding_body(upstream)) as resp:
        assert resp.status == 200, await resp.text()
    assert upstream.api_key not in a.log() + b.log()


async def _is(session: aiohttp.ClientSession, url: str, status: int) -> bool:
    return await _get_status(session, url) == status


async def test_a_replica_with_another_secret_key_refuses_to_start(pg_dsn, gateways, session, upstream):
    a = gateways("a", store=pg_dsn, secret_key=new_key())
    await a.wait_ready(session)
    async with session.put(f"{a.base}/_inference/text_embedding/{unique('k')}", json=embedding_body(upstream)) as r:
        assert r.status == 200
    b = gateways("b", store=pg_dsn, secret_key=new_key())
    assert b.proc.wait(timeout=30) == 2
    assert "INFERENCE_PROXY_SECRET_KEY" in b.log()
    assert "Traceback" not in b.log()


async def test_a_store_that_cannot_be_opened_fails_the_start_clearly(pg_dsn, gateways):
    missing = pg_dsn.rpartition("/")[0].replace("postgres@", "postgres:hunter2@") + "/" + unique("no_such_db")
    gw = gateways("a", store=missing, secret_key=new_key())
    assert gw.proc.wait(timeout=60) == 2
    log = gw.log()
    assert "cannot open the endpoint store" in log and "hunter2" not in log


# ------------------------------------------------------------------------------ kill -9 during writes

N_PUTS = 150
SECRET_PREFIX = "PG-DURABLE-SECRET-"


async def test_acknowledged_writes_survive_kill_9_of_a_replica(pg_dsn, gateways, session, upstream):
    import asyncpg

    key = new_key()
    a = gateways("a", store=pg_dsn, secret_key=key)
    b = gateways("b", store=pg_dsn, secret_key=key)
    await asyncio.gather(a.wait_ready(session), b.wait_ready(session))
    acked: set[int] = set()
    cut = 0
    half = asyncio.Event()
    sem = asyncio.Semaphore(16)

    def body(i: int) -> dict:
        out = embedding_body(upstream, model=f"model-{i}")
        out["service_settings"]["api_key"] = f"{SECRET_PREFIX}{i:04d}"
        return out

    async def put(i: int) -> None:
        nonlocal cut
        async with sem:
            try:
                async with session.put(f"{a.base}/_inference/text_embedding/ep-{i:04d}", json=body(i)) as resp:
                    await resp.read()
                    assert resp.status == 200, f"PUT {i} answered {resp.status}"
                    acked.add(i)
                    if len(acked) >= N_PUTS // 3:
                        half.set()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                cut += 1

    async def killer() -> None:
        await half.wait()
        a.kill()

    kill_task = asyncio.create_task(killer())
    try:
        await asyncio.gather(*(put(i) for i in range(N_PUTS)))
    finally:
        if not kill_task.done():
            kill_task.cancel()
            a.kill()
    assert a.proc.returncode == -signal.SIGKILL
    print(f"acknowledged {len(acked)} of {N_PUTS}, {cut} cut off by the kill")
    assert acked and cut > 0 and len(acked) + cut == N_PUTS

    # every acknowledged endpoint is on the surviving replica within 1 s, whole
    async def all_on_b() -> bool:
        async with session.get(f"{b.base}/_inference/_all") as r:
            ids = {e["inference_id"] for e in (await r.json())["endpoints"]}
        return {f"ep-{i:04d}" for i in acked} <= ids

    await eventually(all_on_b, 1.0)
    async with session.get(f"{b.base}/_inference/_all") as r:
        listing = (await r.json())["endpoints"]
    for ep in listing:
        i = int(ep["inference_id"].removeprefix("ep-"))
        assert ep["service_settings"]["model_id"] == f"model-{i}"
        assert "api_key" not in ep["service_settings"]

    # and in the database, with the secrets sealed
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT inference_id, config, secrets FROM endpoints")
    finally:
        await conn.close()
    assert {f"ep-{i:04d}" for i in acked} <= {r["inference_id"] for r in rows}
    for r in rows:
        assert SECRET_PREFIX.encode() not in bytes(r["secrets"]) + bytes(r["config"])

    # a restarted replica finds them all and serves one with its sealed key
    restarted = gateways("a2", store=pg_dsn, secret_key=key)
    await restarted.wait_ready(session)
    i = min(acked)
    upstream.api_key = f"{SECRET_PREFIX}{i:04d}"
    async with session.post(f"{restarted.base}/_inference/text_embedding/ep-{i:04d}", json={"input": "x"}) as resp:
        assert resp.status == 200, await resp.text()
    assert upstream.requests[-1]["model"] == f"model-{i}"
    start = time.monotonic()
    for i in sorted(acked):
        assert await _is(session, f"{restarted.base}/_inference/ep-{i:04d}", 200)
    assert time.monotonic() - start < 30


# ------------------------------------------------------------------------------ the database goes away


class Forwarder:
    """A TCP relay to PostgreSQL that the test can cut and restore, standing for a network failure."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()


async def test_a_replica_cut_off_from_the_database_serves_from_memory_and_catches_up(pg_dsn):
    from urllib.parse import urlsplit

    from proxy.registry import Registry
    from proxy.secrets import SecretBox
    from proxy.store.postgres import PostgresStore
    from proxy.types import TaskType

    parts = urlsplit(pg_dsn)
    relay = Forwarder((parts.hostname, parts.port or 5432))
    await relay.start()
    box = SecretBox(b"k" * 32)
    direct = PostgresStore(pg_dsn)
    cut_off = PostgresStore(pg_dsn.replace(parts.netloc, f"{parts.username}@127.0.0.1:{relay.port}"))
    registries = [Registry(direct, box), Registry(cut_off, box)]
    for store, registry in zip((direct, cut_off), registries):
        await store.open()
        await registry.load()
        await registry.follow()
    one, two = registries
    body = {"service": "openai", "service_settings": {"api_key": "k", "model_id": "m"}}
    try:
        await one.create("before", TaskType.TEXT_EMBEDDING, body)
        await eventually(lambda: asyncio.sleep(0, two.get("before") is not None), 1.0)

        await relay.cut()
        started = time.monotonic()
        with pytest.raises(Exception) as exc:
            await two.create("during-two", TaskType.TEXT_EMBEDDING, body)
        assert getattr(exc.value, "status", None) == 503, exc.value
        assert time.monotonic() - started < 6
        assert two.get("before") is not None  # reads go on from memory
        await one.create("during-one", TaskType.TEXT_EMBEDDING, body)
        await one.delete("before", None, dry_run=False)

        await relay.start()  # the network is back, on the same port
        await eventually(lambda: asyncio.sleep(0, two.get("during-one") is not None and two.get("before") is None),
                         10.0, interval=0.1)
        await two.create("after", TaskType.TEXT_EMBEDDING, body)
        await eventually(lambda: asyncio.sleep(0, one.get("after") is not None), 1.0)
    finally:
        for registry in registries:
            await registry.close()
        await direct.close()
        await cut_off.close()
        await relay.cut()


async def test_the_region_policy_reaches_the_other_replica(pg_dsn, gateways, session, upstream):
    """The policy is stored next to the endpoints and announced on their change feed (ES keeps it in the
    `.inference` index); a replica enforces what another one stored."""
    key = new_key()
    a = gateways("a", store=pg_dsn, secret_key=key)
    b = gateways("b", store=pg_dsn, secret_key=key)
    await asyncio.gather(a.wait_ready(session), b.wait_ready(session))
    ep = unique("anywhere")
    async with session.put(f"{a.base}/_inference/text_embedding/{ep}", json=embedding_body(upstream)) as resp:
        assert resp.status == 200, await resp.text()
    policy = {"region_policy": {"allowed_geos": ["eu"]}}
    async with session.put(f"{a.base}/_inference/_region_policy?force", json=policy) as resp:
        assert resp.status == 200, await resp.text()
    await eventually(lambda: _is(session, f"{b.base}/_inference/_region_policy", 200), 1.0)
    async with session.post(f"{b.base}/_inference/text_embedding/{ep}", json={"input": "x"}) as resp:
        assert resp.status == 403, await resp.text()
    async with session.delete(f"{b.base}/_inference/_region_policy") as resp:
        assert resp.status == 200
    await eventually(lambda: _is(session, f"{a.base}/_inference/_region_policy", 404), 1.0)
