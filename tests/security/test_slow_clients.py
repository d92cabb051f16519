"""Slow and numerous clients: bodies that trickle in do not take the slots meant for work, headers
that trickle in are cut off, and connections beyond the cap are closed and counted."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from tests.security.conftest import closed_by_peer, open_raw

LIMITS = {"max_in_flight": 4, "client_read_timeout": 3, "header_read_timeout": 1, "max_connections": 16}


async def _get(base: str, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(base + path, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status, await resp.text()


async def test_slow_bodies_do_not_take_the_in_flight_slots(tmp_path, processes):
    # only settings that existed before the fix, so this shows the flood itself
    gw = processes(data_dir=tmp_path / "data", config={"max_in_flight": 4, "client_read_timeout": 3})
    await gw.wait_ready()
    slow = []
    for _ in range(LIMITS["max_in_flight"] * 2):  # twice as many trickling bodies as slots for work
        reader, writer = await open_raw(gw.port)
        writer.write(b"PUT /_inference/text_embedding/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"service\":")
        await writer.drain()
        slow.append((reader, writer))
    await asyncio.sleep(0.5)  # all of them are being read by now
    status, _ = await _get(gw.base, "/_inference")
    assert status == 200
    # each trickling body has its own deadline: client_read_timeout, then 408 and the connection closes
    reader, _ = slow[0]
    head = await asyncio.wait_for(reader.read(200), timeout=LIMITS["client_read_timeout"] + 5)
    assert head.startswith(b"HTTP/1.1 408"), head
    for _, writer in slow:
        writer.close()


async def test_headers_sent_a_line_at_a_time_are_cut_off(tmp_path, processes):
    gw = processes(data_dir=tmp_path / "data", config=LIMITS)
    await gw.wait_ready()
    reader, writer = await open_raw(gw.port)
    writer.write(b"GET /_inference HTTP/1.1\r\n")

    async def trickle() -> None:
        for i in range(40):
            writer.write(f"X-Slow-{i}: 1\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.25)

    feeder = asyncio.create_task(trickle())
    try:
        # header_read_timeout is 1 s; each line alone comes well within aiohttp's keep-alive timeout
        assert await closed_by_peer(reader, within=6)
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        writer.close()
    # a kept-alive connection gets the same bound for its next request
    reader, writer = await open_raw(gw.port)
    writer.write(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(read_response(reader), timeout=5)).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /_inference HTTP/1.1\r\n")
    await writer.drain()
    assert await closed_by_peer(reader, within=6)
    writer.close()
    status, metrics = await _get(gw.base, "/metrics")
    assert status == 200
    assert re.search(r'inference_proxy_connections_closed_total\{reason="header_timeout"\} [2-9]', metrics), metrics


async def test_connections_beyond_the_cap_are_closed_and_counted(tmp_path, processes):
    gw = processes(data_dir=tmp_path / "data", config=LIMITS)
    await gw.wait_ready()
    idle = [await open_raw(gw.port) for _ in range(LIMITS["max_connections"])]
    await asyncio.sleep(0.3)
    reader, writer = await open_raw(gw.port)
    writer.write(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await closed_by_peer(reader, within=3)
    writer.close()
    for _, w in idle:
        w.close()
    await asyncio.sleep(0.3)
    status, metrics = await _get(gw.base, "/metrics")
    assert status == 200
    assert re.search(r'inference_proxy_connections_closed_total\{reason="limit"\} [1-9]', metrics), metrics


async def test_a_body_slower_than_the_header_timeout_is_still_read(tmp_path, processes):
    """The header timer must not fire on body bytes: a body may take up to client_read_timeout."""
    gw = processes(data_dir=tmp_path / "data", config=LIMITS)
    await gw.wait_ready()
    body = b'{"service": "openai", "service_settings": {"api_key": "sk-slow-body", "model_id": "m"}}'
    reader, writer = await open_raw(gw.port)
    writer.write(b"PUT /_inference/text_embedding/slow-but-fine HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 20):  # 2.5 s in all, header_read_timeout is 1 s
        writer.write(body[i:i + 20])
        await writer.drain()
        await asyncio.sleep(0.5)
    assert (await asyncio.wait_for(read_response(reader), timeout=5)).startswith(b"HTTP/1.1 200")
    # and the kept-alive connection still serves the next request
    writer.write(b"GET /_inference/slow-but-fine HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(read_response(reader), timeout=5)).startswith(b"HTTP/1.1 200")
    writer.close()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One whole response (Content-Length framed): its head."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    await reader.readexactly(int(length.group(1)) if length else 0)
    return head
