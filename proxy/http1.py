"""A lean HTTP/1.1 client: keep-alive connection pools, TLS, an outbound proxy, answers parsed by llhttp.

Why not aiohttp's client: on this project's machines a keep-alive POST through `ClientSession.request`
costs about 175 µs of CPU, of which the bytes on the wire are a small part; the rest builds objects for
features the transport never uses (cookies, redirects, auth helpers, per-request timers, traces, a
payload writer). Here a request is one `transport.write` of a head formatted in one pass and the
answer is parsed in C by llhttp (`httptools`, the parser uvicorn uses): about 15 µs for the same call
(`bench/overhead.py` measures the gateway end to end). It does what the transport needs and no more:

* requests with a bytes body (or none), `Content-Length` framing; no `Expect`, no upgrades;
* answers framed by `Content-Length`, chunked encoding or the connection's close, `gzip`/`deflate`
  bodies decoded as they arrive (the only codings it asks for), read whole or chunk by chunk with
  backpressure (`Response.readany`);
* one pool of idle connections per origin (and TLS options), reused while fresh; a connection goes
  back to the pool only once its answer has fully arrived, and is dropped on any doubt (an error, a
  reader that leaves early, a cancelled call);
* DNS answers cached for `dns_ttl` seconds; every resolved address goes through `socket_factory`
  before the connect (the egress policy), so a DNS answer cannot race the check;
* an `http://` outbound proxy: absolute-form requests for `http://` origins, a `CONNECT` tunnel for
  `https://` ones, with `Proxy-Authorization` from the proxy URL's credentials.

Errors are `ClientError`s; the transport (`proxy.upstream`) words them for clients.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import ipaddress
import re
import socket
import ssl
import time
import zlib
from collections import deque
from typing import Callable, Iterator, Mapping, NamedTuple

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

# RFC 3986 characters and well-formed percent escapes only: a URL already in its encoded form
_ENCODED_URL = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field names
# the codings asked for (`Accept-Encoding`), and so the only ones decoded
_ACCEPT_ENCODING = "gzip, deflate"
_PAUSE_AT = 1 << 16  # a streamed answer's unread bytes at which reading from the socket pauses
_MAX_HEAD = 1 << 20  # an answer's header fields, in bytes: a runaway head is a protocol error


class ClientError(Exception):
    """A call that failed before or while its answer arrived."""


class ConnectError(ClientError):
    """No connection could be made; `denied` when the egress policy refused every address."""

    def __init__(self, message: str, denied: bool = False) -> None:
        super().__init__(message)
        self.denied = denied


class TLSError(ConnectError):
    """The TLS handshake failed (a certificate that does not verify, no common protocol): trying again
    will not help."""


class ProtocolError(ClientError):
    """The answer broke HTTP/1.1's framing, or the connection ended in the middle of it."""


class Target(NamedTuple):
    scheme: str
    host: str  # to connect to: IPv6 without brackets, IDNA-encoded names
    port: int
    authority: str  # the Host header
    path: str  # the request target: encoded path and query
    authorization: str | None  # Basic credentials from the URL's userinfo


@functools.lru_cache(maxsize=1024)  # URLs are immutable, and most endpoints call one URL: parse it once
def target(url: str) -> Target:
    """An already-encoded URL goes out byte for byte: yarl would otherwise decode `%3A` to `:` in a
    path (Bedrock model ids) after a SigV4 signature covered the encoded form."""
    try:
        parsed = URL(url, encoded=True) if _ENCODED_URL.fullmatch(url) else URL(url)
        port = parsed.port
    except ValueError as exc:
        raise ClientError(f"Invalid URL: {exc}") from None
    host = parsed.raw_host
    if parsed.scheme not in ("http", "https") or not host or port is None:
        # shown without credentials: userinfo and query strings (`?key=`) may carry them
        shown = parsed.with_user(None).with_query(None)
        raise ClientError(f"Invalid URL [{shown}]: an http or https URL with a host is needed")
    shown = f"[{host}]" if ":" in host else host
    authority = shown if parsed.is_default_port() else f"{shown}:{port}"
    authorization = None
    if parsed.raw_user is not None:
        pair = f"{parsed.user or ''}:{parsed.password or ''}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Target(parsed.scheme, host, port, authority, parsed.raw_path_qs or "/", authorization)


@functools.lru_cache(maxsize=256)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


@functools.lru_cache(maxsize=256)
def _valid_name(name: str) -> bool:
    return _TOKEN.fullmatch(name) is not None


def _head(method: str, request_target: str, t: Target, headers: Mapping[str, str], body: bytes | None,
          extra: str = "") -> bytes:
    """The request's head, with what aiohttp adds on its own: Accept, Accept-Encoding, a default
    Content-Type for a body, Content-Length, and Authorization from the URL's credentials."""
    fields, length_given = _fields(method, request_target, t.authority, t.authorization, tuple(headers.items()),
                                   body is not None, extra)
    if length_given or (body is None and method not in ("POST", "PUT", "PATCH")):
        return fields
    return fields[:-2] + b"Content-Length: %d\r\n\r\n" % (len(body) if body is not None else 0)


@functools.lru_cache(maxsize=512)  # an endpoint sends the same fields on every call: format them once
def _fields(method: str, request_target: str, authority: str, authorization: str | None,
            headers: tuple[tuple[str, str], ...], has_body: bool, extra: str) -> tuple[bytes, bool]:
    """The head without Content-Length, and whether the caller gave one."""
    given = set()
    lines = []
    for name, value in headers:
        if not _valid_name(name):
            raise ClientError(f"Invalid header name [{name[:100]}]")
        given.add(name.lower())
        lines.append(f"{name}: {value}\r\n")
    fields = "".join(lines)
    # a CR, LF or NUL inside a value would end the field early: header injection
    if fields.count("\n") != len(lines) or fields.count("\r") != len(lines) or "\x00" in fields:
        raise ClientError("Invalid header value: it contains a line break or NUL")
    parts = [f"{method} {request_target} HTTP/1.1\r\n", fields]
    if "host" not in given:  # a signed request (SigV4) may carry its own
        parts.append(f"Host: {authority}\r\n")
    if "accept" not in given:
        parts.append("Accept: */*\r\n")
    if "accept-encoding" not in given:
        parts.append(f"Accept-Encoding: {_ACCEPT_ENCODING}\r\n")
    if authorization is not None and "authorization" not in given:
        parts.append(f"Authorization: {authorization}\r\n")
    if has_body and "content-type" not in given:
        parts.append("Content-Type: application/octet-stream\r\n")
    parts.append(extra)
    parts.append("\r\n")
    return "".join(parts).encode("utf-8"), "content-length" in given


class Headers(Mapping[str, str]):
    """An answer's header fields, case-insensitive, repeats kept (`getall`). Most answers' are never
    read (a successful call reads only the body): the dictionary is made on first use."""

    __slots__ = ("_raw", "_dict")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._dict: CIMultiDictProxy[str] | None = None

    def _fields(self) -> CIMultiDictProxy[str]:
        if self._dict is None:
            self._dict = CIMultiDictProxy(CIMultiDict(
                (k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for k, v in self._raw))
        return self._dict

    def __getitem__(self, name: str) -> str:
        return self._fields()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self._fields()

    def getall(self, name: str, *default: str) -> list[str]:
        return self._fields().getall(name, *default)

    def __repr__(self) -> str:
        return f"Headers({dict(self._fields())!r})"


class Response:
    """An answer whose head has arrived; its body arrives behind it (`read`, `readany`)."""

    __slots__ = ("status", "reason", "_raw_headers", "_headers", "_chunks", "_size", "_done", "_error",
                 "_waiter", "_conn", "_decoder", "_streaming", "_loop")

    def __init__(self, conn: "Connection", streaming: bool) -> None:
        self.status = 0
        self.reason = ""
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._headers: Headers | None = None
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._conn: Connection | None = conn
        self._loop = conn.loop
        self._decoder = None
        self._streaming = streaming

    @property
    def headers(self) -> "Headers":
        if self._headers is None:
            self._headers = Headers(self._raw_headers)
        return self._headers

    def header(self, lowercase_name: bytes) -> bytes | None:
        for k, v in self._raw_headers:
            if k.lower() == lowercase_name:
                return v
        return None

    # --------------------------------------------------------------- fed by the connection

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                raise ProtocolError(f"The answer's compressed body is corrupt: {exc}") from None
            if not data:
                return
        self._chunks.append(data)
        self._size += len(data)
        if self._streaming and self._size >= _PAUSE_AT and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
                self._size += len(tail)
        self._done = True
        self._conn = None
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self._done:
            self._error = exc
            self._done = True
            self._conn = None
            self._wake()

    def _set_coding(self) -> None:
        coding = (self.header(b"content-encoding") or b"").strip().lower()
        if coding == b"gzip":
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == b"deflate":
            self._decoder = _Deflate()

    # --------------------------------------------------------------- read by the caller

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        await self._waiter

    async def read(self) -> bytes:
        """The whole body."""
        self._streaming = False
        if self._conn is not None:
            self._conn.resume()
        while not self._done:
            await self._wait()
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        return body

    async def readany(self) -> bytes:
        """What has arrived since the last call, waiting for something; b"" once the body has ended."""
        while not self._chunks and not self._done:
            await self._wait()
        if self._chunks:
            data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            if self._conn is not None:
                self._conn.resume()
            return data
        if self._error is not None:
            raise self._error
        return b""

    def close(self) -> None:
        """Leave the answer: a connection whose answer has not fully arrived is dropped (the upstream
        sees us leave); one whose answer has is already back in its pool."""
        conn = self._conn
        if conn is not None and not self._done:
            conn.abort()
        self._fail(ProtocolError("The answer was closed before its end"))


class _Deflate:
    """`Content-Encoding: deflate` is meant to be zlib-wrapped, but some servers send raw deflate."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj()
        self._first = True

    def decompress(self, data: bytes) -> bytes:
        if self._first:
            self._first = False
            try:
                return self._obj.decompress(data)
            except zlib.error:
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._obj.decompress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


class Connection(asyncio.Protocol):
    """One socket to one origin, carrying one request at a time."""

    def __init__(self, pool: "Pool", key: tuple) -> None:
        self._pool = pool
        self.key = key
        self.loop = asyncio.get_running_loop()  # once: each lookup of the running loop is a getpid() call
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self._head_size = 0
        self._headers_waiter: asyncio.Future | None = None
        self._framed = False  # the answer says where its body ends (Content-Length or chunked)
        self._paused = False
        self._tunnel: tuple[bytearray, asyncio.Future] | None = None  # a CONNECT answer being read

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel_data(data)
            return
        response = self._response
        if response is None:  # nothing was asked: a broken or hostile peer
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__  # what one of our callbacks raised
            self._failed(cause if isinstance(cause, ClientError)
                         else ProtocolError(f"The answer broke HTTP/1.1 framing: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost settles the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._tunnel is not None and not self._tunnel[1].done():
            self._tunnel[1].set_exception(ProtocolError("The proxy closed the connection during CONNECT"))
        response = self._response
        if response is None:
            return
        self._response = None
        if self._headers_waiter is not None and not self._headers_waiter.done():
            self._headers_waiter.set_exception(ProtocolError("Server disconnected"))
        elif response.status and not self._framed and not response._done:
            response._finish()  # a body that ends with the connection, as RFC 9112 allows
        else:
            response._fail(ProtocolError("Response payload is not completed: the connection closed in the "
                                         "middle of the body"))

    # ------------------------------------------------------------------ flow control

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    # ------------------------------------------------------------------ llhttp callbacks

    def on_status(self, status: bytes) -> None:
        if self._response is not None:
            self._response.reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > _MAX_HEAD:
            raise ProtocolError(f"The answer's header fields exceed {_MAX_HEAD} bytes")
        self._response._raw_headers.append((name, value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        response = self._response
        assert response is not None
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            response._raw_headers.clear()
            return
        response.status = status
        self._framed = (response.header(b"content-length") is not None
                        or response.header(b"transfer-encoding") is not None)
        response._set_coding()
        waiter = self._headers_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._response._feed(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        response = self._response
        if response is None or not response.status:
            return
        self._response = None
        keep = self._parser.should_keep_alive()
        response._finish()
        if keep and not self.closed:
            self.resume()  # the whole answer is in `response` now: a paused socket would stall the next call
            self._pool.release(self)
        else:
            self.abort()

    # ------------------------------------------------------------------ requests

    def _failed(self, exc: ClientError) -> None:
        response = self._response
        self._response = None
        if self._headers_waiter is not None and not self._headers_waiter.done():
            self._headers_waiter.set_exception(exc)
        elif response is not None:
            response._fail(exc)
        self.abort()

    async def request(self, head: bytes, body: bytes | None, streaming: bool) -> Response:
        """Send one request and wait for the answer's head."""
        response = self._response = Response(self, streaming)
        self._head_size = 0
        self._framed = False
        waiter = self._headers_waiter = self.loop.create_future()
        transport = self.transport
        assert transport is not None
        transport.write(head + body if body else head)
        try:
            await waiter
        except BaseException:
            response.close()  # cancelled, or failed: an unfinished answer's connection is dropped
            raise
        finally:
            # a whole answer may have arrived with its head: this connection can already be back in its
            # pool and carrying another call, whose waiter is not ours to clear
            if self._headers_waiter is waiter:
                self._headers_waiter = None
        return response

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self._pool.forget(self)
            if self.transport is not None:
                self.transport.abort()

    # ------------------------------------------------------------------ CONNECT tunnels

    async def tunnel(self, head: bytes) -> None:
        """Ask the proxy for a tunnel and wait for its 2xx."""
        done = self.loop.create_future()
        self._tunnel = (bytearray(), done)
        self.transport.write(head)  # type: ignore[union-attr]
        try:
            await done
        finally:
            self._tunnel = None

    def _tunnel_data(self, data: bytes) -> None:
        buffer, done = self._tunnel  # type: ignore[misc]
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                done.set_exception(ProtocolError("The proxy's answer to CONNECT is too long"))
            return
        status_line = bytes(buffer[:buffer.find(b"\r\n")]).decode("latin-1")
        parts = status_line.split(" ", 2)
        if done.done():
            return
        if len(parts) < 2 or not parts[1].isdigit() or not 200 <= int(parts[1]) < 300:
            done.set_exception(ConnectError(f"The outbound proxy refused the tunnel: {status_line[:200]}"))
        elif end + 4 < len(buffer):
            done.set_exception(ProtocolError("The proxy sent data after its answer to CONNECT"))
        else:
            done.set_result(None)


@contextlib.contextmanager
def _connect_errors(shown: str, cleanup: Callable[[], None]) -> Iterator[None]:
    """A failed connect or TLS handshake: `cleanup` the socket, and say which, in `ClientError`s."""
    try:
        yield
    except ssl.SSLError as exc:
        cleanup()
        why = exc.verify_message if isinstance(exc, ssl.SSLCertVerificationError) else None
        raise TLSError(f"Cannot connect to host {shown} [{why or exc}]") from None
    except OSError as exc:
        cleanup()
        raise ConnectError(f"Cannot connect to host {shown} [{exc}]") from None
    except BaseException:
        cleanup()
        raise


def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Pool:
    """Connections by origin (and TLS options), and the cached DNS answers."""

    def __init__(self, socket_factory: Callable[[tuple], socket.socket], proxy: str | None = None,
                 keepalive: float = 15.0, dns_ttl: float = 300.0) -> None:
        self._socket_factory = socket_factory
        self._proxy = target(proxy) if proxy else None
        self._keepalive = keepalive
        self._dns_ttl = dns_ttl
        self._idle: dict[tuple, list[Connection]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._open: set[Connection] = set()
        self._dns: dict[tuple[str, int], tuple[float, list]] = {}
        self._default_tls: ssl.SSLContext | None = None
        self._unverified: ssl.SSLContext | None = None

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                      tls: ssl.SSLContext | bool | None = None, streaming: bool = False) -> Response:
        """Send a request and return its answer once its head has arrived. `tls`: a context, False
        (no certificate verification) or None (the system's trust store)."""
        t = target(url)
        context = self._tls(tls) if t.scheme == "https" else None
        proxy = self._proxy
        if proxy is not None and t.scheme == "http":
            # absolute-form through the proxy (RFC 9112 §3.2.2); one pool for every http origin
            key: tuple = ("proxy", proxy.host, proxy.port)
            extra = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
            head = _head(method, f"http://{t.authority}{t.path}", t, headers, body, extra)
        else:
            key = (t.scheme, t.host, t.port, id(context))
            head = _head(method, t.path, t, headers, body)
        conn = self._reuse(key)
        if conn is None:
            conn = await self._connect(key, t, context)
        return await conn.request(head, body, streaming)

    def _tls(self, tls: ssl.SSLContext | bool | None) -> ssl.SSLContext:
        if isinstance(tls, ssl.SSLContext):
            return tls
        if tls is False:
            if self._unverified is None:
                self._unverified = _unverified_context()
            return self._unverified
        if self._default_tls is None:
            self._default_tls = ssl.create_default_context()
        return self._default_tls

    def _reuse(self, key: tuple) -> Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        stale_before = time.monotonic() - self._keepalive
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if conn.idle_since < stale_before:
                conn.abort()
                continue
            return conn
        return None

    def release(self, conn: Connection) -> None:
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self._keepalive, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle longer than `keepalive`, of origins no call has come back to."""
        self._sweeper = None
        stale_before = time.monotonic() - self._keepalive
        for conn in [c for idle in self._idle.values() for c in idle if c.idle_since < stale_before]:
            conn.abort()
        for key in [k for k, idle in self._idle.items() if not idle]:
            del self._idle[key]
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(self._keepalive, self._sweep)

    def forget(self, conn: Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def _resolve(self, host: str, port: int) -> list:
        loop = asyncio.get_running_loop()
        if _is_ip(host):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
        cached = self._dns.get((host, port))
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConnectError(f"Cannot connect to host {host}:{port} [{exc.strerror or exc}]") from None
        self._dns[(host, port)] = (now + self._dns_ttl, infos)
        return infos

    async def _open_socket(self, host: str, port: int, shown: str) -> socket.socket:
        """A connected socket to the first of the host's addresses that the egress policy allows and that answers."""
        loop = asyncio.get_running_loop()
        errors: list[OSError] = []
        for info in await self._resolve(host, port):
            try:
                sock = self._socket_factory(info)
            except OSError as exc:
                errors.append(exc)
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, info[4])
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError):
                    raise
                errors.append(exc)
                continue
            return sock
        reasons = "; ".join(e.strerror or str(e) for e in errors) or "no address"
        denied = bool(errors) and all("egress policy" in (e.strerror or "") for e in errors)
        raise ConnectError(f"Cannot connect to host {shown} [{reasons}]", denied=denied)

    async def _connect(self, key: tuple, t: Target, context: ssl.SSLContext | None) -> Connection:
        loop = asyncio.get_running_loop()
        proxy = self._proxy
        hop = proxy if proxy is not None else t
        shown = f"{t.host}:{t.port} ssl:{'default' if context is not None else False}"
        sock = await self._open_socket(hop.host, hop.port, shown if proxy is None else f"proxy {hop.authority}")
        tunnel = proxy is not None and t.scheme == "https"
        with _connect_errors(shown, sock.close):
            _, conn = await loop.create_connection(lambda: Connection(self, key), sock=sock,
                                                   ssl=None if tunnel else context,
                                                   server_hostname=t.host if context is not None and not tunnel
                                                   else None)
        self._open.add(conn)
        if tunnel:
            await self._tunnel(conn, t, context, shown)  # type: ignore[arg-type]
        return conn

    async def _tunnel(self, conn: Connection, t: Target, context: ssl.SSLContext, shown: str) -> None:
        proxy = self._proxy
        assert proxy is not None
        auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        with _connect_errors(shown, conn.abort):
            await conn.tunnel(f"CONNECT {t.host}:{t.port} HTTP/1.1\r\nHost: {t.authority}\r\n{auth}\r\n"
                              .encode("utf-8"))
            tls_transport = await asyncio.get_running_loop().start_tls(conn.transport, conn, context,
                                                                        server_hostname=t.host)
        conn.transport = tls_transport  # type: ignore[assignment]

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.abort()
        self._open.clear()
        self._idle.clear()
