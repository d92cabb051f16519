"""Typed application keys: every piece of shared state lives on the app, created in `create_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .backends import Backends
    from .budgets import Budgets
    from .keys import ApiKey, KeyRing
    from .observability import Metrics
    from .registry import Registry
    from .settings import Settings
    from .tracing import Tracing
    from .usage import UsageRecorder
    from .upstream import Transport

SETTINGS: web.AppKey["Settings"] = web.AppKey("settings")
REGISTRY: web.AppKey["Registry"] = web.AppKey("registry")
TRANSPORT: web.AppKey["Transport"] = web.AppKey("transport")
BACKENDS: web.AppKey["Backends"] = web.AppKey("backends")
METRICS: web.AppKey["Metrics"] = web.AppKey("metrics")
KEYS: web.AppKey["KeyRing"] = web.AppKey("keys")
BUDGETS: web.AppKey["Budgets"] = web.AppKey("budgets")
USAGE: web.AppKey["UsageRecorder"] = web.AppKey("usage")
TRACING: web.AppKey["Tracing | None"] = web.AppKey("tracing")
LOCAL: web.AppKey[object] = web.AppKey("local", object)  # engines.manager.EngineManager or None

# Per-request: how errors are rendered ("es" or "chat"), and whether the answer is an SSE stream.
ERROR_FORMAT: web.RequestKey[str] = web.RequestKey("error_format", str)
SSE: web.RequestKey[bool] = web.RequestKey("sse", bool)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
ENDPOINT: web.RequestKey[object] = web.RequestKey("endpoint", object)  # the registry Endpoint being served
PRINCIPAL: web.RequestKey["ApiKey"] = web.RequestKey("principal", object)  # the API key of the caller, when keys exist
TOKENS: web.RequestKey[list] = web.RequestKey("tokens", list)  # [input, output] tokens this request used
