"""The aiohttp application: routes, middlewares and the lifecycle of shared state."""

from __future__ import annotations

import logging
from typing import AsyncIterator

import msgspec
from aiohttp import web

from . import appkeys
from .errors import AlreadyExistsError, GatewayError, StatusError
from .auth import KeyStore, authenticate
from .backends import Backends
from .limits import Admission
from .perform import scrub
from .metrics import Metrics
from .observability import observe, stamp_request_id
from .registry import Registry
from .routes import es as es_routes
from .routes import openai as openai_routes
from .routes import ops as ops_routes
from .secrets import SecretBox
from .settings import Settings
from .shared_limits import RedisLink
from .store import is_shared, make_store
from .upstream import Transport
from .wire import es as es_wire
from .wire import openai as openai_wire

log = logging.getLogger("proxy.server")
_encoder = msgspec.json.Encoder()


def _is_openai(request: web.Request) -> bool:
    return request.path == "/v1" or request.path.startswith(openai_routes.OPENAI_PREFIXES)


def render_error(request: web.Request, err: GatewayError) -> web.StreamResponse:
    scrub(request, err)
    if _is_openai(request):
        response = web.Response(body=openai_wire.encode(openai_wire.error_body(err)),
                                status=openai_wire.status_for(err), content_type="application/json")
        response.headers.update(err.headers)
        return response
    # chat_completion requests use the OpenAI-style errors of ES `UnifiedChatCompletionException` (§5.3)
    fmt = request.get(appkeys.ERROR_FORMAT, "es")
    if fmt == "chat":
        body = es_wire.chat_error_body(err)
    else:
        body = es_wire.error_body(err)
    if request.get(appkeys.SSE):
        frame = es_wire.error_frame(body)
        response = web.Response(body=frame, status=err.status, content_type="text/event-stream")
    else:
        response = web.Response(body=_encoder.encode(body), status=err.status, content_type="application/json")
    response.headers.update(err.headers)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as err:
        return render_error(request, err)
    except (web.HTTPMethodNotAllowed, web.HTTPNotFound) as exc:
        if _is_openai(request):
            return render_error(request, StatusError(f"Unknown request URL: {request.method} {request.path}",
                                                     status=exc.status))
        if isinstance(exc, web.HTTPNotFound):
            body = {"error": f"no handler found for uri [{request.path_qs}] and method [{request.method}]"}
            return web.Response(body=_encoder.encode(body), status=400, content_type="application/json")
        allowed = ", ".join(sorted(exc.allowed_methods))
        body = {"error": f"Incorrect HTTP method for uri [{request.path_qs}] and method [{request.method}], "
                         f"allowed: [{allowed}]", "status": 405}
        return web.Response(body=_encoder.encode(body), status=405, content_type="application/json",
                            headers={"Allow": ",".join(sorted(exc.allowed_methods))})
    except web.HTTPRequestEntityTooLarge as exc:
        return render_error(request, StatusError(exc.text or "request body is too large", status=413))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_error(request, GatewayError("An internal error occurred while handling the request"))


VND_JSON = "application/vnd.elasticsearch+json"


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    authenticate(request, request.app[appkeys.KEYS])
    return await handler(request)


async def _product_header(request: web.Request, response: web.StreamResponse) -> None:
    # The elasticsearch client refuses any 2xx answer without this header (its product check).
    response.headers["X-Elastic-Product"] = "Elasticsearch"
    # ES answers a compatible-with Accept header with the same vendor type (AbstractRestChannel).
    accept = request.headers.get("Accept", "")
    if accept.startswith(VND_JSON) and response.content_type == "application/json":
        version = accept.partition("compatible-with=")[2].strip() or "9"
        response.headers["Content-Type"] = f"{VND_JSON};compatible-with={version}"


def create_app(settings: Settings) -> web.Application:
    gate = Admission(settings.max_in_flight)
    app = web.Application(middlewares=[observe, error_middleware, gate.middleware, auth_middleware],
                          client_max_size=settings.max_body_bytes)
    app[appkeys.SETTINGS] = settings
    app[appkeys.METRICS] = Metrics()
    app[appkeys.KEYS] = KeyStore(settings.data_path / "endpoints.db")
    app.on_response_prepare.append(_product_header)
    app.on_response_prepare.append(stamp_request_id)
    app.cleanup_ctx.append(_transport_ctx)
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_registry_ctx)
    ops_routes.add_routes(app)
    es_routes.add_routes(app)
    openai_routes.add_routes(app)
    return app


async def _registry_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    data_dir = settings.data_path
    data_dir.mkdir(parents=True, exist_ok=True)
    box = SecretBox.load(settings.secret_key, data_dir)
    if is_shared(settings) and not settings.secret_key:
        log.warning("a shared store with the key file of %s: every gateway sharing the store needs the same key; "
                    "set INFERENCE_PROXY_SECRET_KEY on all of them", data_dir)
    store = make_store(settings)
    await store.open()
    app[appkeys.KEYS].reload()
    app[appkeys.LOCAL] = None
    local = None
    if settings.local_models:
        from engines.manager import EngineManager  # imported here: it must not weigh on a remote-only gateway

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
    backends = Backends(app[appkeys.TRANSPORT], app[appkeys.METRICS], local=local, shared=app[appkeys.REDIS])
    registry.add_listener(backends.forget)
    if local is not None:
        registry.add_listener(local.forget)
    app[appkeys.BACKENDS] = backends
    await registry.follow()  # changes made by other workers or replicas sharing the store
    yield
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
    transport = Transport(app[appkeys.SETTINGS])
    await transport.start()
    app[appkeys.TRANSPORT] = transport
    yield
    await transport.close()
