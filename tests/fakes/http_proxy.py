"""A minimal forward HTTP proxy on loopback (absolute-form requests, plain http targets only)."""

from __future__ import annotations

import aiohttp
from aiohttp import web


class ForwardProxy:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        target = str(request.url)  # absolute-form request line: the full target URL
        self.seen.append(target)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-connection")}
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, target, headers=headers, data=await request.read()) as up:
                body = await up.read()
                return web.Response(body=body, status=up.status,
                                    headers={"Content-Type": up.headers.get("Content-Type", "application/json")})

    async def start(self) -> "ForwardProxy":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
