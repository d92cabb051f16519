"""Request ids, one structured access-log line per request, and Prometheus metrics.

Each application owns its metrics registry (no module-level state), so several gateways in one
process (tests) do not share counters. Labels are bounded: routes are route templates, endpoints
are registry ids.
"""

from __future__ import annotations

import logging
import random
import re
import time

import orjson
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from . import appkeys
from .access_log import access_log
from .routing import ANSWERED_BY
from .tracing import record_outcome

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _route(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler) -> web.StreamResponse:
    """Outermost middleware: request id, in-flight gauge, access log line, request metrics and,
    when tracing is on, the request's span."""
    tracing = request.app[appkeys.TRACING]
    if tracing is None:
        return await _observe(request, handler, None)
    with tracing.request_span(request) as span:
        return await _observe(request, handler, span)


async def _observe(request: web.Request, handler, span) -> web.StreamResponse:
    metrics = request.app[appkeys.METRICS]
    given = request.headers.get("X-Request-Id", "")
    # ids need to be unique, not secret: no getrandom system call per request (`random` reseeds after a fork)
    request_id = given if _REQUEST_ID.match(given) else "%032x" % random.getrandbits(128)
    request[appkeys.REQUEST_ID] = request_id
    ANSWERED_BY.set(None)
    started = time.perf_counter()
    metrics.in_flight.inc()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.in_flight.dec()
        elapsed = time.perf_counter() - started
        ep = request.get(appkeys.ENDPOINT)
        endpoint, service, task = (ep.inference_id, ep.service, ep.task_type.value) if ep is not None else ("", "", "")
        route = _route(request)
        metrics.answered(route, endpoint, service, task, status, elapsed)
        if ep is not None:
            key = request.get(appkeys.PRINCIPAL)
            used = request.get(appkeys.TOKENS) or (0, 0)
            request.app[appkeys.USAGE].add(key.id if key is not None else "", endpoint, error=status >= 400,
                                           input_tokens=used[0], output_tokens=used[1])
        if span is not None:
            span.set_attribute("http.route", route)
            record_outcome(span, status)
        if access_log.isEnabledFor(logging.INFO):
            request.app[appkeys.ACCESS_LOG].write(orjson.dumps({
                "request_id": request_id, "method": request.method, "path": request.path, "route": route,
                "status": status, "duration_ms": round(elapsed * 1000, 3), "endpoint": endpoint or None,
                "service": service or None, "task": task or None, "target": ANSWERED_BY.get(),
                "remote": request.remote,
            }).decode())


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(appkeys.REQUEST_ID)
    if request_id:
        response.headers["X-Request-Id"] = request_id


async def stamp_target(request: web.Request, response: web.StreamResponse) -> None:
    target = ANSWERED_BY.get()
    if target is not None:
        response.headers["X-Inference-Target"] = target


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=request.app[appkeys.METRICS].render(),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})
