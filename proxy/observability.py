"""Request ids, one structured access-log line per request, and Prometheus metrics.

Each application owns its metrics registry (no module-level state), so several gateways in one
process (tests) do not share counters. Labels are bounded: routes are route templates, endpoints
are registry ids.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily

from . import appkeys
from .tracing import record_outcome

access_log = logging.getLogger("proxy.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """With `multiprocess_dir` (`--workers N`), every worker writes its values there
    (prometheus_client's multiprocess mode, which the supervisor switches on before the workers
    import it) and a scrape of any worker answers the sum over all of them."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        r = self.registry = CollectorRegistry()
        self.requests = Counter("inference_proxy_requests", "HTTP requests answered",
                                ["route", "endpoint", "service", "task", "status"], registry=r)
        self.latency = Histogram("inference_proxy_request_duration_seconds", "Time to answer, streams to their end",
                                 ["route", "service", "task"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("inference_proxy_time_to_first_token_seconds", "Time to the first streamed delta",
                              ["service", "task"], buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("inference_proxy_in_flight_requests", "Requests being handled", registry=r,
                               multiprocess_mode="livesum")
        self.upstream_errors = Counter("inference_proxy_upstream_errors", "Failed upstream attempts",
                                       ["service", "status"], registry=r)
        self.retries = Counter("inference_proxy_upstream_retries", "Upstream attempts retried", ["service"],
                               registry=r)
        self.rate_limited = Counter("inference_proxy_rate_limit_rejections", "Requests refused by a rate limit",
                                    ["endpoint"], registry=r)
        self.tokens = Counter("inference_proxy_tokens", "Tokens reported by upstreams and engines",
                              ["endpoint", "direction"], registry=r)
        self.redis_available = Gauge("inference_proxy_redis_available",
                                     "1 while the configured Redis answers; 0 while it does not (rate limits "
                                     "are then enforced per process), or when none is configured", registry=r,
                                     multiprocess_mode="livemin")
        self.redis_errors = Counter("inference_proxy_redis_errors", "Redis calls that failed", ["operation"],
                                    registry=r)
        self.cache_hits = Counter("inference_proxy_embedding_cache_hits", "Embedding inputs answered from the cache",
                                  ["endpoint"], registry=r)
        self.cache_misses = Counter("inference_proxy_embedding_cache_misses",
                                    "Embedding inputs not in the cache, sent upstream", ["endpoint"], registry=r)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry) + _answering_process()
        merged = CollectorRegistry(auto_describe=False)
        merged.register(_WorkerFiles(self.multiprocess_dir))
        return generate_latest(merged) + _answering_process()


class _WorkerFiles:
    """prometheus_client's MultiProcessCollector, less its race: a worker that is starting has
    created its value file but not yet sized it, and reading that empty file fails the scrape."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self):
        from prometheus_client.multiprocess import MultiProcessCollector

        files = []
        for name in glob.glob(os.path.join(self.path, "*.db")):
            try:
                if os.path.getsize(name) >= 8:
                    files.append(name)
            except FileNotFoundError:  # a dead worker's gauge file, just removed
                continue
        return MultiProcessCollector.merge(files, accumulate=True)


def _answering_process() -> bytes:
    """Which process answered this scrape (--workers N): not a merged value, so not kept in the registry."""
    family = GaugeMetricFamily("inference_proxy_process", "The process that answered this scrape", labels=["pid"])
    family.add_metric([str(os.getpid())], 1)

    class _One:
        def collect(self):
            yield family

    one = CollectorRegistry(auto_describe=False)
    one.register(_One())
    return generate_latest(one)


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
    request_id = given if _REQUEST_ID.match(given) else os.urandom(16).hex()  # uuid4().hex costs 5x more
    request[appkeys.REQUEST_ID] = request_id
    started = time.perf_counter()
    metrics.in_flight.inc()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
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
        metrics.requests.labels(route, endpoint, service, task, str(status)).inc()
        metrics.latency.labels(route, service, task).observe(elapsed)
        if ep is not None:
            key = request.get(appkeys.PRINCIPAL)
            used = request.get(appkeys.TOKENS) or (0, 0)
            request.app[appkeys.USAGE].add(key.id if key is not None else "", endpoint, error=status >= 400,
                                           input_tokens=used[0], output_tokens=used[1])
        if span is not None:
            span.set_attribute("http.route", route)
            record_outcome(span, status)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(orjson.dumps({
                "request_id": request_id, "method": request.method, "path": request.path, "route": route,
                "status": status, "duration_ms": round(elapsed * 1000, 3), "endpoint": endpoint or None,
                "service": service or None, "task": task or None, "remote": request.remote,
            }).decode())


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(appkeys.REQUEST_ID)
    if request_id:
        response.headers["X-Request-Id"] = request_id


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=request.app[appkeys.METRICS].render(),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})
