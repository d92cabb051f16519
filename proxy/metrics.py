"""The gateway's Prometheus metrics, one registry per process (rendered by `/_metrics`)."""

from __future__ import annotations

import glob
import os
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

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
        self.connections_closed = Counter("inference_proxy_connections_closed",
                                          "Client connections closed by the gateway: over max_connections "
                                          "(limit) or headers slower than header_read_timeout (header_timeout)",
                                          ["reason"], registry=r)
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
        # routers (router.py): per router and target
        self.router_attempts = Counter("inference_proxy_router_attempts", "Requests a router sent to a target",
                                       ["router", "target"], registry=r)
        self.router_failures = Counter("inference_proxy_router_failures", "Router attempts that failed, by status",
                                       ["router", "target", "status"], registry=r)
        self.router_skipped = Counter("inference_proxy_router_skipped",
                                      "Targets passed over (reason: open, missing, task_type, no_streaming)",
                                      ["router", "target", "reason"], registry=r)
        self.router_chosen = Counter("inference_proxy_router_chosen", "Requests a target answered for a router",
                                     ["router", "target"], registry=r)
        self.breaker_state = Gauge("inference_proxy_circuit_breaker_state",
                                   "A target's circuit breaker as last seen (the latest of the workers): 0 closed, "
                                   "1 open, 2 half-open", ["target"], registry=r, multiprocess_mode="livemostrecent")
        # labelled children by label values: `labels()` hashes, validates and locks on every call, and
        # these two are taken on every request (label values are bounded, see observability.py)
        self._answered: dict[tuple, tuple] = {}
        self._ttft: dict[tuple[str, str], object] = {}
        self._tokens: dict[tuple[str, str], object] = {}

    def answered(self, route: str, endpoint: str, service: str, task: str, status: int, seconds: float) -> None:
        """One request answered: its count and its latency."""
        key = (route, endpoint, service, task, status)
        children = self._answered.get(key)
        if children is None:
            children = self._answered[key] = (self.requests.labels(route, endpoint, service, task, str(status)),
                                              self.latency.labels(route, service, task))
        children[0].inc()
        children[1].observe(seconds)

    def count_tokens(self, endpoint: str, direction: str, n: int) -> None:
        child = self._tokens.get((endpoint, direction))
        if child is None:
            child = self._tokens[(endpoint, direction)] = self.tokens.labels(endpoint, direction)
        child.inc(n)

    def first_token(self, service: str, task: str, seconds: float) -> None:
        child = self._ttft.get((service, task))
        if child is None:
            child = self._ttft[(service, task)] = self.ttft.labels(service, task)
        child.observe(seconds)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry) + _answering_process()
        merged = CollectorRegistry(auto_describe=False)
        merged.register(_WorkerFiles(self.multiprocess_dir))
        return generate_latest(merged) + _answering_process()

    def families(self) -> Iterable[Metric]:
        """The metric families a scrape reads: this process's, or with `--workers N` all workers' merged."""
        if self.multiprocess_dir is None:
            return self.registry.collect()
        return _WorkerFiles(self.multiprocess_dir).collect()


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
