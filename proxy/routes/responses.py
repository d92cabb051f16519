"""The OpenAI Responses API facade: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`.

Any chat endpoint answers: requests become canonical chat requests, with the stored conversation of
`previous_response_id` in front; answers and deltas become `response` objects and typed events.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from aiohttp import web

from .. import appkeys, pipeline, surfaces
from ..auth import principal
from ..errors import NotFoundError
from ..httputil import read_raw
from ..responses_store import ResponseStore
from ..types import ChatMessage, ChatResult, TaskType
from ..wire import openai as openai_wire
from ..wire import responses as wire
from .openai import endpoint_for

STORE: web.AppKey[ResponseStore] = web.AppKey("responses_store", ResponseStore)
T = TaskType


class ResponseNotFound(NotFoundError):
    openai_code = "not_found"


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def _owner(request: web.Request) -> str:
    """Responses belong to the API key that made them ("" while access control is off)."""
    key = principal(request)
    return key.id if key is not None else ""


async def _history(request: web.Request, store: ResponseStore, previous: str | None) -> list[ChatMessage]:
    if previous is None:
        return []
    found = await store.get(previous, _owner(request))
    if found is None:
        raise ResponseNotFound(f"Previous response with id '{previous}' not found.", param="previous_response_id")
    return found[1]


async def create(request: web.Request) -> web.StreamResponse:
    body, extra = openai_wire.decode_with_extra(await read_raw(request), wire.ResponsesBody, wire.UNSUPPORTED)
    body: wire.ResponsesBody
    ep = endpoint_for(request, body.model, frozenset({T.CHAT_COMPLETION, T.COMPLETION}), "responses")
    store = request.app[STORE]
    history = await _history(request, store, body.previous_response_id)
    req = wire.chat_request(body, history, extra)
    # what a follow-up continues from: the conversation without this request's instructions
    asked = history + wire.input_messages(body.input)
    envelope = wire.Envelope(body)
    call = pipeline.bind(request, ep, stream=body.stream)
    if body.stream:
        writer = wire.StreamWriter(envelope)

        async def keep() -> None:  # before `response.completed` is written, so a follow-up finds it
            final = writer.final()
            await store.put(final, asked + wire.answer_messages(final["output"]), _owner(request))

        return await call.stream(req, writer, finish=keep if body.store else None)
    rendered: dict[str, Any] = {}

    def render(result: ChatResult) -> bytes:
        rendered.update(wire.render(envelope, result))
        return wire.encode(rendered)

    answer = await call.run(req, render)
    if body.store:
        await store.put(rendered, asked + wire.answer_messages(rendered["output"]), _owner(request))
    return answer


async def get(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    found = await request.app[STORE].get(response_id, _owner(request))
    if found is None:
        raise ResponseNotFound(f"Response with id '{response_id}' not found.")
    return _json(wire.encode(found[0]))


async def delete(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    if not await request.app[STORE].delete(response_id, _owner(request)):
        raise ResponseNotFound(f"Response with id '{response_id}' not found.")
    return _json(wire.encode({"id": response_id, "object": "response", "deleted": True}))


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    app[STORE] = ResponseStore(app[appkeys.SETTINGS].data_path / "responses.db")
    yield
    await app[STORE].close()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_store_ctx)
    errors = openai_wire.ERRORS
    surfaces.add(app, "POST", "/v1/responses", create, errors)
    surfaces.add(app, "GET", "/v1/responses/{response_id}", get, errors)
    surfaces.add(app, "DELETE", "/v1/responses/{response_id}", delete, errors)
