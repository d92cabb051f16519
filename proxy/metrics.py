"""The gateway's Prometheus metrics, one registry per process (rendered by `/_metrics`)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("inference_proxy_requests", "HTTP requests answered",
                                ["route", "endpoint", "service", "task", "status"], registry=r)
        self.latency = Histogram("inference_proxy_request_duration_seconds", "Time to answer, streams to their end",
                                 ["route", "service", "task"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("inference_proxy_time_to_first_token_seconds", "Time to the first streamed delta",
                              ["service", "task"], buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("inference_proxy_in_flight_requests", "Requests being handled", registry=r)
        self.upstream_errors = Counter("inference_proxy_upstream_errors", "Failed upstream attempts",
                                       ["service", "status"], registry=r)
        self.retries = Counter("inference_proxy_upstream_retries", "Upstream attempts retried", ["service"],
                               registry=r)
        self.rate_limited = Counter("inference_proxy_rate_limit_rejections", "Requests refused by a rate limit",
                                    ["endpoint"], registry=r)
        self.tokens = Counter("inference_proxy_tokens", "Tokens reported by upstreams and engines",
                              ["endpoint", "direction"], registry=r)
        # shared state (--redis, --workers): one series per worker process, so a scrape says which answered
        self.process = Gauge("inference_proxy_process", "The process that answered this scrape", ["pid"],
                             registry=r)
        self.process.labels(str(os.getpid())).set(1)
        self.redis_available = Gauge("inference_proxy_redis_available",
                                     "1 while the configured Redis answers; 0 while it does not (rate limits "
                                     "are then enforced per process), or when none is configured", registry=r)
        self.redis_errors = Counter("inference_proxy_redis_errors", "Redis calls that failed", ["operation"],
                                    registry=r)
        self.cache_hits = Counter("inference_proxy_embedding_cache_hits", "Embedding inputs answered from the cache",
                                  ["endpoint"], registry=r)
        self.cache_misses = Counter("inference_proxy_embedding_cache_misses",
                                    "Embedding inputs not in the cache, sent upstream", ["endpoint"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
