"""What the bench scripts share: a free loopback port, waiting until the gateway answers, writing results."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until_ok(http: aiohttp.ClientSession, method: str, path: str, deadline: float, what: str,
                   body: Any = None) -> None:
    """Repeat a request until it answers 200 (503 while models load, refused while the process starts),
    or raise TimeoutError naming `what` once `time.monotonic()` passes `deadline`."""
    while True:
        try:
            async with http.request(method, path, json=body) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not load in time")
        await asyncio.sleep(0.5)


def write_results(res: dict, path: str) -> None:
    """The run's figures as JSON, for bench/perf_readme.py and for comparing runs."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    print(f"\nJSON: {out}")
