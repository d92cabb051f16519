"""Fixtures for shared state: a throwaway PostgreSQL database, Redis, gateway processes, a fake upstream.

PostgreSQL and Redis are the machine's (127.0.0.1:5432 trust auth, 127.0.0.1:6379; override with
TEST_POSTGRES_URL / TEST_REDIS_URL). Each test gets its own database (CREATE DATABASE test_<random>,
dropped after), so parallel runs do not collide; Redis keys carry random endpoint ids. A test whose
service does not answer is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
import yaml


REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


# ------------------------------------------------------------------------------ services


@pytest.fixture
async def pg_dsn():
    """A fresh database on the machine's PostgreSQL, dropped after the test."""
    asyncpg = pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install -e '.[shared]')")
    try:
        admin = await asyncpg.connect(PG_URL, timeout=3)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL} ({type(exc).__name__}: {exc}); "
                    f"start it (see .ci/services) or set TEST_POSTGRES_URL")
    name = "test_" + uuid.uuid4().hex[:12]
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(PG_URL, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def redis_url():
    redis = pytest.importorskip("redis.asyncio", reason="redis is not installed (pip install -e '.[shared]')")
    client = redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL} ({type(exc).__name__}: {exc}); "
                    f"start it (see .ci/services) or set TEST_REDIS_URL")
    finally:
        await client.aclose()
    return REDIS_URL


class OwnRedis:
    """A private redis-server on a free port, for tests that stop it (never the machine's shared one)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.kill()


# ------------------------------------------------------------------------------ gateways


class Gateway:
    """One `python -m proxy serve` process on a loopback port."""

    def __init__(self, tmp_path: Path, name: str, *, store: str | None = None, redis: str | None = None,
                 secret_key: str | None = None, workers: int = 1, cache_ttl: int = 0,
                 data_dir: Path | None = None, extra_env: dict[str, str] | None = None, host: str = "127.0.0.1",
                 flags: tuple[str, ...] = (), config: dict | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir or tmp_path / f"data-{name}"
        self.log_path = tmp_path / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_PROXY_")}
        env.update({"INFERENCE_PROXY_LOCAL_MODELS": "0", "INFERENCE_PROXY_VALIDATE_ENDPOINTS": "0",
                    "PYTHONUNBUFFERED": "1"})
        if secret_key:
            env["INFERENCE_PROXY_SECRET_KEY"] = secret_key
        env.update(extra_env or {})
        args = [sys.executable, "-m", "proxy", "serve", "--host", host, "--port", str(self.port),
                "--data-dir", str(self.data_dir), *flags]
        if config:
            path = tmp_path / f"config-{name}.yaml"
            path.write_text(yaml.safe_dump(config))
            args += ["--config", str(path)]
        if store:
            args += ["--store", store]
        if redis:
            args += ["--redis", redis]
        if cache_ttl:
            args += ["--embedding-cache-ttl", str(cache_ttl)]
        if workers > 1:
            args += ["--workers", str(workers)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, session: aiohttp.ClientSession | None = None, timeout: float = 30.0) -> None:
        if session is None:
            async with aiohttp.ClientSession() as own:
                return await self.wait_ready(own, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway {self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                async with session.get(self.base + "/_health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"gateway {self.name} did not answer in time:\n{self.log()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def gateways(tmp_path):
    """A factory of gateway processes, all stopped after the test."""
    started: list[Gateway] = []

    def start(name: str, **kw) -> Gateway:
        gw = Gateway(tmp_path, name, **kw)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.close()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


def embedding_body(upstream, model: str = "text-embedding-3-small", **settings) -> dict:
    return {"service": "openai", "service_settings": {"api_key": upstream.api_key, "model_id": model,
                                                      "url": f"{upstream.url}/v1/embeddings", **settings}}


async def metric(session: aiohttp.ClientSession, base: str, name: str, labels: str = "") -> float | None:
    async with session.get(base + "/metrics") as resp:
        text = await resp.text()
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", re.M)
    total = None
    for m in pattern.finditer(text):
        if labels in (m.group(1) or ""):
            total = (total or 0.0) + float(m.group(2))
    return total


async def eventually(check, timeout: float, interval: float = 0.02):
    """Poll `check()` (async, truthy when done) until it holds; returns the seconds it took."""
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(interval)


PROCESS_PID = re.compile(r'^inference_proxy_process\{pid="(\d+)"\} 1\.0$', re.M)  # in /metrics


class Pinned:
    """A client session with one keep-alive connection, so every request reaches the same worker."""

    def __init__(self, base: str, timeout: float = 30) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                             timeout=aiohttp.ClientTimeout(total=timeout))
        self.pid = 0

    async def identify(self) -> int:
        async with self.session.get(self.base + "/metrics") as resp:
            pids = PROCESS_PID.findall(await resp.text())
        assert len(pids) == 1
        self.pid = int(pids[0])
        return self.pid

    async def status(self, method: str, path: str, **kw) -> int:
        async with self.session.request(method, self.base + path, **kw) as resp:
            await resp.read()
            return resp.status


async def pin_workers(base: str, workers: int = 2, seconds: float = 20, timeout: float = 30,
                      log=lambda: "") -> dict[int, Pinned]:
    """One `Pinned` session per worker, by pid: new connections until each worker answered one (the kernel
    picks a worker per connection)."""
    by_pid: dict[int, Pinned] = {}
    deadline = time.monotonic() + seconds
    while len(by_pid) < workers:
        assert time.monotonic() < deadline, f"only workers {sorted(by_pid)} answered:\n{log()}"
        p = Pinned(base, timeout)
        try:
            pid = await p.identify()
        except aiohttp.ClientError:  # a worker may still be starting
            await p.session.close()
            await asyncio.sleep(0.1)
            continue
        if pid in by_pid:
            await p.session.close()
        else:
            by_pid[pid] = p
    return by_pid
