"""The OpenAI Responses API facade: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`,
`GET /v1/responses/{id}/input_items`.

Any chat endpoint answers: requests become canonical chat requests, with the stored conversation of
`previous_response_id` in front; answers and deltas become `response` objects and typed events.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import appkeys, pipeline, surfaces
from ..auth import principal
from ..errors import NotFoundError, RequestValidationError
from ..httputil import read_raw
from ..responses_store import ResponseStore
from ..types import ChatResult, TaskType
from ..wire import openai as openai_wire
from ..wire import responses as wire
from .openai import endpoint_for

T = TaskType


class ResponseNotFound(NotFoundError):
    openai_code = "not_found"


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def _owner(request: web.Request) -> str:
    """Responses belong to the API key that made them ("" while access control is off)."""
    key = principal(request)
    return key.id if key is not None else ""


async def _history(request: web.Request, store: ResponseStore, previous: str | None) -> list[dict[str, Any]]:
    """The items of the conversation `previous` ended: its input items, then its output."""
    if previous is None:
        return []
    found = await store.get(previous, _owner(request))
    if found is None:
        raise ResponseNotFound(f"Previous response with id '{previous}' not found.", param="previous_response_id")
    response, items = found
    return items + response["output"]


async def create(request: web.Request) -> web.StreamResponse:
    body, extra = openai_wire.decode_with_extra(await read_raw(request), wire.ResponsesBody, wire.UNSUPPORTED)
    body: wire.ResponsesBody
    ep = endpoint_for(request, body.model, frozenset({T.CHAT_COMPLETION, T.COMPLETION}), "responses")
    store = request.app[appkeys.RESPONSES]
    history = await _history(request, store, body.previous_response_id)
    req = wire.chat_request(body, wire.input_messages(history), extra)
    # what the response's input items list and a follow-up continues from: the conversation without
    # this request's instructions
    items = history + wire.input_items(body.input)
    envelope = wire.Envelope(body)
    call = pipeline.bind(request, ep, stream=body.stream)
    if body.stream:
        writer = wire.StreamWriter(envelope)

        async def keep() -> None:  # before `response.completed` is written, so a follow-up finds it
            await store.put(writer.final(), items, _owner(request))

        return await call.stream(req, writer, finish=keep if body.store else None)
    rendered: dict[str, Any] = {}

    def render(result: ChatResult) -> bytes:
        rendered.update(wire.render(envelope, result))
        return wire.encode(rendered)

    answer = await call.run(req, render)
    if body.store:
        await store.put(rendered, items, _owner(request))
    return answer


async def get(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    found = await request.app[appkeys.RESPONSES].get(response_id, _owner(request))
    if found is None:
        raise ResponseNotFound(f"Response with id '{response_id}' not found.")
    return _json(wire.encode(found[0]))


def _limit(raw: str | None) -> int:
    """OpenAI's API reference: 1 to 100, 20 by default."""
    if raw is None:
        return 20
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise RequestValidationError(f"limit must be an integer from 1 to 100, not [{raw}]", param="limit")
    return value


async def input_items(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    query = request.query
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise RequestValidationError(f"order must be [asc] or [desc], not [{order}]", param="order")
    include = frozenset(query.getall("include[]", []) + query.getall("include", []))
    if unknown := sorted(include - wire.ITEM_INCLUDES):
        raise RequestValidationError(f"include: [{', '.join(unknown)}] cannot be produced by this gateway",
                                     param="include")
    limit = _limit(query.get("limit"))
    found = await request.app[appkeys.RESPONSES].get(response_id, _owner(request))
    if found is None:
        raise ResponseNotFound(f"Response with id '{response_id}' not found.")
    page = wire.item_list(found[1], order=order, limit=limit, after=query.get("after"), before=query.get("before"),
                          include=include)
    return _json(wire.encode(page))


async def delete(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    if not await request.app[appkeys.RESPONSES].delete(response_id, _owner(request)):
        raise ResponseNotFound(f"Response with id '{response_id}' not found.")
    return _json(wire.encode({"id": response_id, "object": "response", "deleted": True}))


def add_routes(app: web.Application) -> None:
    errors = openai_wire.ERRORS
    surfaces.add(app, "POST", "/v1/responses", create, errors)
    surfaces.add(app, "GET", "/v1/responses/{response_id}", get, errors)
    surfaces.add(app, "DELETE", "/v1/responses/{response_id}", delete, errors)
    surfaces.add(app, "GET", "/v1/responses/{response_id}/input_items", input_items, errors)
