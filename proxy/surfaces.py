"""Which client API answers a request: each route is registered with its error surface.

The surface of a matched route comes from the route itself; URLs that match no route fall to the
surface that claimed their prefix (`/v1/...` answers an unknown URL as OpenAI would). Once the
endpoint is known, `proxy.pipeline.bind` refines it for the endpoint's task.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web

from . import appkeys
from .wire import ErrorSurface
from .wire import es as es_wire

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _table(app: web.Application) -> dict[object, ErrorSurface]:
    if appkeys.SURFACES not in app:
        app[appkeys.SURFACES] = {}
    return app[appkeys.SURFACES]


def add(app: web.Application, method: str, path: str, handler: Handler, surface: ErrorSurface, *,
        before: ErrorSurface | None = None) -> None:
    """Register `handler`; its errors answer in `surface`. With `before`, errors raised before the handler
    runs (authentication, admission) answer in `before` instead."""
    if before is not None:
        inner = handler

        async def handler(request: web.Request) -> web.StreamResponse:
            request[appkeys.SURFACE] = surface
            return await inner(request)

    route = app.router.add_route(method, path, handler)
    _table(app)[route.resource] = before or surface


def claim(app: web.Application, prefixes: tuple[str, ...], surface: ErrorSurface) -> None:
    """URLs equal to a prefix (without its trailing slash) or under it that match no route."""
    _table(app)[prefixes] = surface


def of(request: web.Request) -> ErrorSurface:
    chosen = request.get(appkeys.SURFACE)
    if chosen is not None:
        return chosen
    table = request.app.get(appkeys.SURFACES) or {}
    resource = request.match_info.route.resource
    if resource is not None and resource in table:
        return table[resource]
    path = request.path
    for key, surface in table.items():
        if isinstance(key, tuple) and any(path == p.rstrip("/") or path.startswith(p) for p in key):
            return surface
    return es_wire.ERRORS


def choose(request: web.Request, surface: ErrorSurface) -> None:
    request[appkeys.SURFACE] = surface
