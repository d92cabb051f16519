"""The surface-independent steps of serving an inference request, shared by `/_inference` and `/v1`.

A route resolves the endpoint and `bind`s it (the endpoint being served, the error surface for its
task, whether it may stream), converts the body with its wire module, then hands the canonical
request to `Call.run` or `Call.stream`, which build the call context, call the backend, count the
usage of every task and answer in the surface's format. Secrets of the endpoint never leave in an
error (`scrub`, applied to every error the gateway writes).
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Awaitable, Callable

from aiohttp import web

from . import appkeys, region, surfaces, tracing
from .auth import check_endpoint
from .chat_params import first_tool_call, first_tool_call_deltas, one_tool_call
from .backends import adapter_class
from .contract import Backend, CallContext
from .endpoint import Endpoint
from .keys import MONITOR
from .errors import GatewayError, StatusError, redact
from .httputil import parse_time
from .streaming import pump
from .types import (CanonicalRequest, CanonicalResult, ChatRequest, EmbedPart, RankedDoc, RerankRequest,
                    RerankResult, TaskType, Usage)
from .wire import StreamRenderer

DEFAULT_TIMEOUT_TEXT = "30s"
DEFAULT_GENERATION_TIMEOUT_TEXT = "120s"  # ES `InferenceAction.Request.DEFAULT_TIMEOUT` for completion tasks


def context(ep: Endpoint, timeout_s: float, timeout_text: str) -> CallContext:
    return CallContext(inference_id=ep.inference_id, deadline=time.monotonic() + timeout_s, timeout_text=timeout_text)


def bind(request: web.Request, ep: Endpoint, *, stream: bool = False) -> "Call":
    """From here on the request serves `ep`: errors take the shape its task calls for and are scrubbed
    of its secrets. A key limited to other endpoints is refused here, on every surface."""
    check_endpoint(request, MONITOR, ep.inference_id, ep.task_type.value)
    request[appkeys.ENDPOINT] = ep
    tracing.bind(request, ep)
    enforce_region_policy(request, ep)
    surfaces.choose(request, surfaces.of(request).for_task(ep.task_type))
    if stream:
        check_streamable(ep, ep.task_type)
    return Call(request, ep)


class Call:
    """One bound request: the endpoint, its backend, the usage counter."""

    __slots__ = ("request", "endpoint")

    def __init__(self, request: web.Request, endpoint: Endpoint) -> None:
        self.request = request
        self.endpoint = endpoint

    def _context(self, req: CanonicalRequest, timeout: str | None) -> CallContext:
        text = timeout or (DEFAULT_GENERATION_TIMEOUT_TEXT if isinstance(req, ChatRequest) else DEFAULT_TIMEOUT_TEXT)
        return context(self.endpoint, parse_time(text), text)

    def _backend(self) -> Backend:
        return self.request.app[appkeys.BACKENDS].get(self.endpoint)

    async def run(self, req: CanonicalRequest, render: Callable[[Any], bytes],
                  timeout: str | None = None) -> web.Response:
        """Call the backend for the request's task and answer with `render(result)` as JSON."""
        ep = self.endpoint
        ctx = self._context(req, timeout)
        backend = self._backend()
        result: CanonicalResult
        if isinstance(req, ChatRequest):
            result = await backend.chat(req, ctx)
            if one_tool_call(req):
                result = first_tool_call(result)
        elif isinstance(req, RerankRequest):
            req = rerank_options(ep, req)
            result = finish_rerank(req, await backend.rerank(req, ctx))
        elif ep.task_type == TaskType.SPARSE_EMBEDDING:
            result = await backend.sparse_embed(req, ctx)
        else:
            result = await backend.embed(req, ctx)
        count_usage(self.request, result.usage)
        return web.Response(body=render(result), content_type="application/json")

    async def stream(self, req: ChatRequest, renderer: StreamRenderer, timeout: str | None = None,
                     finish: Callable[[], Awaitable[None]] | None = None,
                     relay: Any = None) -> web.StreamResponse:
        """Relay the backend's deltas through `renderer` (`proxy.streaming.pump`), counting usage as it passes.
        `finish` is awaited once the backend's stream has ended cleanly, before the renderer's last frame
        (the Responses API stores the response there, so it can be found as soon as the client has it).
        `relay` (`proxy.wire.openai_relay.ChatRelay`): the upstream's events are passed through it instead,
        when the endpoint's backend calls a provider that streams in the relay's format."""
        ctx = self._context(req, timeout)
        request = self.request
        backend = self._backend()
        deltas = None
        # remote backends only (not routers or local models), and not when the gateway itself must keep
        # the first tool call of the answer
        if relay is not None and hasattr(backend, "relay") and not one_tool_call(req):
            deltas = backend.relay(req, ctx, relay)
        if deltas is None:
            deltas = backend.stream(req, ctx)
            if one_tool_call(req):
                deltas = first_tool_call_deltas(deltas)
        return await pump(request, deltas if finish is None else _then(deltas, finish), renderer,
                          lambda usage: count_usage(request, usage), lambda err: scrub(request, err))


def enforce_region_policy(request: web.Request, ep: Endpoint) -> None:
    """Inference on an endpoint whose data location the region policy does not allow is refused (403)."""
    if not region.policy_allows(request.app[appkeys.REGISTRY], request.app[appkeys.SETTINGS].location, ep):
        raise region.denied_error(ep.inference_id)
async def _then(deltas: AsyncIterator[Any], finish: Callable[[], Awaitable[None]]) -> AsyncIterator[Any]:
    try:
        async for item in deltas:
            yield item
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
    await finish()


def scrub(request: web.Request, err: GatewayError) -> GatewayError:
    """Last line of defence: no secret of the endpoint being served appears in an error message,
    plainly or encoded, whatever an upstream echoed or an adapter put in it."""
    ep = request.get(appkeys.ENDPOINT)
    return err if ep is None else redact(err, ep.secrets)


def count_usage(request: web.Request, usage: Usage | None) -> None:
    ep = request.get(appkeys.ENDPOINT)
    if usage is None or ep is None:
        return
    tracing.record_usage(request, usage)
    used = request.get(appkeys.TOKENS)
    if used is None:
        used = request[appkeys.TOKENS] = [0, 0]
    used[0] += usage.prompt_tokens or 0
    used[1] += usage.completion_tokens or 0
    metrics = request.app[appkeys.METRICS]
    if usage.prompt_tokens:
        metrics.count_tokens(ep.inference_id, "in", usage.prompt_tokens)
    if usage.completion_tokens:
        metrics.count_tokens(ep.inference_id, "out", usage.completion_tokens)


def check_embedding_content(ep: Endpoint, parsed: list[list[EmbedPart]]) -> None:
    """Images, or several items in one embedding, go only to models that take them (`Adapter.embeds_images`)."""
    cls = None if ep.spec.local else adapter_class(ep.service)
    if cls is not None and cls.handles_embedding_task and cls.embeds_images(
            {**ep.service_settings, **ep.task_settings}):
        return
    model = ep.service_settings.get("model_id") or ep.service_settings.get("model") or ep.inference_id
    if any(p.type != "text" for g in parsed for p in g):
        raise StatusError(f"Inference endpoint [{ep.inference_id}] cannot embed images: the [{ep.service}] service "
                          f"model [{model}] takes text only")
    raise StatusError(f"Inference endpoint [{ep.inference_id}] cannot embed several items as one embedding: the "
                      f"[{ep.service}] service model [{model}] takes one text per embedding")


def check_streamable(ep: Endpoint, task: TaskType) -> None:
    """ES `BaseTransportInferenceAction.unsupportedStreamingTaskException` (405)."""
    supported = ep.spec.stream_tasks()
    if task in supported:
        return
    if not supported:
        raise StatusError(f"Streaming is not allowed for service [{ep.service}].", status=405)
    listed = ", ".join(sorted(t.value for t in supported))
    raise StatusError(f"Streaming is not allowed for service [{ep.service}] and task [{task.value}]. "
                      f"Supported tasks: [{listed}]", status=405)


def rerank_options(ep: Endpoint, req: RerankRequest) -> RerankRequest:
    """top_n / return_documents: the request's own, then its task_settings, then the endpoint's."""
    def pick(name: str, given: Any) -> Any:
        if given is not None:
            return given
        if req.task_settings.get(name) is not None:
            return req.task_settings[name]
        return ep.task_settings.get(name)

    top_n = pick("top_n", req.top_n)
    ret = pick("return_documents", req.return_documents)
    if ret is None and ep.spec.local:
        ret = True  # ES `CustomElandRerankTaskSettings`: return_documents defaults to true
    return RerankRequest(query=req.query, documents=req.documents, top_n=top_n, return_documents=ret,
                         task_settings=req.task_settings)


def finish_rerank(req: RerankRequest, result: RerankResult) -> RerankResult:
    """Sort by descending score, cut to top_n, and attach or drop document text."""
    ranked = sorted(result.ranked, key=lambda d: -d.relevance_score)
    if req.top_n is not None:
        ranked = ranked[:req.top_n]
    out = []
    for d in ranked:
        text = None
        if req.return_documents:
            text = d.text if d.text is not None else (req.documents[d.index] if 0 <= d.index < len(req.documents)
                                                      else None)
        out.append(RankedDoc(index=d.index, relevance_score=d.relevance_score, text=text))
    return RerankResult(ranked=out, usage=result.usage)
