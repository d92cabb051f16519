"""Performing inference on `/_inference`: decode, validate, call the backend, render ES JSON or SSE."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from .. import appkeys
from .. import perform as pipeline
from ..errors import GatewayError, RequestValidationError, StatusError
from ..httputil import check_params, parse_time, read_body
from ..registry import Endpoint
from ..streaming import pump
from ..types import (ChatDelta, ChatMessage, ChatRequest, EmbedRequest, FunctionCall, InputType, RerankRequest,
                     TaskType, ToolCall)
from ..validation import validate_task_settings_override
from ..wire import es as es_wire
from ..wire import openai as openai_wire

_PERFORM_PARAMS = ("timeout",)


def _endpoint(request: web.Request, inference_id: str, url_task: TaskType | None) -> Endpoint:
    ep = request.app[appkeys.REGISTRY].require(inference_id)
    if url_task is not None and url_task != ep.task_type:
        raise StatusError(f"Incompatible task_type, the requested type [{url_task.value}] does not match the model "
                          f"type [{ep.task_type.value}]")
    return ep


def _timeout(request: web.Request, body_timeout: str | None, default: str) -> tuple[float, str]:
    text = request.query.get("timeout") or body_timeout or default
    return parse_time(text), text


def _input_type(raw: str | None) -> InputType | None:
    if raw is None:
        return None
    try:
        return InputType(raw.lower())
    except ValueError:
        raise RequestValidationError(f"Unrecognized input_type [{raw}]") from None


def _inputs(body: es_wire.InferenceBody) -> list[str]:
    return [body.input] if isinstance(body.input, str) else list(body.input or [])


def _chat_from_inputs(inputs: list[str], task_settings: dict[str, Any], stream: bool) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text) for text in inputs],
                       task_settings=task_settings, stream=stream)


def _chat_from_body(body: es_wire.ChatBody, stream: bool) -> ChatRequest:
    if body.messages is None:
        raise RequestValidationError("Field [messages] cannot be null")
    if not body.messages:
        raise RequestValidationError("Field [messages] cannot be an empty array")
    messages = []
    for m in body.messages:
        calls = None
        if m.tool_calls:
            calls = [ToolCall(id=c.id, type=c.type, function=FunctionCall(name=c.function.name,
                                                                          arguments=c.function.arguments))
                     for c in m.tool_calls]
        messages.append(ChatMessage(role=m.role, content=m.content, tool_call_id=m.tool_call_id, tool_calls=calls))
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    return ChatRequest(messages=messages, model=body.model, max_tokens=body.max_completion_tokens,
                       temperature=body.temperature, top_p=body.top_p, stop=stop, tools=body.tools,
                       tool_choice=body.tool_choice, stream=stream)


def _model_name(ep: Endpoint, req: ChatRequest) -> str:
    return req.model or ep.service_settings.get("model_id") or ep.service_settings.get("model") or ep.inference_id


async def perform(request: web.Request, inference_id: str, url_task: TaskType | None) -> web.StreamResponse:
    check_params(request, _PERFORM_PARAMS)
    ep = _endpoint(request, inference_id, url_task)
    raw = await read_body(request)
    backend = pipeline.backend_for(request, ep)
    task = ep.task_type
    if task == TaskType.CHAT_COMPLETION:
        request[appkeys.ERROR_FORMAT] = "chat"
        chat_body = es_wire.decode_chat(raw)
        req = _chat_from_body(chat_body, stream=False)
        seconds, text = _timeout(request, chat_body.timeout, pipeline.DEFAULT_GENERATION_TIMEOUT_TEXT)
        result = await backend.chat(req, pipeline.context(ep, seconds, text))
        pipeline.count_usage(request, result.usage)
        return web.Response(body=openai_wire.render_chat_completion(result, _model_name(ep, req)),
                            content_type="application/json")
    body = es_wire.decode_inference(raw)
    es_wire.require_valid(es_wire.validate_inference(body, task, explicit_task=url_task is not None))
    overrides = validate_task_settings_override(ep.spec, task, body.task_settings) if body.task_settings else {}
    input_type = _input_type(body.input_type)
    if input_type is None and overrides.get("input_type"):
        input_type = _input_type(overrides["input_type"])
    inputs = _inputs(body)
    pipeline.check_input_limits(request, inputs)
    if task == TaskType.COMPLETION:
        seconds, text = _timeout(request, body.timeout, pipeline.DEFAULT_GENERATION_TIMEOUT_TEXT)
        result = await backend.chat(_chat_from_inputs(inputs, overrides, False), pipeline.context(ep, seconds, text))
        pipeline.count_usage(request, result.usage)
        return _json(es_wire.render_completion(result))
    seconds, text = _timeout(request, body.timeout, pipeline.DEFAULT_TIMEOUT_TEXT)
    ctx = pipeline.context(ep, seconds, text)
    if task == TaskType.RERANK:
        rreq = pipeline.rerank_options(ep, RerankRequest(query=body.query or "", documents=inputs, top_n=body.top_n,
                                                        return_documents=body.return_documents,
                                                        task_settings=overrides))
        result = await backend.rerank(rreq, ctx)
        return _json(es_wire.render_rerank(pipeline.finish_rerank(rreq, result)))
    embed = EmbedRequest(inputs=inputs, input_type=input_type, task_settings=overrides)
    if task == TaskType.SPARSE_EMBEDDING:
        return _json(es_wire.render_sparse(await backend.sparse_embed(embed, ctx)))
    return _json(es_wire.render_embeddings(await backend.embed(embed, ctx), task))


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


class _CompletionRenderer:
    def frame(self, delta: ChatDelta) -> bytes | None:
        return es_wire.completion_delta_frame(delta)

    def done(self) -> bytes:
        return es_wire.DONE_FRAME

    def error(self, err: GatewayError) -> bytes:
        return es_wire.error_frame(es_wire.error_body(err))


class _ChatRenderer:
    def __init__(self, stream_id: str, model: str) -> None:
        self.stream_id = stream_id
        self.model = model

    def frame(self, delta: ChatDelta) -> bytes | None:
        return es_wire.chat_chunk_frame(delta, self.stream_id, self.model)

    def done(self) -> bytes:
        return es_wire.DONE_FRAME

    def error(self, err: GatewayError) -> bytes:
        return es_wire.error_frame(es_wire.chat_error_body(err))


async def stream(request: web.Request, inference_id: str, url_task_text: str | None) -> web.StreamResponse:
    """`_stream` routes (§4): the chat schema for chat_completion, the inference schema otherwise."""
    request[appkeys.SSE] = True
    url_task = None
    if url_task_text is not None:
        url_task = TaskType.parse(url_task_text)
        if url_task is None:
            raise StatusError(f"Unknown task_type [{url_task_text}]")
    if url_task == TaskType.CHAT_COMPLETION:
        request[appkeys.ERROR_FORMAT] = "chat"
    check_params(request, _PERFORM_PARAMS)
    ep = _endpoint(request, inference_id, url_task)
    task = ep.task_type
    if task == TaskType.CHAT_COMPLETION:
        request[appkeys.ERROR_FORMAT] = "chat"
    pipeline.check_streamable(ep, task)
    raw = await read_body(request)
    if task == TaskType.CHAT_COMPLETION:
        chat_body = es_wire.decode_chat(raw)
        req = _chat_from_body(chat_body, stream=True)
        seconds, text = _timeout(request, chat_body.timeout, pipeline.DEFAULT_GENERATION_TIMEOUT_TEXT)
        renderer: Any = _ChatRenderer(f"chatcmpl-{uuid.uuid4().hex}", _model_name(ep, req))
    else:
        body = es_wire.decode_inference(raw)
        es_wire.require_valid(es_wire.validate_inference(body, task, explicit_task=url_task is not None))
        overrides = validate_task_settings_override(ep.spec, task, body.task_settings) if body.task_settings else {}
        req = _chat_from_inputs(_inputs(body), overrides, True)
        seconds, text = _timeout(request, body.timeout, pipeline.DEFAULT_GENERATION_TIMEOUT_TEXT)
        renderer = _CompletionRenderer()
    backend = pipeline.backend_for(request, ep)
    return await pump(request, backend.stream(req, pipeline.context(ep, seconds, text)), renderer)
