"""The browser console at `/_console`: the project's own static files and four small JSON routes.

The page is a client of the public API (`/_inference`, `_stream`, `_update`) with the caller's
key; the JSON routes below only add what the API has no route for: who the caller is, the
catalogue's settings (to generate forms), endpoint state, and a metrics snapshot. The static
files are public (they hold no data or secret, and a browser fetches them before anyone signs in,
see `auth.required_privilege`); the JSON routes need `monitor_inference` like the rest of the API.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import os
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from .. import appkeys, routing
from ..auth import AuthorizationError, may_see, principal
from ..catalogue import SERVICES, Setting
from ..keys import MANAGE
from ..types import TaskType
from .es import json_response

PREFIX = "/_console"
API_PREFIX = PREFIX + "/api/"

# Only the console's own files, nothing inline, nothing from elsewhere (MDN, "Content-Security-Policy").
# Inline `style=` attributes are refused too; the scripts set styles through the CSSOM, which CSP allows.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "manifest-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}


# ------------------------------------------------------------------------------ static files


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


@functools.cache
def _assets() -> dict[str, _Asset]:
    """The files shipped in the package (`proxy/console/`, package data), read once."""
    folder = resources.files("proxy") / "console"
    assets = {}
    for item in folder.iterdir():
        suffix = os.path.splitext(item.name)[1]
        if item.is_file() and suffix in _TYPES:
            body = item.read_bytes()
            assets[item.name] = _Asset(body, _TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return assets


def _asset_response(request: web.Request, name: str) -> web.Response:
    asset = _assets().get(name)
    if asset is None:
        raise web.HTTPNotFound()
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers={"ETag": asset.etag})
    return web.Response(body=asset.body, headers={"ETag": asset.etag, "Content-Type": asset.content_type})


async def index(request: web.Request) -> web.Response:
    return _asset_response(request, "index.html")


async def asset(request: web.Request) -> web.Response:
    return _asset_response(request, request.match_info["name"])


async def to_index(request: web.Request) -> web.Response:
    raise web.HTTPFound(PREFIX + "/")


# ------------------------------------------------------------------------------ JSON routes


def _loopback(remote: str | None) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


async def session(request: web.Request) -> web.Response:
    """Who the caller is: the page shows admin controls only to a key with `manage_inference`."""
    if not request.app[appkeys.KEYS].enabled:
        # Without keys the API is open; the console still opens only to this machine.
        if not _loopback(request.remote):
            raise AuthorizationError("the console opens without an API key only on loopback; create a key "
                                     "(inference-proxy keys create) to use it from another host")
        return json_response({"auth": False, "name": None, "roles": [], "admin": True})
    key = principal(request)  # the auth middleware has accepted the credential and set it
    assert key is not None
    return json_response({"auth": True, "name": key.name, "roles": key.role_names, "admin": key.may(MANAGE)})


def _setting(s: Setting) -> dict[str, Any]:
    out: dict[str, Any] = {"name": s.name, "kind": s.kind, "required": s.required, "secret": s.secret,
                           "updatable": s.updatable or s.secret}
    if s.positive:
        out["positive"] = True
    if s.choices:
        out["choices"] = list(s.choices)
    if s.tasks is not None:
        out["tasks"] = sorted(t.value for t in s.tasks)
    if s.fields:
        out["fields"] = [_setting(f) for f in s.fields]
    if s.default is not None:
        out["default"] = s.default
    return out


async def catalogue(request: web.Request) -> web.Response:
    """Each service with its tasks and settings, from which the page generates its forms."""
    local = request.app.get(appkeys.LOCAL)
    models = [{"model_id": m.model_id, "tasks": sorted(t.value for t in m.tasks)}
              for m in getattr(local, "models", [])] if local is not None else []
    services = [{"name": spec.name, "tasks": sorted(t.value for t in spec.tasks),
                 "streaming": sorted(t.value for t in spec.stream_tasks()), "local": spec.local,
                 "deprecation": spec.deprecation, "one_of": [list(group.names) for group in spec.one_of],
                 "service_settings": [_setting(s) for s in spec.service_settings],
                 "task_settings": [_setting(s) for s in spec.task_settings]}
                for spec in sorted(SERVICES.values(), key=lambda s: s.name)]
    return json_response({"services": services, "task_types": [t.value for t in TaskType],
                          "local_models": models})


def _local_model_state(app: web.Application, ep: Any) -> dict[str, Any]:
    """Whether a local model's weights are loaded (`unloaded`, `loading`, `ready`, `failed`)."""
    local = app.get(appkeys.LOCAL)
    model = local.resolve(str(ep.service_settings.get("model_id") or "")) if local is not None else None
    if model is None:
        return {"state": "failed", "error": "model not available on this gateway"}
    entry = next((m for m in local.status() if m["model_id"] == model.model_id), {})
    return {"state": entry.get("state", "unloaded"), "engine": entry.get("engine"),
            "load_seconds": entry.get("load_seconds"), "error": entry.get("error")}


_BREAKER_STATES = {0: "closed", 1: "open", 2: "half-open"}  # the gauge's values (proxy.breaker.State)


def _router_state(ep: Any, seen: dict[str, Any]) -> dict[str, Any]:
    """A router's targets with their breakers as last seen and what each answered or failed for it;
    `ready` while every breaker is closed, `degraded` while some are not, `open` when none is."""
    targets = []
    for target in routing.target_ids(ep.service_settings):
        counts = seen["routers"].get(ep.inference_id, {}).get(target, {})
        targets.append({"target": target, "breaker": seen["breakers"].get(target, "closed"),
                        "answered": int(counts.get("chosen", 0)), "failed": int(counts.get("failures", 0))})
    closed = sum(t["breaker"] == "closed" for t in targets)
    state = "ready" if closed == len(targets) else "open" if closed == 0 else "degraded"
    return {"state": state, "strategy": ep.service_settings.get("strategy", "fallback"), "targets": targets}


async def status(request: web.Request) -> web.Response:
    """The state of every endpoint the caller may see, and a count of local models loading (the page's
    progress bar)."""
    app = request.app
    seen = _routing_seen(app[appkeys.METRICS].families())
    states: dict[str, Any] = {}
    for ep in app[appkeys.REGISTRY].all():
        if not may_see(request, ep.inference_id, ep.task_type.value):  # a key limited to some endpoints
            continue
        if ep.spec.local:
            state = _local_model_state(app, ep)
        elif ep.spec.composite:
            state = _router_state(ep, seen)
        else:
            state = {"state": "ready"}
        states[ep.inference_id] = {k: v for k, v in state.items() if v is not None}
    local = app.get(appkeys.LOCAL)
    models = local.status() if local is not None else []
    return json_response({"endpoints": states, "local_models": {
        "total": len(models), "loading": sum(m.get("state") == "loading" for m in models),
        "ready": sum(m.get("state") == "ready" for m in models)}})


# The families read from the gateway's own Prometheus registry (see `/metrics`), by name.
_REQUESTS = "inference_proxy_requests"
_LATENCY = "inference_proxy_request_duration_seconds"
_TTFT = "inference_proxy_time_to_first_token_seconds"
_TOKENS = "inference_proxy_tokens"
_IN_FLIGHT = "inference_proxy_in_flight_requests"
_BREAKER = "inference_proxy_circuit_breaker_state"
_ROUTER_COUNTS = {"inference_proxy_router_chosen": "chosen", "inference_proxy_router_failures": "failures",
                  "inference_proxy_router_skipped": "skipped"}


def _routing_seen(families: Any) -> dict[str, Any]:
    """Routers' counts per target and breakers' states, from the router metrics (proxy/router.py)."""
    routers: dict[str, dict[str, dict[str, float]]] = {}
    breakers: dict[str, str] = {}
    for family in families:
        if family.name == _BREAKER:
            for sample in family.samples:
                breakers[sample.labels["target"]] = _BREAKER_STATES.get(int(sample.value), "closed")
        elif family.name in _ROUTER_COUNTS:
            kind = _ROUTER_COUNTS[family.name]
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts = routers.setdefault(sample.labels["router"], {}).setdefault(sample.labels["target"], {})
                    counts[kind] = counts.get(kind, 0) + sample.value
    return {"routers": routers, "breakers": breakers}


def _add_bucket(hist: dict[float, float], labels: dict[str, str], value: float) -> None:
    le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
    hist[le] = hist.get(le, 0.0) + value


async def metrics(request: web.Request) -> web.Response:
    """A snapshot of the counters `/metrics` shows; the page differences successive snapshots into rates.

    Only inference requests count (those that named an endpoint), so the console's own polling and
    reads of `/_inference` do not show as traffic; a key limited to some endpoints sees only theirs.
    `source` names what was counted: one process (its pid; the page differences each one apart, as a
    balancer may send its polls to any), or every worker merged (`--workers N`); `process` answered.
    """
    metrics_ = request.app[appkeys.METRICS]
    endpoints: dict[str, dict[str, float]] = {}
    tasks: dict[str, str] = {}
    latency: dict[float, float] = {}
    ttft: dict[float, float] = {}
    in_flight = 0.0

    def entry(name: str) -> dict[str, float]:
        return endpoints.setdefault(name, {"requests": 0, "errors": 0, "tokens_in": 0, "tokens_out": 0})

    families = list(metrics_.families())
    for family in families:
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if family.name == _REQUESTS and sample.name.endswith("_total") and labels.get("endpoint"):
                e = entry(labels["endpoint"])
                tasks[labels["endpoint"]] = labels.get("task", "")
                e["requests"] += value
                if labels.get("status", "").isdigit() and int(labels["status"]) >= 400:
                    e["errors"] += value
            elif family.name == _LATENCY and sample.name.endswith("_bucket") and labels.get("service"):
                _add_bucket(latency, labels, value)
            elif family.name == _TTFT and sample.name.endswith("_bucket"):
                _add_bucket(ttft, labels, value)
            elif family.name == _TOKENS and sample.name.endswith("_total") and labels.get("endpoint"):
                entry(labels["endpoint"])["tokens_" + ("in" if labels.get("direction") == "in" else "out")] += value
            elif family.name == _IN_FLIGHT:
                in_flight += value

    def histogram(h: dict[float, float]) -> list[list[float | None]]:
        return [[None if math.isinf(le) else le, h[le]] for le in sorted(h)]  # None is +Inf (JSON has no inf)

    visible = {name: e for name, e in endpoints.items() if may_see(request, name, tasks.get(name, ""))}
    seen = _routing_seen(families)
    registry = request.app[appkeys.REGISTRY]
    routers = {}
    for router, counts in seen["routers"].items():
        ep = registry.get(router)
        if ep is not None and may_see(request, router, ep.task_type.value):
            routers[router] = {t: {**c, "breaker": seen["breakers"].get(t, "closed")} for t, c in counts.items()}
    source = "workers" if metrics_.multiprocess_dir else str(os.getpid())
    return json_response({"source": source, "process": os.getpid(), "time": time.time(), "in_flight": in_flight,
                          "endpoints": visible, "latency": histogram(latency), "ttft": histogram(ttft),
                          "routers": routers})


async def _console_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer under `/_console`, errors included, carries the policy."""
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        response.headers.update(_SECURITY_HEADERS)


def add_routes(app: web.Application) -> None:
    app.on_response_prepare.append(_console_headers)
    r = app.router
    r.add_get(PREFIX, to_index)
    r.add_get(PREFIX + "/", index)
    r.add_get(API_PREFIX + "session", session)
    r.add_get(API_PREFIX + "catalogue", catalogue)
    r.add_get(API_PREFIX + "status", status)
    r.add_get(API_PREFIX + "metrics", metrics)
    r.add_get(PREFIX + "/{name:[A-Za-z0-9_-]+\\.[a-z]+}", asset)
