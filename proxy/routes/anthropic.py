"""The Anthropic Messages API facade: `POST /v1/messages` and `POST /v1/messages/count_tokens`, so the
`anthropic` SDK and tools built on it reach any chat endpoint. An endpoint id (or alias) is the model.
"""

from __future__ import annotations

from aiohttp import web

from .. import pipeline, surfaces
from ..endpoint import Endpoint
from ..errors import NotFoundError, RequestValidationError
from ..httputil import read_raw
from ..types import ChatResult, TaskType
from ..wire import anthropic as wire
from .openai import find_model

PREFIX = "/v1/messages"
T = TaskType


class ModelNotFound(NotFoundError):
    pass


def _endpoint(request: web.Request, model: str) -> Endpoint:
    ep = find_model(request, model)
    if ep is None:
        raise ModelNotFound(f"model: {model}", param="model")
    if ep.task_type not in (T.CHAT_COMPLETION, T.COMPLETION):
        raise RequestValidationError(f"The model [{model}] is a [{ep.task_type.value}] endpoint, not a chat model",
                                     param="model")
    return ep


async def messages(request: web.Request) -> web.StreamResponse:
    body: wire.MessagesBody = wire.decode(await read_raw(request), wire.MessagesBody)
    ep = _endpoint(request, body.model)
    req = wire.chat_request(body)
    call = pipeline.bind(request, ep, stream=body.stream)
    if body.stream:
        return await call.stream(req, wire.StreamWriter(body.model))
    return await call.run(req, lambda result: wire.render_message(result, body.model))


def _count(result: ChatResult) -> bytes:
    if result.usage is None:
        raise RequestValidationError("The endpoint does not report token usage, so its tokens cannot be counted",
                                     param="model")
    return wire.encode({"input_tokens": result.usage.prompt_tokens})


async def count_tokens(request: web.Request) -> web.StreamResponse:
    """The provider's own count of the prompt: a one-token generation whose usage says how long the
    prompt was, so it holds for any provider and model behind the endpoint."""
    body: wire.CountTokensBody = wire.decode(await read_raw(request), wire.CountTokensBody)
    ep = _endpoint(request, body.model)
    return await pipeline.bind(request, ep).run(wire.count_request(body), _count)


def add_routes(app: web.Application) -> None:
    """Before the OpenAI routes: the first claimed prefix that fits an unknown URL answers it."""
    surfaces.claim(app, (PREFIX + "/",), wire.ERRORS)
    surfaces.add(app, "POST", PREFIX, messages, wire.ERRORS)
    surfaces.add(app, "POST", PREFIX + "/count_tokens", count_tokens, wire.ERRORS)
