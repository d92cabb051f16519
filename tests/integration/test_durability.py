"""Issue 2: an acknowledged PUT survives `kill -9`, and no secret reaches the disk in clear.

The gateway runs as a real process (`python -m proxy serve`); it is killed with SIGKILL while
PUTs are in flight, restarted on the same data directory, and every PUT that was answered 200
must be found again with its settings (store: proxy/store/sqlite.py, WAL + synchronous=FULL).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
N_PUTS = 200
CONCURRENCY = 16
KILL_AFTER_S = 0.3
SECRET_PREFIX = "DURABLE-SECRET-"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `python -m proxy serve` process on a loopback port."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_PROXY_")}
        # the test environment must not redirect the gateway; endpoints here carry made-up keys
        env.update({"INFERENCE_PROXY_LOCAL_MODELS": "0", "INFERENCE_PROXY_VALIDATE_ENDPOINTS": "0",
                    "PYTHONUNBUFFERED": "1"})
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(data_dir)],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the gateway exited with {self.proc.returncode} before answering")
            try:
                async with session.get(self.base + "/") as resp:
                    if resp.status == 200 and resp.headers.get("X-Elastic-Product") == "Elasticsearch":
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("the gateway did not answer in time")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def _body(i: int) -> dict[str, Any]:
    return {"service": "openai",
            "service_settings": {"model_id": f"model-{i}", "dimensions": i + 1, "api_key": f"{SECRET_PREFIX}{i:04d}"},
            "task_settings": {"user": f"user-{i}"}}


def _expected(i: int) -> dict[str, Any]:
    return {"model_id": f"model-{i}", "dimensions": i + 1, "user": f"user-{i}"}


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def _store_bytes(data_dir: Path) -> bytes:
    out = b""
    for name in ("endpoints.db", "endpoints.db-wal", "endpoints.db-journal"):
        path = data_dir / name
        if path.exists():
            out += path.read_bytes()
    return out


async def test_acknowledged_puts_survive_sigkill(tmp_path):
    data_dir = tmp_path / "data"
    log_path = tmp_path / "gateway.log"
    acked: set[int] = set()
    failed_transport = 0
    server = Server(data_dir, log_path)
    restarted: Server | None = None
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await server.wait_ready(session)
            sem = asyncio.Semaphore(CONCURRENCY)
            first_ack = asyncio.Event()
            half_acked = asyncio.Event()

            async def put(i: int) -> None:
                nonlocal failed_transport
                async with sem:
                    try:
                        async with session.put(f"{server.base}/_inference/text_embedding/ep-{i:04d}",
                                               json=_body(i)) as resp:
                            await resp.read()
                            if resp.status == 200:
                                acked.add(i)
                                first_ack.set()
                                if len(acked) >= N_PUTS // 2:
                                    half_acked.set()
                            else:
                                raise AssertionError(f"PUT {i} answered {resp.status}")
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        failed_transport += 1

            async def killer() -> None:
                # ~0.3 s into the writes, or as soon as half of them are answered on a fast machine,
                # so that the kill always lands while PUTs are in flight
                await first_ack.wait()
                try:
                    await asyncio.wait_for(half_acked.wait(), KILL_AFTER_S)
                except asyncio.TimeoutError:
                    pass
                server.kill()

            kill_task = asyncio.create_task(killer())
            try:
                await asyncio.gather(*(put(i) for i in range(N_PUTS)))
            finally:
                if not kill_task.done():  # nothing was acknowledged: never wait on the killer
                    kill_task.cancel()
                    server.kill()
            assert server.proc.returncode == -signal.SIGKILL

            print(f"acknowledged {len(acked)} of {N_PUTS}, {failed_transport} cut off by the kill")
            assert acked, "no PUT was acknowledged before the kill"
            assert len(acked) + failed_transport == N_PUTS
            assert failed_transport > 0, "the kill did not interrupt any PUT"
            on_disk = _store_bytes(data_dir)
            assert SECRET_PREFIX.encode() not in on_disk

            restarted = Server(data_dir, log_path)
            await restarted.wait_ready(session)
            for i in sorted(acked):
                async with session.get(f"{restarted.base}/_inference/ep-{i:04d}") as resp:
                    assert resp.status == 200, f"acknowledged endpoint ep-{i:04d} lost after kill -9"
                    body = await resp.json()
                (ep,) = body["endpoints"]
                assert ep["inference_id"] == f"ep-{i:04d}"
                assert ep["task_type"] == "text_embedding"
                assert ep["service"] == "openai"
                got = {"model_id": ep["service_settings"]["model_id"],
                       "dimensions": ep["service_settings"]["dimensions"], "user": ep["task_settings"]["user"]}
                assert got == _expected(i)
                assert "api_key" not in ep["service_settings"]

            # whatever else is there (committed, answer lost in the kill) is whole, not torn
            async with session.get(f"{restarted.base}/_inference") as resp:
                listing = await resp.json()
            for ep in listing["endpoints"]:
                if ep["inference_id"].startswith("."):
                    continue
                i = int(ep["inference_id"].removeprefix("ep-"))
                assert ep["service_settings"]["model_id"] == f"model-{i}"
                assert ep["task_settings"] == {"user": f"user-{i}"}
            assert {f"ep-{i:04d}" for i in acked} <= {ep["inference_id"] for ep in listing["endpoints"]}
            assert SECRET_PREFIX.encode() not in _json_bytes(listing)

            # the restarted process reads the same key: the sealed secrets open (it loaded them all),
            # and a new write after the restart keeps secrets off the disk too
            async with session.put(f"{restarted.base}/_inference/text_embedding/after-restart",
                                   json=_body(9999)) as resp:
                assert resp.status == 200
        assert SECRET_PREFIX.encode() not in _store_bytes(data_dir)
        key_file = data_dir / "secret.key"
        assert key_file.exists()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        server.close()
        if restarted is not None:
            restarted.close()
