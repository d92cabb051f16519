"""Typed application keys: every piece of shared state lives on the app, created in `create_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .backends import Backends
    from .budgets import Budgets
    from .keys import ApiKey, KeyRing
    from .metrics import Metrics
    from .access_log import AccessLog
    from .registry import Registry
    from .responses_store import ResponseStore
    from .settings import Settings
    from .shared_limits import RedisLink
    from .tracing import Tracing
    from .usage import UsageRecorder
    from .upstream import Transport
    from .wire import ErrorSurface

SETTINGS: web.AppKey["Settings"] = web.AppKey("settings")
REGISTRY: web.AppKey["Registry"] = web.AppKey("registry")
TRANSPORT: web.AppKey["Transport"] = web.AppKey("transport")
BACKENDS: web.AppKey["Backends"] = web.AppKey("backends")
METRICS: web.AppKey["Metrics"] = web.AppKey("metrics")
ACCESS_LOG: web.AppKey["AccessLog"] = web.AppKey("access_log")
KEYS: web.AppKey["KeyRing"] = web.AppKey("keys")
BUDGETS: web.AppKey["Budgets"] = web.AppKey("budgets")
USAGE: web.AppKey["UsageRecorder"] = web.AppKey("usage")
RESPONSES: web.AppKey["ResponseStore"] = web.AppKey("responses")
TRACING: web.AppKey["Tracing | None"] = web.AppKey("tracing")
REDIS: web.AppKey["RedisLink | None"] = web.AppKey("redis", object)  # None without --redis
LOCAL: web.AppKey[object] = web.AppKey("local", object)  # EngineManager, a worker's HostedEngines, or None

# route resource (or a tuple of URL prefixes) -> the error surface of its client API (proxy.surfaces)
SURFACES: web.AppKey["dict[object, ErrorSurface]"] = web.AppKey("surfaces", dict)

# Per-request: the error surface once refined for the endpoint's task (proxy.pipeline.bind).
SURFACE: web.RequestKey["ErrorSurface"] = web.RequestKey("surface", object)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
ENDPOINT: web.RequestKey[object] = web.RequestKey("endpoint", object)  # the registry Endpoint being served
PRINCIPAL: web.RequestKey["ApiKey"] = web.RequestKey("principal", object)  # the API key of the caller, when keys exist
TOKENS: web.RequestKey[list] = web.RequestKey("tokens", list)  # [input, output] tokens this request used
