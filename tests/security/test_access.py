"""Access control fails closed: once an API key has existed, the gateway never serves anonymous
requests again, whether the keys are revoked, the key table is lost, or `--insecure` is passed."""

from __future__ import annotations

import asyncio
import stat
import time

import aiohttp

from tests.security.conftest import cli, create_key

# a route every role may call; `_health` is open by design, so it proves nothing here
ROUTE = "/_inference"


async def status_of(base: str, key: str | None = None) -> int:
    headers = {"Authorization": f"ApiKey {key}"} if key else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(base + ROUTE, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status


async def eventually_status(base: str, expected: int, key: str | None = None, within: float = 8.0) -> int:
    """Keys revoked by the CLI reach a running gateway within its reload interval (2 s)."""
    deadline = time.monotonic() + within
    while True:
        status = await status_of(base, key)
        if status == expected or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


async def test_revoking_the_last_key_does_not_open_the_gateway(tmp_path, processes):
    data = tmp_path / "data"
    key_id, key = create_key(data)
    gw = processes(data_dir=data)
    await gw.wait_ready()
    assert await status_of(gw.base) == 401
    assert await status_of(gw.base, key) == 200

    assert cli(data, "revoke", key_id).returncode == 0
    # the revoked key stops working, and no key at all still does not get in
    assert await eventually_status(gw.base, 401, key) == 401
    assert await status_of(gw.base) == 401
    await asyncio.sleep(2.5)  # past a reload of the key table
    assert await status_of(gw.base) == 401


async def test_losing_the_key_table_does_not_open_the_gateway(tmp_path, processes):
    data = tmp_path / "data"
    create_key(data)
    for suffix in ("", "-wal", "-shm"):
        (data / f"endpoints.db{suffix}").unlink(missing_ok=True)
    gw = processes(data_dir=data)
    await gw.wait_ready()
    assert await status_of(gw.base) == 401


async def test_insecure_does_not_open_a_gateway_that_had_keys(tmp_path, processes):
    data = tmp_path / "data"
    key_id, _ = create_key(data)
    assert cli(data, "revoke", key_id).returncode == 0
    gw = processes(data_dir=data, host="0.0.0.0", flags=("--insecure",))
    await gw.wait_ready()
    assert await status_of(gw.base) == 401
    assert "--insecure is ignored" in gw.log()


async def test_insecure_is_needed_and_logged_to_serve_a_public_address_openly(tmp_path, processes):
    data = tmp_path / "data"
    refused = processes(data_dir=data, host="0.0.0.0")
    assert refused.proc.wait(timeout=30) == 2
    assert "refusing to bind 0.0.0.0" in refused.log()

    gw = processes(data_dir=data, host="0.0.0.0", flags=("--insecure",))
    await gw.wait_ready()
    assert await status_of(gw.base) == 200
    assert "without API keys (--insecure)" in gw.log()


def test_the_marker_is_private(tmp_path):
    data = tmp_path / "data"
    create_key(data)
    marker = data / "keys.required"
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
