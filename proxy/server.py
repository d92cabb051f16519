"""The aiohttp application: routes, middlewares and the lifecycle of shared state."""

from __future__ import annotations

import logging
from typing import AsyncIterator

from aiohttp import web

from . import appkeys, params, region, surfaces
from .auth import authenticate
from .backends import Backends
from .budgets import Budgets, parse_limits
from .errors import AlreadyExistsError, GatewayError, StatusError
from .httputil import body_first
from .keys import REQUIRED_MARKER, KeyRing
from .limits import Admission
from .metrics import Metrics
from .access_log import AccessLog
from .observability import observe, stamp_request_id, stamp_target
from .pipeline import scrub
from .scrubbing import scrubbed_traceback, secret_strings
from .registry import Registry
from .responses_store import ResponseStore
from .routes import anthropic as anthropic_routes
from .routes import console as console_routes
from .routes import es as es_routes
from .routes import openai as openai_routes
from .routes import ops as ops_routes
from .routes import region as region_routes
from .routes import responses as responses_routes
from .routes import security as security_routes
from .secrets import SecretBox
from .settings import Settings
from .shared_limits import RedisLink
from .store import is_shared, make_store
from .store.files import private_dir
from .tracing import Tracing
from .usage import UsageRecorder
from .upstream import Transport, check_loop

log = logging.getLogger("proxy.server")


def render_error(request: web.Request, err: GatewayError) -> web.StreamResponse:
    """`err` in the format of the surface that serves the request (`proxy.surfaces`)."""
    status, content_type, body = surfaces.of(request).error(scrub(request, err))
    response = web.Response(body=body, status=status, content_type=content_type)
    response.headers.update(err.headers)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as err:
        return render_error(request, err)
    except (web.HTTPMethodNotAllowed, web.HTTPNotFound) as exc:
        allowed = set(exc.allowed_methods) if isinstance(exc, web.HTTPMethodNotAllowed) else None
        status, content_type, body, headers = surfaces.of(request).no_route(request.method, request.path,
                                                                             request.path_qs, allowed)
        return web.Response(body=body, status=status, content_type=content_type, headers=headers)
    except web.HTTPRequestEntityTooLarge as exc:
        return render_error(request, StatusError(exc.text or "request body is too large", status=413))
    except web.HTTPException:
        raise
    except Exception as exc:
        ep = request.get(appkeys.ENDPOINT)
        log.error("unhandled error on %s %s\n%s", request.method, request.path,
                  scrubbed_traceback(exc, secret_strings(ep.secrets) if ep is not None else []))
        return render_error(request, GatewayError("An internal error occurred while handling the request"))


VND_JSON = "application/vnd.elasticsearch+json"


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    authenticate(request, request.app[appkeys.KEYS])
    key = request.get(appkeys.PRINCIPAL)
    limits = parse_limits(key.doc.metadata) if key is not None else None
    if limits is None:
        return await handler(request)
    budgets, link = request.app[appkeys.BUDGETS], request.app[appkeys.REDIS]
    await budgets.admit(link, key, limits)
    try:
        return await handler(request)
    finally:
        used = request.get(appkeys.TOKENS)
        if used and (used[0] or used[1]):
            await budgets.spend(link, key, limits, used[0] + used[1])


@web.middleware
async def loop_guard(request: web.Request, handler) -> web.StreamResponse:
    """Refuse a request this gateway sent itself (its `Via` token), and teach the egress policy the
    address clients reach us on, so an endpoint's url cannot point back at it."""
    via = request.headers.getall("Via", ())
    if via:
        check_loop(via)
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if sockname:
        request.app[appkeys.TRANSPORT].egress.add_listening(sockname[0], sockname[1])
    return await handler(request)


async def _product_header(request: web.Request, response: web.StreamResponse) -> None:
    # The elasticsearch client refuses any 2xx answer without this header (its product check).
    response.headers["X-Elastic-Product"] = "Elasticsearch"
    # ES answers a compatible-with Accept header with the same vendor type (AbstractRestChannel).
    accept = request.headers.get("Accept", "")
    if accept.startswith(VND_JSON) and response.content_type == "application/json":
        version = accept.partition("compatible-with=")[2].strip() or "9"
        response.headers["Content-Type"] = f"{VND_JSON};compatible-with={version}"


def create_app(settings: Settings, tracer_provider=None) -> web.Application:
    """`tracer_provider`: an OpenTelemetry TracerProvider to trace into (tests); by default the
    OTEL_* environment decides (proxy/tracing.py)."""
    gate = Admission(settings.max_in_flight)
    # the body is read (within its own deadline) after authentication and before an in-flight slot is taken
    app = web.Application(middlewares=[observe, params.middleware(render_error), error_middleware, loop_guard,
                                       auth_middleware, body_first, gate.middleware],
                          client_max_size=settings.max_body_bytes)
    app[appkeys.SETTINGS] = settings
    app[appkeys.METRICS] = Metrics(settings.metrics_dir)
    app[appkeys.ACCESS_LOG] = AccessLog()
    app.on_cleanup.append(_flush_access_log)
    app[appkeys.BUDGETS] = Budgets()
    app[appkeys.TRACING] = Tracing(tracer_provider) if tracer_provider is not None else Tracing.from_settings(settings)
    app.on_response_prepare.append(_product_header)
    app.on_response_prepare.append(stamp_request_id)
    app.on_response_prepare.append(stamp_target)
    app.cleanup_ctx.append(_transport_ctx)
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_registry_ctx)
    ops_routes.add_routes(app)
    security_routes.add_routes(app)
    region_routes.add_routes(app)  # before es_routes: its fixed path wins over `/_inference/{id}`
    es_routes.add_routes(app)
    anthropic_routes.add_routes(app)  # before the OpenAI routes, whose /v1/ prefix would claim its URLs
    openai_routes.add_routes(app)
    console_routes.add_routes(app)
    responses_routes.add_routes(app)
    return app


async def _flush_access_log(app: web.Application) -> None:
    app[appkeys.ACCESS_LOG].flush()


async def _registry_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    data_dir = settings.data_path
    private_dir(data_dir)
    box = SecretBox.load(settings.secret_key, data_dir)
    if is_shared(settings) and not settings.secret_key:
        log.warning("a shared store with the key file of %s: every gateway sharing the store needs the same key; "
                    "set INFERENCE_PROXY_SECRET_KEY on all of them", data_dir)
    store = make_store(settings)
    await store.open()
    keys = KeyRing(store, marker=data_dir / REQUIRED_MARKER)
    await keys.load()
    app[appkeys.KEYS] = keys
    app[appkeys.LOCAL] = None
    local = None
    if settings.local_models:
        # imported here: they must not weigh on a remote-only gateway
        if settings.engine_socket:  # a worker of --workers N: the engine host runs the models
            from engines.remote import HostedEngines

            local = HostedEngines(settings)
        else:
            from engines.manager import EngineManager

            local = EngineManager(settings)
        await local.start()  # returns at once; models load in the background
        app[appkeys.LOCAL] = local
    registry = Registry(store, box, preconfigured=local.preconfigured() if local else (),
                        local_check=local.check if local else None)
    try:
        await registry.load()
    except BaseException:
        await store.close()
        if local is not None:
            await local.close()
        raise
    for declared in settings.endpoints:
        if registry.get(declared.inference_id) is None:
            try:
                await registry.create(declared.inference_id, None, declared.body())
            except AlreadyExistsError:  # another worker or replica created it first
                continue
            log.info("created endpoint [%s] from the config file", declared.inference_id)
    app[appkeys.REGISTRY] = registry
    app[appkeys.RESPONSES] = ResponseStore(store, box, settings.responses_retention_s)
    backends = Backends(app[appkeys.TRANSPORT], app[appkeys.METRICS], local=local, shared=app[appkeys.REDIS],
                        resolve=registry.get, max_retries=settings.max_retries,
                        endpoint_max_retries=settings.endpoint_max_retries,
                        allowed=lambda ep: region.policy_allows(registry, settings.location, ep))
    registry.add_listener(backends.forget)
    if local is not None:
        registry.add_listener(local.forget)
    app[appkeys.BACKENDS] = backends
    usage = app[appkeys.USAGE] = UsageRecorder(store, settings.usage_flush_s)
    usage.start()
    keys.follow()
    await registry.follow()  # changes made by other workers or replicas sharing the store
    yield
    await usage.close()
    await keys.close()
    await registry.close()
    await store.close()
    if local is not None:
        await local.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The process's RedisLink when settings.redis is set."""
    settings = app[appkeys.SETTINGS]
    link = None
    if settings.redis:
        link = RedisLink(settings.redis, app[appkeys.METRICS], cache_ttl=settings.embedding_cache_ttl)
        await link.start()
    app[appkeys.REDIS] = link
    yield
    if link is not None:
        await link.close()


async def _transport_ctx(app: web.Application) -> AsyncIterator[None]:
    transport = Transport(app[appkeys.SETTINGS], app[appkeys.TRACING])
    await transport.start()
    app[appkeys.TRANSPORT] = transport
    yield
    await transport.close()
    tracing = app[appkeys.TRACING]
    if tracing is not None:
        tracing.shutdown()  # flushes the spans still batched
