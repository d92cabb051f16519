"""Fixtures of the security suite: gateway processes started like an operator would, the CLI, and
raw sockets for clients that misbehave on purpose."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_PROXY_")}
    # endpoints here carry made-up keys: no test inference at PUT
    env.update({"INFERENCE_PROXY_LOCAL_MODELS": "0", "INFERENCE_PROXY_VALIDATE_ENDPOINTS": "0",
                "PYTHONUNBUFFERED": "1"})
    return env


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`inference-proxy keys ...` as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "proxy", "keys", "--data-dir", str(data_dir), *args], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=60)


def create_key(data_dir: Path, role: str = "inference_admin") -> tuple[str, str]:
    """(key id, the credential to send)."""
    out = cli(data_dir, "create", "--role", role, "--name", "test")
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line and "(" not in line)
    return fields["id"].strip(), fields["api_key"].strip()


class GatewayProcess:
    """`python -m proxy serve` with a config file and flags."""

    def __init__(self, tmp_path: Path, *, data_dir: Path, host: str = "127.0.0.1", flags: tuple[str, ...] = (),
                 config: dict | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"gateway-{self.port}.log"
        args = [sys.executable, "-m", "proxy", "serve", "--host", host, "--port", str(self.port),
                "--data-dir", str(data_dir), *flags]
        if config:
            path = tmp_path / f"config-{self.port}.yaml"
            path.write_text(yaml.safe_dump(config))
            args += ["--config", str(path)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, cwd=REPO, env=_env(), stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"the gateway exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    async with session.get(self.base + "/_health") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"the gateway did not answer in time:\n{self.log()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def processes(tmp_path):
    """A factory of gateway processes, all stopped after the test."""
    started: list[GatewayProcess] = []

    def start(**kw) -> GatewayProcess:
        gw = GatewayProcess(tmp_path, **kw)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.close()


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
