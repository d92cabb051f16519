"""The OpenAI-compatible facade: `/v1/models`, `/v1/embeddings`, `/v1/chat/completions`,
`/v1/completions` and `/v1/rerank` (also `/rerank`, `/v2/rerank`). An endpoint id is the model.

Same pipeline as `/_inference`; only the wire conversions (`wire.openai`) differ.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import appkeys, pipeline, surfaces
from ..auth import may_see
from ..endpoint import Endpoint
from ..httputil import read_raw
from ..types import TaskType
from ..wire import openai as wire
from ..wire.openai import InvalidRequest, ModelNotFound
from ..wire.openai_relay import ChatRelay

T = TaskType


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


async def _decode(request: web.Request, struct: type, unsupported: dict[str, Any] | None = None) -> Any:
    return wire.decode(await read_raw(request), struct, request.path, unsupported)


def find_model(request: web.Request, model: str) -> Endpoint | None:
    """An endpoint by its id or by one of its aliases (`model_aliases`), if the caller's key may see it:
    endpoint ids follow ES's rules (lowercase, no `/`), model names as clients are configured with them do not."""
    registry = request.app[appkeys.REGISTRY]
    ep = registry.get(model)
    if ep is None:
        target = request.app[appkeys.SETTINGS].model_aliases.get(model)
        ep = registry.get(target) if target else None
    return ep if ep is not None and may_see(request, ep.inference_id, ep.task_type.value) else None


def endpoint_for(request: web.Request, model: str, tasks: frozenset[TaskType], what: str) -> Endpoint:
    """The endpoint a client surface's `model` names, for one of `tasks`."""
    ep = find_model(request, model)
    if ep is None:
        raise ModelNotFound(f"The model `{model}` does not exist or you do not have access to it.", param="model")
    if ep.task_type not in tasks:
        raise InvalidRequest(f"The model `{model}` is a [{ep.task_type.value}] endpoint and does not support "
                             f"{what}", param="model")
    return ep


# ------------------------------------------------------------------------------ models


def _model(ep: Endpoint, name: str | None = None) -> dict[str, Any]:
    out = {"id": name or ep.inference_id, "object": "model", "created": 0, "owned_by": ep.service,
           "task_type": ep.task_type.value}
    if name is not None and name != ep.inference_id:
        out["alias_of"] = ep.inference_id
    return out


async def list_models(request: web.Request) -> web.Response:
    registry = request.app[appkeys.REGISTRY]
    data = [_model(e) for e in registry.all() if may_see(request, e.inference_id, e.task_type.value)]
    for alias, target in request.app[appkeys.SETTINGS].model_aliases.items():
        ep = registry.get(target)
        if ep is not None and registry.get(alias) is None and may_see(request, ep.inference_id, ep.task_type.value):
            data.append(_model(ep, alias))
    return _json(wire.encode({"object": "list", "data": data}))


async def get_model(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    ep = find_model(request, model)
    if ep is None:
        raise ModelNotFound(f"The model `{model}` does not exist or you do not have access to it.", param="model")
    return _json(wire.encode(_model(ep, model)))


# ------------------------------------------------------------------------------ inference


async def embeddings(request: web.Request) -> web.StreamResponse:
    body: wire.EmbeddingsBody = await _decode(request, wire.EmbeddingsBody)
    ep = endpoint_for(request, body.model, frozenset({T.TEXT_EMBEDDING, T.EMBEDDING, T.SPARSE_EMBEDDING}), "embeddings")
    settings = request.app[appkeys.SETTINGS]
    req = wire.to_embed_request(body, ep.task_type, settings.max_inputs, settings.max_input_chars)
    return await pipeline.bind(request, ep).run(
        req, lambda r: wire.render_embeddings(r.vectors, body.model, r.usage, body.encoding_format))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body, extra = wire.decode_with_extra(await read_raw(request), wire.ChatBody, wire.UNSUPPORTED_CHAT_PARAMS)
    ep = endpoint_for(request, body.model, frozenset({T.CHAT_COMPLETION, T.COMPLETION}), "chat completions")
    req = wire.to_chat_request(body, extra)
    legacy = bool(body.functions) and not body.tools  # answered as `function_call`, as OpenAI does
    call = pipeline.bind(request, ep, stream=body.stream)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        # a legacy `functions` client needs its calls rewritten: never passed through
        relay = None if legacy else ChatRelay(body.model, include_usage)
        return await call.stream(req, wire.ChatStream(body.model, include_usage, legacy), relay=relay)
    return await call.run(req, lambda r: wire.render_v1_chat_completion(r, body.model, legacy))


async def completions(request: web.Request) -> web.StreamResponse:
    body, extra = wire.decode_with_extra(await read_raw(request), wire.CompletionsBody,
                                         wire.UNSUPPORTED_COMPLETION_PARAMS)
    ep = endpoint_for(request, body.model, frozenset({T.COMPLETION, T.CHAT_COMPLETION}), "text completions")
    req = wire.completions_to_chat_request(body, extra)
    call = pipeline.bind(request, ep, stream=body.stream)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await call.stream(req, wire.TextStream(body.model, include_usage))
    return await call.run(req, lambda r: wire.render_text_completion(r, body.model))


async def rerank(request: web.Request) -> web.StreamResponse:
    body: wire.RerankBody = await _decode(request, wire.RerankBody)
    ep = endpoint_for(request, body.model, frozenset({T.RERANK}), "rerank")
    settings = request.app[appkeys.SETTINGS]
    req = wire.to_rerank_request(body, settings.max_inputs, settings.max_input_chars)
    return await pipeline.bind(request, ep).run(req, lambda r: wire.render_rerank(r, body.model))


def add_routes(app: web.Application) -> None:
    errors = wire.ERRORS
    surfaces.claim(app, ("/v1/", "/v2/rerank", "/rerank"), errors)  # also answers unknown URLs under them
    surfaces.add(app, "GET", "/v1/models", list_models, errors)
    surfaces.add(app, "GET", "/v1/models/{model:.+}", get_model, errors)  # model names may hold a `/`
    surfaces.add(app, "POST", "/v1/embeddings", embeddings, errors)
    surfaces.add(app, "POST", "/v1/chat/completions", chat_completions, errors)
    surfaces.add(app, "POST", "/v1/completions", completions, errors)
    for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
        surfaces.add(app, "POST", path, rerank, errors)
