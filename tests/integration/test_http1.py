"""The upstream HTTP/1.1 client (`proxy.http1`) against servers on loopback sockets that write their
answers byte by byte, and against aiohttp's own server and a CONNECT proxy with real TLS."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import zlib
from typing import Awaitable, Callable

import pytest
import trustme
from aiohttp import web

from proxy import http1
from proxy.egress import EgressPolicy


class Server:
    """Each connection runs `handler(reader, writer)`; what every connection received is kept."""

    def __init__(self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl = ssl_context
        self.connections = 0
        self.heads: list[bytes] = []
        self.closed = asyncio.Event()

    async def __aenter__(self) -> "Server":
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                self.closed.set()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head, await reader.readexactly(length) if length else b""


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    fields = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\n{fields}Content-Length: {len(body)}\r\n\r\n".encode() + body


def keep_answering(*answers: bytes):
    async def handler(reader, writer):
        server = handler.server
        for data in answers:
            await server.read_request(reader)
            writer.write(data)
            await writer.drain()
        await reader.read()  # until the client leaves
    return handler


def serve(*answers: bytes) -> Server:
    handler = keep_answering(*answers)
    server = Server(handler)
    handler.server = server
    return server


@pytest.fixture
async def pool():
    p = http1.Pool(EgressPolicy().socket_factory)
    yield p
    await p.close()


async def call(pool: http1.Pool, url: str, body: bytes | None = b"{}", headers=None, method: str = "POST",
               **kwargs) -> tuple[int, object, bytes]:
    resp = await pool.request(method, url, headers or {"Content-Type": "application/json"}, body, **kwargs)
    try:
        return resp.status, resp.headers, await resp.read()
    finally:
        resp.close()


async def test_the_request_head_is_what_aiohttp_would_send(pool):
    async with serve(answer(b"ok")) as server:
        await call(pool, f"{server.url}/v1/x?a=1", b'{"a":1}', {"Authorization": "Bearer k", "Content-Type": "a/b"})
    assert server.heads[0] == (f"POST /v1/x?a=1 HTTP/1.1\r\nAuthorization: Bearer k\r\nContent-Type: a/b\r\n"
                               f"Host: 127.0.0.1:{server.port}\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
                               f"Content-Length: 7\r\n\r\n").encode()


async def test_a_host_header_of_the_caller_is_not_doubled(pool):
    """SigV4 signs the Host header; the client must send the one that was signed, once."""
    async with serve(answer(b"ok")) as server:
        await call(pool, f"{server.url}/", headers={"Host": "bedrock.example", "Content-Type": "x/y"})
    lines = server.heads[0].lower().split(b"\r\n")
    assert [line for line in lines if line.startswith(b"host:")] == [b"host: bedrock.example"]


async def test_an_encoded_url_goes_out_byte_for_byte(pool):
    async with serve(answer(b"ok")) as server:
        await call(pool, f"{server.url}/model/a%3Ab/invoke")
    assert server.heads[0].startswith(b"POST /model/a%3Ab/invoke HTTP/1.1\r\n")


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb", "a\x00b"])
async def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent(pool, value):
    async with serve(answer(b"ok")) as server:
        with pytest.raises(http1.ClientError, match="line break"):
            await call(pool, f"{server.url}/", headers={"X-A": value})
    assert server.heads == []


@pytest.mark.parametrize("url", ["ftp://user:s3cret@host/x?key=s3cret", "http://user:s3cret@host:99999/?key=s3cret"])
async def test_an_invalid_url_is_refused_without_its_credentials(pool, url):
    with pytest.raises(http1.ClientError, match="Invalid URL") as info:
        await call(pool, url)
    assert "s3cret" not in str(info.value)


async def test_an_invalid_header_name_is_refused(pool):
    with pytest.raises(http1.ClientError, match="header name"):
        await call(pool, "http://127.0.0.1:9/", headers={"Bad Name:": "x"})


async def test_keep_alive_reuses_one_connection(pool):
    async with serve(answer(b"one"), answer(b"two"), answer(b"three")) as server:
        bodies = [(await call(pool, f"{server.url}/"))[2] for _ in range(3)]
    assert bodies == [b"one", b"two", b"three"] and server.connections == 1


async def test_concurrent_calls_on_connections_handed_straight_back(pool):
    """An answer that arrives whole with its head sends its connection back to the pool before its caller
    runs again; another call may take it at once. Neither may lose the other's answer."""
    async def handler(reader, writer):
        while True:
            await server.read_request(reader)
            writer.write(answer(b"ok"))
            await writer.drain()

    server = Server(handler)

    async def worker():
        for _ in range(30):
            assert (await call(pool, f"{server.url}/"))[2] == b"ok"

    async with server:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(16))), 10)
    assert server.connections <= 16


async def test_connection_close_is_honoured(pool):
    async with serve(answer(b"one", "Connection: close"), answer(b"two")) as first:
        assert (await call(pool, f"{first.url}/"))[2] == b"one"
        await asyncio.wait_for(first.closed.wait(), 2)
        assert (await call(pool, f"{first.url}/"))[2] == b"one"  # a new connection, its first answer
    assert first.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused(pool):
    async def once(reader, writer):
        await server.read_request(reader)
        writer.write(answer(b"ok"))
        await writer.drain()

    server = Server(once)
    async with server:
        await call(pool, f"{server.url}/")
        await asyncio.wait_for(server.closed.wait(), 2)
        await asyncio.sleep(0.05)  # the FIN reaches the client's loop
        assert (await call(pool, f"{server.url}/"))[2] == b"ok"
    assert server.connections == 2


async def test_idle_connections_are_closed_after_the_keepalive_time():
    p = http1.Pool(EgressPolicy().socket_factory, keepalive=0.2)
    async with serve(answer(b"ok")) as server:
        await call(p, f"{server.url}/")
        await asyncio.wait_for(server.closed.wait(), 2)  # no second call came to reuse it
    await p.close()


async def test_chunked_and_close_delimited_bodies():
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n")
    until_close = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe rest of the stream"

    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(chunked)
        await server.read_request(reader)
        writer.write(until_close)
        await writer.drain()

    server = Server(handler)
    p = http1.Pool(EgressPolicy().socket_factory)
    async with server:
        assert (await call(p, f"{server.url}/"))[2] == b"hello world"
        assert (await call(p, f"{server.url}/"))[2] == b"the rest of the stream"
    await p.close()
    assert server.connections == 1


@pytest.mark.parametrize("coding,encode", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send it
])
async def test_compressed_bodies_are_decoded(pool, coding, encode):
    text = b'{"data": "' + b"x" * 5000 + b'"}'
    async with serve(answer(encode(text), f"Content-Encoding: {coding}")) as server:
        status, headers, body = await call(pool, f"{server.url}/")
    assert status == 200 and body == text and headers["content-encoding"] == coding


async def test_a_corrupt_compressed_body_is_a_protocol_error(pool):
    async with serve(answer(b"not gzip at all", "Content-Encoding: gzip")) as server:
        with pytest.raises(http1.ProtocolError, match="corrupt"):
            await call(pool, f"{server.url}/")


async def test_an_interim_answer_is_skipped(pool):
    async with serve(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"final", "X-A: 1", status="201 Created")) as server:
        status, headers, body = await call(pool, f"{server.url}/")
    assert (status, headers["X-A"], body) == (201, "1", b"final")


async def test_headers_are_case_insensitive_and_keep_repeats(pool):
    async with serve(answer(b"", "Retry-After: 3", "Set-Thing: a", "set-thing: b")) as server:
        _, headers, _ = await call(pool, f"{server.url}/")
    assert headers.get("retry-after") == "3" and headers.getall("Set-Thing") == ["a", "b"]


async def test_a_body_cut_short_is_a_protocol_error(pool):
    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    server = Server(handler)
    async with server:
        with pytest.raises(http1.ProtocolError, match="not completed"):
            await call(pool, f"{server.url}/")


async def test_a_broken_answer_is_a_protocol_error(pool):
    async with serve(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n") as server:
        with pytest.raises(http1.ProtocolError, match="framing"):
            await call(pool, f"{server.url}/")


async def test_a_server_that_closes_before_answering(pool):
    async def handler(reader, writer):
        await server.read_request(reader)

    server = Server(handler)
    async with server:
        with pytest.raises(http1.ProtocolError, match="Server disconnected"):
            await call(pool, f"{server.url}/")


async def test_a_refused_connection_is_a_connect_error(pool):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(http1.ConnectError, match=f"Cannot connect to host 127.0.0.1:{port}") as info:
        await call(pool, f"http://127.0.0.1:{port}/")
    assert not info.value.denied


async def test_the_egress_policy_sees_every_address_before_the_connect():
    policy = EgressPolicy(deny_private=True)
    p = http1.Pool(policy.socket_factory)
    with pytest.raises(http1.ConnectError, match="egress policy") as info:
        await call(p, "http://localhost:9/")
    await p.close()
    assert info.value.denied


async def test_a_cancelled_call_drops_its_connection(pool):
    async def handler(reader, writer):
        await server.read_request(reader)
        await reader.read()  # never answers; returns when the client leaves

    server = Server(handler)
    async with server:
        task = asyncio.ensure_future(call(pool, f"{server.url}/"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.closed.wait(), 2)


async def test_a_stream_read_chunk_by_chunk_with_backpressure(pool):
    piece = b"data: " + b"y" * 4088 + b"\n\n"  # 4096 bytes
    total = 4 << 20  # far beyond what the client buffers

    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(total // len(piece)):
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server = Server(handler)
    async with server:
        resp = await pool.request("POST", f"{server.url}/", {}, b"{}", streaming=True)
        got, most_buffered = 0, 0
        while True:
            most_buffered = max(most_buffered, resp._size)
            chunk = await resp.readany()
            if not chunk:
                break
            got += len(chunk)
            await asyncio.sleep(0)  # a slow reader
        resp.close()
    assert got == total
    assert most_buffered < 1 << 20  # reading from the socket paused instead of buffering the whole answer


async def test_a_connection_paused_by_a_stream_reads_again_for_its_next_call(pool):
    """A streamed answer that arrives whole while its reader is away pauses the socket; the connection goes
    back to the pool reading again, or the next call on it would wait forever."""
    big = b"data: " + b"z" * (200 << 10) + b"\n\n"
    async with serve(answer(big, "Content-Type: text/event-stream"), answer(b"next")) as server:
        resp = await pool.request("POST", f"{server.url}/", {}, b"{}", streaming=True)
        await asyncio.sleep(0.2)  # the whole answer arrives before the first read
        got = b""
        while chunk := await resp.readany():
            got += chunk
        resp.close()
        assert got == big
        assert (await asyncio.wait_for(call(pool, f"{server.url}/"), 2))[2] == b"next"
    assert server.connections == 1


async def test_leaving_a_stream_early_closes_its_connection(pool):
    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await reader.read()

    server = Server(handler)
    async with server:
        resp = await pool.request("POST", f"{server.url}/", {}, b"{}", streaming=True)
        assert await resp.readany() == b"hello"
        resp.close()
        await asyncio.wait_for(server.closed.wait(), 2)
        with pytest.raises(http1.ProtocolError):
            await resp.readany()


# ------------------------------------------------------------------------------ TLS and the proxy


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def tls_server_context(ca) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


def trusting(ca) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def test_tls_with_a_trusted_ca_and_a_refused_certificate(pool, ca):
    handler = keep_answering(answer(b"secure"), answer(b"again"))
    server = Server(handler, tls_server_context(ca))
    handler.server = server
    trusted = trusting(ca)
    async with server:
        assert (await call(pool, f"{server.url}/", tls=trusted))[2] == b"secure"
        assert (await call(pool, f"{server.url}/", tls=trusted))[2] == b"again"
        with pytest.raises(http1.TLSError):
            await call(pool, f"{server.url}/")  # the system's trust store does not know the test CA
        assert (await call(pool, f"{server.url}/", tls=False))[2] == b"secure"  # unverified, a new connection


async def test_tls_to_a_server_that_does_not_speak_it_is_a_tls_error(pool):
    """Any failed handshake, not only a certificate, is a TLSError: the transport does not retry those."""
    async def plain(reader, writer):
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # what it says to a ClientHello
        await writer.drain()
        await reader.read()

    async with Server(plain) as server:
        with pytest.raises(http1.TLSError):
            await asyncio.wait_for(call(pool, f"https://127.0.0.1:{server.port}/", tls=False), 5)


class ConnectProxy:
    """A forward proxy that tunnels CONNECT and relays absolute-form requests, checking Proxy-Authorization."""

    def __init__(self, credentials: str | None = None) -> None:
        self.lines: list[str] = []
        self.auth: list[str | None] = []
        self.credentials = credentials

    async def __aenter__(self) -> "ConnectProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()

    async def _serve(self, reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line = head.split(b"\r\n")[0].decode()
        self.lines.append(line)
        auth = [h.split(b":", 1)[1].strip().decode() for h in head.split(b"\r\n")
                if h.lower().startswith(b"proxy-authorization:")]
        self.auth.append(auth[0] if auth else None)
        method, target, _ = line.split(" ")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            rest = target.split("://", 1)[1]
            authority, _, path = rest.partition("/")
            host, port = authority.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            up_writer.write(head.replace(target.encode(), b"/" + path.encode(), 1))

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_https_through_a_connect_tunnel_with_proxy_credentials(ca):
    handler = keep_answering(answer(b"tunnelled"), answer(b"tunnelled again"))
    server = Server(handler, tls_server_context(ca))
    handler.server = server
    async with server, ConnectProxy() as proxy:
        p = http1.Pool(EgressPolicy().socket_factory, proxy=f"http://user:p%40ss@127.0.0.1:{proxy.port}")
        trusted = trusting(ca)
        assert (await call(p, f"{server.url}/v1/x", tls=trusted))[2] == b"tunnelled"
        assert (await call(p, f"{server.url}/v1/x", tls=trusted))[2] == b"tunnelled again"
        await p.close()
    assert proxy.lines == [f"CONNECT 127.0.0.1:{server.port} HTTP/1.1"]  # the tunnel was kept alive
    assert proxy.auth == ["Basic dXNlcjpwQHNz"]  # user:p@ss
    assert server.heads[0].startswith(b"POST /v1/x HTTP/1.1\r\n")


async def test_http_through_the_proxy_in_absolute_form():
    async with serve(answer(b"via proxy")) as server, ConnectProxy() as proxy:
        p = http1.Pool(EgressPolicy().socket_factory, proxy=f"http://127.0.0.1:{proxy.port}")
        assert (await call(p, f"{server.url}/v1/y?q=1"))[2] == b"via proxy"
        await p.close()
    assert proxy.lines == [f"POST {server.url}/v1/y?q=1 HTTP/1.1"] and proxy.auth == [None]


async def test_a_proxy_that_refuses_the_tunnel(ca):
    async def refuse(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with Server(refuse) as proxy:
        p = http1.Pool(EgressPolicy().socket_factory, proxy=proxy.url)
        with pytest.raises(http1.ConnectError, match="407"):
            await call(p, "https://127.0.0.1:9/", tls=trusting(ca))
        await p.close()


async def test_against_aiohttps_server(aiohttp_server, pool):
    """A real framework server: keep-alive, its chunked streaming and its gzip."""
    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_compression()
        await resp.prepare(request)
        for i in range(50):
            await resp.write(f"data: {i}\n\n".encode())
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/s", stream)
    async def small(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_post("/j", small)
    server = await aiohttp_server(app)
    url = str(server.make_url("/"))
    resp = await pool.request("POST", url + "s", {}, b"", streaming=True)
    data = b""
    while chunk := await resp.readany():
        data += chunk
    resp.close()
    assert data == b"".join(f"data: {i}\n\n".encode() for i in range(50))
    assert (await call(pool, url + "j"))[2] == b'{"ok": true}'
