"""The one transport that moves bytes to providers: a pooled `aiohttp.ClientSession`.

It applies the gateway's routing settings (per-service origin overrides, an outbound proxy, TLS
options) and egress policy (`egress.py`), marks each call with a `Via` header naming this gateway
process (so a request that comes back to it through an endpoint is refused, see `loop_guard`), and
turns aiohttp failures into `UpstreamError`s. It knows nothing of any provider.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import secrets
import ssl
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import AsyncIterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aiohttp.http_exceptions
from yarl import URL

from .contract import UpstreamRequest
from .egress import EgressPolicy
from .errors import StatusError, UpstreamError
from .settings import Settings
from .tracing import Tracing, record_outcome

log = logging.getLogger("proxy.upstream")


class UpstreamTimeout(UpstreamError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason, upstream_status=408, retryable=True)


class UpstreamUnreachable(UpstreamError):
    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason, upstream_status=502, status=502, retryable=retryable)


# RFC 3986 characters and well-formed percent escapes only: a URL already in its encoded form
_ENCODED_URL = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")


@functools.lru_cache(maxsize=1024)  # URLs are immutable, and most endpoints call one URL: parse it once
def wire_url(url: str) -> URL:
    """The URL object to send. An already-encoded URL goes out byte for byte: yarl would otherwise
    decode `%3A` to `:` in a path (Bedrock model ids) after a SigV4 signature covered the encoded form."""
    return URL(url, encoded=True) if _ENCODED_URL.fullmatch(url) else URL(url)


class LoopDetected(StatusError):
    status = 508


# RFC 9110 `Via`: each gateway process adds its own token, and refuses a request that already carries it
VIA_TOKEN = f"inference-proxy-{secrets.token_hex(8)}"
_VIA = f"1.1 {VIA_TOKEN}"


def check_loop(via_headers: list[str]) -> None:
    if any(VIA_TOKEN in v for v in via_headers):
        raise LoopDetected("The request came back to the gateway that sent it: an endpoint's url points at this "
                           "gateway")


def _normalise(service: str) -> str:
    return service.lower().replace("-", "_")


class Transport:
    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        self._tracing = tracing
        self._origins = {_normalise(k): v.rstrip("/") for k, v in settings.upstreams.items()}
        self._proxy = settings.upstream_proxy
        self._ssl: dict[str, ssl.SSLContext | bool] = {}
        for service, path in settings.upstream_ca_bundles.items():
            self._ssl[_normalise(service)] = ssl.create_default_context(cafile=path)
        for service in settings.upstream_insecure:
            log.warning("TLS certificate verification is OFF for service [%s]: use this for tests only", service)
            self._ssl[_normalise(service)] = False
        self._session: aiohttp.ClientSession | None = None
        self.egress = EgressPolicy(deny_private=settings.egress_deny_private, allow=settings.egress_allow)
        if settings.port:
            self.egress.add_listening(settings.host, settings.port)

    async def start(self) -> None:
        # socket_factory sees each resolved address before the connect: the egress check cannot be raced by DNS
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True,
                                         socket_factory=self.egress.socket_factory)
        # trust_env=False: proxies come from our settings only (HTTPS_PROXY is read there). No cookie jar:
        # one pooled session serves every endpoint and tenant, so a cookie one upstream answer sets must
        # never ride along on anyone's later request
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True,
                                              skip_auto_headers=("User-Agent",), cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "transport not started"
        return self._session

    def route(self, service: str, up: UpstreamRequest) -> str:
        """The URL to call: the service's origin override applies unless the endpoint set its own URL."""
        return up.url if up.explicit_url else self.route_url(service, up.url)

    def route_url(self, service: str, url: str) -> str:
        origin = self._origins.get(_normalise(service))
        if origin is None:
            return url
        parts = urlsplit(url)
        new = urlsplit(origin)
        base_path = new.path.rstrip("/")
        return urlunsplit((new.scheme, new.netloc, base_path + parts.path, parts.query, parts.fragment))

    def for_service(self, service: str) -> "ServiceSession":
        return ServiceSession(self, service)

    def _options(self, service: str) -> dict:
        opts: dict = {}
        if self._proxy:
            opts["proxy"] = self._proxy
        tls = self._ssl.get(_normalise(service))
        if tls is not None:
            opts["ssl"] = tls
        return opts

    async def send(self, service: str, up: UpstreamRequest, timeout: float) -> tuple[int, Mapping[str, str], bytes]:
        """One non-streaming call: (status, headers, body)."""
        url = self.route(service, up)
        if self._tracing is None:
            return await self._send(service, up, url, up.headers, timeout)
        headers = dict(up.headers)
        with self._tracing.attempt_span(service, url, headers) as span:
            try:
                answer = await self._send(service, up, url, headers, timeout)
            except UpstreamError as exc:
                record_outcome(span, exc.upstream_status, exc)
                raise
            record_outcome(span, answer[0])
            return answer

    async def _send(self, service: str, up: UpstreamRequest, url: str, headers: Mapping[str, str],
                    timeout: float) -> tuple[int, Mapping[str, str], bytes]:
        try:
            async with asyncio.timeout(timeout):
                async with self.session.request(up.method, wire_url(url), data=up.body, headers=_via(headers),
                                                timeout=_NO_TIMEOUT, allow_redirects=False,
                                                **self._options(service)) as resp:
                    return resp.status, resp.headers, await resp.read()
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"The upstream service did not answer within [{timeout:g}s]") from None
        except aiohttp.ClientError as exc:
            raise _unreachable(exc) from None

    def stream(self, service: str, up: UpstreamRequest, connect_timeout: float,
               idle_timeout: float) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """A streaming call; leaving the block releases the connection (or aborts it mid-body)."""
        url = self.route(service, up)
        if self._tracing is None:
            return self._stream(service, up, url, up.headers, connect_timeout, idle_timeout)
        return self._traced_stream(self._tracing, service, up, url, connect_timeout, idle_timeout)

    @asynccontextmanager
    async def _traced_stream(self, tracing: Tracing, service: str, up: UpstreamRequest, url: str,
                             connect_timeout: float, idle_timeout: float) -> AsyncIterator[aiohttp.ClientResponse]:
        headers = dict(up.headers)
        with tracing.attempt_span(service, url, headers) as span:  # open until the body is consumed
            try:
                async with self._stream(service, up, url, headers, connect_timeout, idle_timeout) as resp:
                    record_outcome(span, resp.status)
                    yield resp
            except UpstreamError as exc:
                record_outcome(span, exc.upstream_status, exc)
                raise

    @asynccontextmanager
    async def _stream(self, service: str, up: UpstreamRequest, url: str, headers: Mapping[str, str],
                      connect_timeout: float, idle_timeout: float) -> AsyncIterator[aiohttp.ClientResponse]:
        try:
            # the request's deadline bounds the wait for the response headers; only the body may take longer
            async with asyncio.timeout(connect_timeout):
                resp = await self.session.request(up.method, wire_url(url), data=up.body, headers=_via(headers),
                                                  timeout=_read_timeout(idle_timeout), allow_redirects=False,
                                                  **self._options(service))
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"The upstream service did not answer within [{connect_timeout:g}s]") from None
        except aiohttp.ClientError as exc:
            raise _unreachable(exc) from None
        try:
            yield resp
        finally:
            # close() drops the socket when the body was not read to its end: the upstream sees us leave
            resp.close()


class ServiceSession:
    """The pooled session as one service's `authorize()` sees it (token exchanges): its origin
    override, the outbound proxy and its TLS options apply as they do to the service's own calls."""

    def __init__(self, transport: Transport, service: str) -> None:
        self._transport = transport
        self._service = service

    def request(self, method: str, url: str, **kwargs):
        options = {"allow_redirects": False, **self._transport._options(self._service), **kwargs}
        options["headers"] = _via(options.get("headers") or {})
        return self._transport.session.request(method, self._transport.route_url(self._service, url), **options)

    def post(self, url: str, **kwargs):
        return self.request("POST", url, **kwargs)


async def iter_body(resp: aiohttp.ClientResponse, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body as it arrives; network failures become `UpstreamError`s.

    Each read has its own idle timer: aiohttp's `sock_read` alone is not enough, because a broken
    chunked framing makes its C parser close the connection and drop that timer without failing the
    body, which would leave the read waiting forever."""
    try:
        while True:
            async with asyncio.timeout(idle_timeout):
                chunk = await resp.content.readany()
            if not chunk:
                return
            yield chunk
    except asyncio.TimeoutError:
        connection = resp.connection
        if connection is None or connection.transport is None or connection.transport.is_closing():
            raise UpstreamUnreachable("The upstream connection closed in the middle of the stream") from None
        raise UpstreamTimeout(f"The upstream stream stalled for more than [{idle_timeout:g}s]") from None
    except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError) as exc:
        raise UpstreamUnreachable(f"The upstream stream failed: {_describe(exc)}") from None


# The deadlines are asyncio timeouts around the calls: an aiohttp ClientTimeout per call costs more
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None)


@functools.lru_cache(maxsize=16)
def _read_timeout(idle_timeout: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_read=idle_timeout)


def _via(headers: Mapping[str, str]) -> dict[str, str]:
    return {**headers, "Via": _VIA}


def _unreachable(exc: aiohttp.ClientError) -> UpstreamError:
    if "egress policy" in str(exc):  # EgressDenied, alone or among the errors of several resolved addresses
        return UpstreamError(f"The upstream service was not called: {_describe(exc)}", upstream_status=403)
    # a certificate that fails verification will fail again: retrying only burns the deadline
    retryable = not isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError))
    return UpstreamUnreachable(f"Failed to reach the upstream service: {_describe(exc)}", retryable=retryable)


_QUERY = re.compile(r"\?[^\s'\")\]]*")


def _describe(exc: BaseException) -> str:
    # aiohttp puts the URL in some messages; query strings may carry credentials (`?key=`)
    text = _QUERY.sub("", str(exc) or type(exc).__name__)
    return text.split("\n")[0][:300]
