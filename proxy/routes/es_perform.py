"""Performing inference on `/_inference`: resolve the endpoint, convert the body (`wire.es`), hand it to
the pipeline."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from .. import appkeys, pipeline, surfaces
from ..endpoint import Endpoint
from ..errors import GatewayError, ParseError, StatusError
from ..httputil import check_params, parse_time, read_body
from ..types import CanonicalRequest, ChatRequest, TaskType
from ..wire import es as es_wire
from ..wire import es_embedding

_PERFORM_PARAMS = ("timeout",)


def _endpoint(request: web.Request, inference_id: str, url_task: TaskType | None) -> Endpoint:
    ep = request.app[appkeys.REGISTRY].require(inference_id)
    if url_task is not None and url_task != ep.task_type:
        raise StatusError(f"Incompatible task_type, the requested type [{url_task.value}] does not match the model "
                          f"type [{ep.task_type.value}]")
    return ep


def _request(request: web.Request, raw: bytes, ep: Endpoint, url_task: TaskType | None,
             stream: bool) -> tuple[CanonicalRequest, str | None]:
    settings = request.app[appkeys.SETTINGS]
    req, body_timeout = es_wire.to_request(raw, ep.spec, ep.task_type, url_task is not None, stream,
                                           settings.max_inputs, settings.max_input_chars)
    return req, request.query.get("timeout") or body_timeout


async def perform(request: web.Request, inference_id: str, url_task: TaskType | None) -> web.StreamResponse:
    check_params(request, _PERFORM_PARAMS)
    ep = _endpoint(request, inference_id, url_task)
    raw = await read_body(request)
    call = pipeline.bind(request, ep)
    if ep.task_type == TaskType.EMBEDDING:
        settings = request.app[appkeys.SETTINGS]
        embed, body_timeout = es_embedding.to_request(raw, ep.spec, settings.max_inputs, settings.max_input_chars)
        if embed.contents is not None:
            pipeline.check_embedding_content(ep, embed.contents)
        return await call.run(embed, es_wire.renderer(ep.task_type, ""), request.query.get("timeout") or body_timeout)
    req, timeout = _request(request, raw, ep, url_task, stream=False)
    model = es_wire.model_name(ep.service_settings, ep.inference_id, req) if isinstance(req, ChatRequest) else ""
    return await call.run(req, es_wire.renderer(ep.task_type, model), timeout)


class _Parsing:
    """ES parses the query and the body in the REST handler (`prepareRequest`), before the transport action
    whose listener (`ServerSentEventsRestActionListener.onFailure`) frames failures as an SSE `error` event:
    an error found while parsing (query parameters, media type, body, timeout) is the plain JSON envelope."""

    def __init__(self, request: web.Request) -> None:
        self.request = request

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None and issubclass(exc_type, GatewayError):
            surfaces.choose(self.request, es_wire.ERRORS)


async def stream(request: web.Request, inference_id: str, url_task_text: str | None) -> web.StreamResponse:
    """`_stream` routes: the chat schema for chat_completion, the inference schema otherwise."""
    url_task = None
    with _Parsing(request):
        if url_task_text is not None:
            url_task = TaskType.parse(url_task_text)
            if url_task is None:
                raise StatusError(f"Unknown task_type [{url_task_text}]")
        check_params(request, _PERFORM_PARAMS)
        raw = await read_body(request)
    if url_task is not None:
        surfaces.choose(request, surfaces.of(request).for_task(url_task))
    ep = _endpoint(request, inference_id, url_task)
    call = pipeline.bind(request, ep, stream=True)
    try:
        req, timeout = _request(request, raw, ep, url_task, stream=True)
    except ParseError:
        surfaces.choose(request, es_wire.ERRORS)
        raise
    if timeout is not None:
        with _Parsing(request):
            parse_time(timeout)
    assert isinstance(req, ChatRequest)
    renderer: es_wire.ChatStream | es_wire.CompletionStream
    if ep.task_type == TaskType.CHAT_COMPLETION:
        renderer = es_wire.ChatStream(f"chatcmpl-{os.urandom(16).hex()}",
                                      es_wire.model_name(ep.service_settings, ep.inference_id, req))
    else:
        renderer = es_wire.CompletionStream()
    return await call.stream(req, renderer, timeout)
