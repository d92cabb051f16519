"""Fixtures of the security suite: gateway processes started like an operator would, the CLI, and
raw sockets for clients that misbehave on purpose."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared.conftest import Gateway

REPO = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def processes(tmp_path):
    """A factory of gateway processes, all stopped after the test."""
    started: list[Gateway] = []

    def start(**kw) -> Gateway:
        gw = Gateway(tmp_path, f"gateway-{len(started)}", **kw)
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
