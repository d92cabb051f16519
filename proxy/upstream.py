"""The one transport that moves bytes to providers.

Inference calls go through a lean HTTP/1.1 client (`proxy.http1`: pooled keep-alive connections, answers
parsed by llhttp); the rare token exchanges of `authorize()` (OAuth2, IAM, Google service accounts) go
through a pooled `aiohttp.ClientSession`, whose API the adapters write them against. Both apply the
gateway's routing settings (per-service origin overrides, an outbound proxy, TLS options) and egress
policy (`egress.py`). The transport marks each call with a `Via` header naming this gateway process (so
a request that comes back to it through an endpoint is refused, see `loop_guard`) and turns client
failures into `UpstreamError`s. It knows nothing of any provider.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import ssl
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import AsyncIterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from . import http1
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
        self._pool: http1.Pool | None = None
        self._session: aiohttp.ClientSession | None = None  # token exchanges (ServiceSession)
        self.egress = EgressPolicy(deny_private=settings.egress_deny_private, allow=settings.egress_allow)
        if settings.port:
            self.egress.add_listening(settings.host, settings.port)

    async def start(self) -> None:
        # socket_factory sees each resolved address before the connect: the egress check cannot be raced by DNS
        self._pool = http1.Pool(self.egress.socket_factory, proxy=self._proxy)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True,
                                         socket_factory=self.egress.socket_factory)
        # trust_env=False: proxies come from our settings only (HTTPS_PROXY is read there). No cookie jar:
        # one pooled session serves every endpoint and tenant, so a cookie one upstream answer sets must
        # never ride along on anyone's later request
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True,
                                              skip_auto_headers=("User-Agent",), cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
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

    def _tls(self, service: str) -> ssl.SSLContext | bool | None:
        return self._ssl.get(_normalise(service))

    def _options(self, service: str) -> dict:
        opts: dict = {}
        if self._proxy:
            opts["proxy"] = self._proxy
        tls = self._tls(service)
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
        assert self._pool is not None, "transport not started"
        resp = None
        try:
            async with asyncio.timeout(timeout):
                resp = await self._pool.request(up.method, url, _via(headers), up.body, self._tls(service))
                return resp.status, resp.headers, await resp.read()
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"The upstream service did not answer within [{timeout:g}s]") from None
        except http1.ClientError as exc:
            raise _unreachable(exc) from None
        finally:
            if resp is not None:
                resp.close()

    def stream(self, service: str, up: UpstreamRequest, connect_timeout: float,
               idle_timeout: float) -> AbstractAsyncContextManager[http1.Response]:
        """A streaming call; leaving the block releases the connection (or aborts it mid-body)."""
        url = self.route(service, up)
        if self._tracing is None:
            return self._stream(service, up, url, up.headers, connect_timeout, idle_timeout)
        return self._traced_stream(self._tracing, service, up, url, connect_timeout, idle_timeout)

    @asynccontextmanager
    async def _traced_stream(self, tracing: Tracing, service: str, up: UpstreamRequest, url: str,
                             connect_timeout: float, idle_timeout: float) -> AsyncIterator[http1.Response]:
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
                      connect_timeout: float, idle_timeout: float) -> AsyncIterator[http1.Response]:
        assert self._pool is not None, "transport not started"
        # the request's deadline, and the idle timeout, bound the wait for the response headers; only the
        # body may take longer (each read of it has its own idle timer: iter_body)
        limit = min(connect_timeout, idle_timeout)
        try:
            async with asyncio.timeout(limit):
                resp = await self._pool.request(up.method, url, _via(headers), up.body, self._tls(service),
                                                streaming=True)
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"The upstream service did not answer within [{limit:g}s]") from None
        except http1.ClientError as exc:
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


async def iter_body(resp: http1.Response, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body as it arrives, each read within `idle_timeout`; failures become `UpstreamError`s."""
    try:
        while True:
            async with asyncio.timeout(idle_timeout):
                chunk = await resp.readany()
            if not chunk:
                return
            yield chunk
    except asyncio.TimeoutError:  # a connection that closes fails the read at once (http1.ProtocolError)
        raise UpstreamTimeout(f"The upstream stream stalled for more than [{idle_timeout:g}s]") from None
    except http1.ClientError as exc:
        raise UpstreamUnreachable(f"The upstream stream failed: {_describe(exc)}") from None


def _via(headers: Mapping[str, str]) -> dict[str, str]:
    return {**headers, "Via": _VIA}


def _unreachable(exc: http1.ClientError) -> UpstreamError:
    if isinstance(exc, http1.ConnectError) and exc.denied:
        return UpstreamError(f"The upstream service was not called: {_describe(exc)}", upstream_status=403)
    # a certificate that fails verification will fail again: retrying only burns the deadline
    retryable = not isinstance(exc, http1.TLSError)
    return UpstreamUnreachable(f"Failed to reach the upstream service: {_describe(exc)}", retryable=retryable)


_QUERY = re.compile(r"\?[^\s'\")\]]*")


def _describe(exc: BaseException) -> str:
    # aiohttp puts the URL in some messages; query strings may carry credentials (`?key=`)
    text = _QUERY.sub("", str(exc) or type(exc).__name__)
    return text.split("\n")[0][:300]
