"""Clients that misbehave: they leave before the first byte, mid-stream or during a non-streaming
call, or read very slowly.

Documented behaviour (design §6): the upstream response is held in an `async with` inside the
generator and the server runs with handler cancellation, so a client that leaves releases the
upstream call at once (here: the fake sees the gateway close its socket within 1 s). One chunk
is in flight: a slow client slows the upstream reads instead of growing a buffer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from .helpers import CHAT, still_serving
from .raw_upstream import HEAD_EVENT, chunk, event

pytestmark = pytest.mark.usefixtures("endpoints")

ROUTES = {
    "es-completion-stream": ("/_inference/completion/comp/_stream", {"input": "x"}),
    "es-chat-stream": ("/_inference/chat_completion/chat/_stream", CHAT),
    "v1-chat-stream": ("/v1/chat/completions", {"model": "chat", "stream": True, **CHAT}),
    "v1-completions-stream": ("/v1/completions", {"model": "comp", "prompt": "x", "stream": True}),
}
NON_STREAMING = {
    "es-embedding": ("/_inference/text_embedding/emb", {"input": "x"}),
    "es-completion": ("/_inference/completion/comp", {"input": "x"}),
    "es-chat": ("/_inference/chat_completion/chat", CHAT),
    "v1-embeddings": ("/v1/embeddings", {"model": "emb", "input": "x"}),
    "v1-chat": ("/v1/chat/completions", {"model": "chat", **CHAT}),
}


class RawClient:
    """A client on a bare socket: it sends one request and reads exactly what the test asks for."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def post(cls, port: int, path: str, body: dict, rcvbuf: int | None = None) -> "RawClient":
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        client = cls(sock)
        await client.loop.sock_connect(sock, ("127.0.0.1", port))
        data = json.dumps(body).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        await client.loop.sock_sendall(sock, head + data)
        return client

    async def read_until(self, marker: bytes, limit: int = 1 << 20) -> bytes:
        got = b""
        while marker not in got:
            piece = await asyncio.wait_for(self.loop.sock_recv(self.sock, 4096), 5)
            assert piece, f"closed before {marker!r}: {got[-200:]!r}"
            got += piece
            assert len(got) < limit
        return got

    async def recv(self, n: int) -> bytes:
        return await asyncio.wait_for(self.loop.sock_recv(self.sock, n), 5)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def port(gateway) -> int:
    return gateway.port


async def silent(conn):
    await conn.hang()


async def headers_only(conn):
    await conn.start()
    await conn.hang()


def endless(interval: float, payload: str = "tick"):
    async def behaviour(conn):
        await conn.start()
        await conn.write(HEAD_EVENT)
        while True:
            await conn.write(event(chunk(payload)))
            await asyncio.sleep(interval)
    return behaviour


# ---------------------------------------------------------------------- before the first byte


@pytest.mark.parametrize("upstream", [silent, headers_only], ids=["no-headers", "headers-no-event"])
@pytest.mark.parametrize("route", ROUTES)
async def test_client_leaves_before_the_first_byte(http, raw, port, route, upstream):
    raw.plan(upstream)
    path, body = ROUTES[route]
    client = await RawClient.post(port, path, body)
    conn = await raw.wait_request()
    await asyncio.sleep(0.05)  # the gateway is now waiting on the upstream
    client.close()
    started = time.monotonic()
    await asyncio.wait_for(conn.closed.wait(), 1.0)
    assert time.monotonic() - started < 1.0
    await still_serving(http, raw)


# ---------------------------------------------------------------------- during a non-streaming call


@pytest.mark.parametrize("route", NON_STREAMING)
async def test_client_leaves_during_a_non_streaming_call(http, raw, port, route):
    raw.plan(silent)
    path, body = NON_STREAMING[route]
    client = await RawClient.post(port, path, body)
    conn = await raw.wait_request()
    await asyncio.sleep(0.05)
    client.close()
    await asyncio.wait_for(conn.closed.wait(), 1.0)
    await still_serving(http, raw)


async def test_client_leaves_during_a_retry_backoff(http, raw, port):
    """Leaving while the gateway sleeps before a retry: no further upstream call is made."""
    async def rate_limited(conn):
        await conn.respond(429, {"error": {"message": "later"}}, {"Retry-After": "1"})
    raw.plan(rate_limited)
    client = await RawClient.post(port, "/_inference/text_embedding/emb", {"input": "x"})
    await raw.wait_request()
    await asyncio.sleep(0.1)
    client.close()
    await asyncio.sleep(1.3)  # past the moment the retry would have been sent
    assert raw.requests == 1
    await still_serving(http, raw)


# ---------------------------------------------------------------------- mid-stream


@pytest.mark.parametrize("route", ROUTES)
async def test_client_leaves_mid_stream(http, raw, port, route):
    raw.plan(endless(0.02))
    path, body = ROUTES[route]
    client = await RawClient.post(port, path, body)
    got = await client.read_until(b"tick")
    assert b" 200 " in got.split(b"\r\n", 1)[0]
    conn = raw.conns[-1]
    client.close()
    await asyncio.wait_for(conn.closed.wait(), 1.0)
    await still_serving(http, raw)


@pytest.mark.parametrize("route", ["es-completion-stream", "v1-chat-stream"])
async def test_client_leaves_while_the_gateway_waits_for_it_to_drain(http, raw, port, route):
    """The client reads nothing, so the gateway is blocked writing to it; then it leaves."""
    raw.plan(endless(0, "y" * 8192))
    path, body = ROUTES[route]
    client = await RawClient.post(port, path, body, rcvbuf=4096)
    conn = await raw.wait_request()
    await asyncio.sleep(0.3)  # every buffer on the way fills up
    client.close()
    await asyncio.wait_for(conn.closed.wait(), 1.0)
    await still_serving(http, raw)


# ---------------------------------------------------------------------- slow reader


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def test_a_slow_reader_slows_the_upstream_instead_of_growing_memory(http, raw, port):
    """1 byte per 50 ms from a stream the upstream could send at loopback speed (64 MiB available).

    With one chunk in flight the upstream can only fill the socket buffers on the way (the kernel
    grows the gateway's send buffer towards tcp_wmem's maximum, 4 MiB) and aiohttp's bounded read
    buffer, then it is held back: measured here, about 4 MiB, flat after ~1.5 s. A gateway that read
    ahead would have taken the whole 64 MiB in well under a second (and then looked flat at 64 MiB)."""
    total = 64 * 1024 * 1024
    frame = event(chunk("z" * 16000))

    async def fast_and_large(conn):
        sock = conn.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        await conn.start()
        await conn.write(HEAD_EVENT)
        while conn.sent < total:
            await conn.write(frame)
        await conn.end()

    raw.plan(fast_and_large)
    rss_before = _rss_bytes()
    client = await RawClient.post(port, "/_inference/completion/comp/_stream", {"input": "x"}, rcvbuf=4096)
    conn = await raw.wait_request()
    received = b""
    samples = []  # upstream bytes sent, one sample per byte read (every ~50 ms)
    give_up = time.monotonic() + 8
    while len(samples) < 40 or samples[-1] - samples[-21] >= 256 * 1024:  # until flat for ~1 s
        assert time.monotonic() < give_up, f"the upstream was never held back: {samples[::10]}"
        received += await client.recv(1)
        await asyncio.sleep(0.05)
        samples.append(conn.sent)
    assert received.startswith(b"HTTP/1.1 200")
    rss_growth = _rss_bytes() - rss_before
    client.close()
    await asyncio.wait_for(conn.closed.wait(), 1.0)
    assert samples[-1] < 12 * 1024 * 1024, samples[::10]  # held back far below the 64 MiB on offer
    assert rss_growth < 48 * 1024 * 1024, rss_growth
    await still_serving(http, raw)
