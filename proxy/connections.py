"""Client connections: a header-read timeout, keep-alive timeout and a cap on open connections.

aiohttp bounds a connection that waits for a request only by its keep-alive timeout, however
slowly the request's headers trickle in, and does not bound how many connections are open.
`GuardedServer` hands out request handlers
that close a connection whose headers take longer than `header_read_timeout` from their first
byte (or from the connection's start), and refuse connections beyond `max_connections` by closing
them at once; both are counted in `inference_proxy_connections_closed_total`. `run` serves an
application with them until SIGTERM or SIGINT (what `web.run_app` does, with our server).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from . import appkeys
from .settings import Settings


class GuardedHandler(RequestHandler):
    def __init__(self, manager: "GuardedServer", **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._header_timer: asyncio.TimerHandle | None = None
        self._counted = False
        self._last_payload: Any = None  # the body of the last request whose headers completed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.open >= guard.settings.max_connections:
            guard.closed("limit")
            transport.close()
            self._manager = None  # never registered: connection_lost has nothing to undo
            return
        guard.open += 1
        self._counted = True
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._counted:
            self._counted = False
            self._guard.open -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # a request's headers are complete
            self._disarm()
            self._last_payload = self._messages[-1][1] if self._messages else None
        elif self._header_timer is None and (self._last_payload is None or self._last_payload.is_eof()):
            self._arm()  # not body bytes: the start of the next request's headers on a kept-alive connection

    def _arm(self) -> None:
        self._header_timer = self._loop.call_later(self._guard.settings.header_read_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._waiter is not None and not self._waiter.done():  # idle, and the request started is incomplete
            self._guard.closed("header_timeout")
            self.force_close()
        elif not self._force_close:
            self._arm()  # a request is being handled; the next one's headers started early (pipelining)


class GuardedServer(web.Server):
    def __init__(self, *args: Any, settings: Settings, on_close: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.closed = on_close
        self.open = 0

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the application's startup
        app = self.app
        metrics = app[appkeys.METRICS]
        return GuardedServer(plain.request_handler, request_factory=plain.request_factory,
                             handler_cancellation=plain.handler_cancellation, loop=asyncio.get_running_loop(),
                             settings=app[appkeys.SETTINGS], on_close=lambda why: metrics.connections_closed
                             .labels(why).inc(), **plain._kwargs)


async def _serve(app: web.Application, settings: Settings, reuse_port: bool | None,
                 listening: Callable[[str], None]) -> None:
    runner = GuardedRunner(app, handler_cancellation=True, access_log=None,
                           keepalive_timeout=settings.keepalive_timeout)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
        await site.start()
        for address in runner.addresses:
            app[appkeys.TRANSPORT].egress.add_listening(address[0], address[1])
        listening(f"serving on {site.name}")
        await stop.wait()
    finally:
        await runner.cleanup()


def run(app: web.Application, settings: Settings, reuse_port: bool | None,
        listening: Callable[[str], None]) -> None:
    asyncio.run(_serve(app, settings, reuse_port, listening))
