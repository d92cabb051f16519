"""Operational routes: the Elasticsearch-style root."""

from __future__ import annotations

import socket

from aiohttp import web

from .. import __version__, appkeys
from ..observability import metrics_handler
from .es import json_response

ES_VERSION = "9.5.1"


async def root(request: web.Request) -> web.Response:
    return json_response({
        "name": socket.gethostname(),
        "cluster_name": "inference-proxy",
        "cluster_uuid": "_na_",
        "version": {
            "number": ES_VERSION,
            "build_flavor": "default",
            "build_type": "inference-proxy",
            "build_hash": __version__,
            "build_date": "2026-11-01T00:00:00.000Z",
            "build_snapshot": False,
            "lucene_version": "10.3.1",
            "minimum_wire_compatibility_version": "8.19.0",
            "minimum_index_compatibility_version": "8.0.0",
        },
        "tagline": "You Know, for Search",
    })


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response({"status": "green"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: 503 while local models are still loading."""
    local = request.app.get(appkeys.LOCAL)
    loading = sorted(getattr(local, "loading", lambda: [])()) if local is not None else []
    if loading:
        return json_response({"status": "loading", "loading": loading}, status=503)
    return json_response({"status": "ready"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)  # aiohttp answers HEAD for GET routes
    app.router.add_get("/_health", health)
    app.router.add_get("/_ready", ready)
    app.router.add_get("/metrics", metrics_handler)
