"""The OpenAI-compatible facade: `/v1/models`, `/v1/embeddings`, `/v1/chat/completions`,
`/v1/completions` and `/v1/rerank` (also `/rerank`, `/v2/rerank`). An endpoint id is the model.

Same canonical pipeline as `/_inference`; only decoding and rendering differ.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import msgspec
from aiohttp import web

from .. import appkeys
from .. import perform as pipeline
from ..errors import GatewayError, NotFoundError, StatusError
from ..auth import may_see
from ..httputil import parse_time, read_raw
from ..registry import Endpoint
from ..streaming import pump
from ..types import (ChatDelta, ChatMessage, ChatRequest, EmbedRequest, RerankRequest, TaskType)
from ..wire import es as es_wire
from ..wire import openai as wire

log = logging.getLogger("proxy.openai")
T = TaskType


class InvalidRequest(StatusError):
    status = 400
    es_type = "invalid_request_error"


class ModelNotFound(NotFoundError):
    openai_code = "model_not_found"


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


async def _decode(request: web.Request, struct: type, unsupported: dict[str, Any] | None = None) -> Any:
    raw = await read_raw(request)
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # invalid UTF-8 in a string is a client error too
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object")
    for name, noop in (unsupported or {}).items():
        if name in data and data[name] is not None and data[name] != noop:
            raise InvalidRequest(f"The parameter [{name}] is not supported by this gateway", param=name)
    known = set(struct.__struct_fields__)
    extra = sorted(k for k in data if k not in known and k not in (unsupported or {}))
    if extra:
        log.info("ignoring unknown request fields %s on %s", extra, request.path)
    try:
        return msgspec.convert(data, struct)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = text.rpartition("`$.")[2].rstrip("`") if "`$." in text else None
        raise InvalidRequest(f"Invalid request: {text}", param=param) from None


def _endpoint(request: web.Request, model: str, tasks: frozenset[TaskType], what: str) -> Endpoint:
    ep = request.app[appkeys.REGISTRY].get(model)
    if ep is None or not may_see(request, ep.inference_id, ep.task_type.value):
        raise ModelNotFound(f"The model `{model}` does not exist or you do not have access to it.", param="model")
    if ep.task_type not in tasks:
        raise InvalidRequest(f"The model `{model}` is a [{ep.task_type.value}] endpoint and does not support "
                             f"{what}", param="model")
    return ep


def _context(ep: Endpoint, default: str):
    return pipeline.context(ep, parse_time(default), default)


# ------------------------------------------------------------------------------ models


def _model(ep: Endpoint) -> dict[str, Any]:
    return {"id": ep.inference_id, "object": "model", "created": 0, "owned_by": ep.service,
            "task_type": ep.task_type.value}


async def list_models(request: web.Request) -> web.Response:
    endpoints = [e for e in request.app[appkeys.REGISTRY].all() if may_see(request, e.inference_id, e.task_type.value)]
    return _json(wire.encode({"object": "list", "data": [_model(e) for e in endpoints]}))


async def get_model(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    ep = request.app[appkeys.REGISTRY].get(model)
    if ep is None or not may_see(request, ep.inference_id, ep.task_type.value):
        raise ModelNotFound(f"The model `{model}` does not exist or you do not have access to it.", param="model")
    return _json(wire.encode(_model(ep)))


# ------------------------------------------------------------------------------ embeddings


async def embeddings(request: web.Request) -> web.Response:
    body: wire.EmbeddingsBody = await _decode(request, wire.EmbeddingsBody)
    tasks = frozenset({T.TEXT_EMBEDDING, T.EMBEDDING, T.SPARSE_EMBEDDING})
    ep = _endpoint(request, body.model, tasks, "embeddings")
    if ep.task_type == T.SPARSE_EMBEDDING:
        raise InvalidRequest(f"The model `{body.model}` produces sparse embeddings, which the OpenAI embeddings "
                             f"format cannot carry; use POST /_inference/sparse_embedding/{body.model}", param="model")
    if body.encoding_format not in ("float", "base64"):
        raise InvalidRequest("encoding_format must be [float] or [base64]", param="encoding_format")
    inputs = [body.input] if isinstance(body.input, str) else body.input
    if not inputs:
        raise InvalidRequest("input cannot be an empty array", param="input")
    if not all(isinstance(i, str) for i in inputs):
        raise InvalidRequest(f"The model `{body.model}` takes text inputs only, not token ids", param="input")
    pipeline.check_input_limits(request, inputs)  # type: ignore[arg-type]
    req = EmbedRequest(inputs=list(inputs), dimensions=body.dimensions, user=body.user)  # type: ignore[arg-type]
    result = await pipeline.backend_for(request, ep).embed(req, _context(ep, pipeline.DEFAULT_TIMEOUT_TEXT))
    pipeline.count_usage(request, result.usage)
    return _json(wire.render_embeddings(result.vectors, body.model, result.usage, body.encoding_format))


# ------------------------------------------------------------------------------ chat and completions


def _stop(stop: str | list[str] | None) -> list[str] | None:
    return [stop] if isinstance(stop, str) else stop


def _check_n(n: int | None) -> None:
    if n is not None and n != 1:
        raise InvalidRequest("Only n=1 is supported", param="n")


class _ChatRenderer:
    def __init__(self, model: str, include_usage: bool) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage

    def frame(self, delta: ChatDelta) -> bytes | None:
        return wire.chat_chunk_frame(delta, self.id, self.model, self.created, self.include_usage,
                                     es_wire.tool_call_dicts(delta))

    def done(self) -> bytes:
        return wire.DONE_FRAME

    def error(self, err: GatewayError) -> bytes:
        return wire.error_frame(err)


class _TextRenderer(_ChatRenderer):
    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__(model, include_usage)
        self.id = f"cmpl-{uuid.uuid4().hex}"

    def frame(self, delta: ChatDelta) -> bytes | None:
        return wire.text_chunk_frame(delta, self.id, self.model, self.created, self.include_usage)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body: wire.ChatBody = await _decode(request, wire.ChatBody, wire.UNSUPPORTED_CHAT_PARAMS)
    ep = _endpoint(request, body.model, frozenset({T.CHAT_COMPLETION, T.COMPLETION}), "chat completions")
    _check_n(body.n)
    if not body.messages:
        raise InvalidRequest("messages cannot be an empty array", param="messages")
    messages = [ChatMessage(role=m.role, content=m.content, name=m.name, tool_call_id=m.tool_call_id,
                            tool_calls=m.tool_calls) for m in body.messages]
    req = ChatRequest(messages=messages, max_tokens=body.max_completion_tokens or body.max_tokens,
                      temperature=body.temperature, top_p=body.top_p, stop=_stop(body.stop), seed=body.seed,
                      tools=body.tools, tool_choice=body.tool_choice, response_format=body.response_format,
                      user=body.user, stream=body.stream)
    backend = pipeline.backend_for(request, ep)
    ctx = _context(ep, pipeline.DEFAULT_GENERATION_TIMEOUT_TEXT)
    if body.stream:
        pipeline.check_streamable(ep, ep.task_type)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await pump(request, backend.stream(req, ctx), _ChatRenderer(body.model, include_usage))
    result = await backend.chat(req, ctx)
    pipeline.count_usage(request, result.usage)
    if not result.created:
        result = msgspec.structs.replace(result, created=int(time.time()))
    return _json(wire.render_chat_completion(msgspec.structs.replace(result, model=body.model), body.model))


async def completions(request: web.Request) -> web.StreamResponse:
    body: wire.CompletionsBody = await _decode(request, wire.CompletionsBody, wire.UNSUPPORTED_CHAT_PARAMS)
    ep = _endpoint(request, body.model, frozenset({T.COMPLETION, T.CHAT_COMPLETION}), "text completions")
    _check_n(body.n)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise InvalidRequest("Only a single prompt is supported", param="prompt")
    req = ChatRequest(messages=[ChatMessage(role="user", content=prompts[0])], max_tokens=body.max_tokens,
                      temperature=body.temperature, top_p=body.top_p, stop=_stop(body.stop), seed=body.seed,
                      user=body.user, stream=body.stream)
    backend = pipeline.backend_for(request, ep)
    ctx = _context(ep, pipeline.DEFAULT_GENERATION_TIMEOUT_TEXT)
    if body.stream:
        pipeline.check_streamable(ep, ep.task_type)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await pump(request, backend.stream(req, ctx), _TextRenderer(body.model, include_usage))
    result = await backend.chat(req, ctx)
    return _json(wire.render_text_completion(result, body.model, int(time.time())))


# ------------------------------------------------------------------------------ rerank


async def rerank(request: web.Request) -> web.Response:
    body: wire.RerankBody = await _decode(request, wire.RerankBody)
    ep = _endpoint(request, body.model, frozenset({T.RERANK}), "rerank")
    if not body.documents:
        raise InvalidRequest("documents cannot be an empty array", param="documents")
    docs = [d if isinstance(d, str) else d.text for d in body.documents]
    pipeline.check_input_limits(request, docs)
    req = pipeline.rerank_options(ep, RerankRequest(query=body.query, documents=docs, top_n=body.top_n,
                                                    return_documents=body.return_documents))
    result = pipeline.finish_rerank(req, await pipeline.backend_for(request, ep).rerank(
        req, _context(ep, pipeline.DEFAULT_TIMEOUT_TEXT)))
    results = []
    for d in result.ranked:
        item: dict[str, Any] = {"index": d.index, "relevance_score": d.relevance_score}
        if d.text is not None:
            item["document"] = {"text": d.text}
        results.append(item)
    usage = result.usage or None
    payload: dict[str, Any] = {"id": f"rerank-{uuid.uuid4().hex}", "model": body.model, "results": results}
    if usage is not None:
        payload["usage"] = {"total_tokens": usage.total_tokens or usage.prompt_tokens}
    return _json(wire.encode(payload))


OPENAI_PREFIXES = ("/v1/", "/v2/rerank", "/rerank")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/models", list_models)
    r.add_get("/v1/models/{model}", get_model)
    r.add_post("/v1/embeddings", embeddings)
    r.add_post("/v1/chat/completions", chat_completions)
    r.add_post("/v1/completions", completions)
    r.add_post("/v1/rerank", rerank)
    r.add_post("/v2/rerank", rerank)
    r.add_post("/rerank", rerank)
