"""Surface-independent steps of performing inference, shared by `/_inference` and `/v1`."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from . import appkeys
from .contract import Backend, CallContext
from .endpoint import Endpoint
from .errors import GatewayError, StatusError
from .types import RankedDoc, RerankRequest, RerankResult, TaskType, Usage

DEFAULT_TIMEOUT_TEXT = "30s"
DEFAULT_GENERATION_TIMEOUT_TEXT = "120s"  # SPEC default for completion routes


def context(ep: Endpoint, timeout_s: float, timeout_text: str) -> CallContext:
    return CallContext(inference_id=ep.inference_id, deadline=time.monotonic() + timeout_s, timeout_text=timeout_text)


def backend_for(request: web.Request, ep: Endpoint) -> Backend:
    request[appkeys.ENDPOINT] = ep
    return request.app[appkeys.BACKENDS].get(ep)


def _secret_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) >= 4 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secret_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _secret_strings(v)]
    return []


def scrub(request: web.Request, err: GatewayError) -> GatewayError:
    """Last line of defence: no secret of the endpoint being served appears in an error message,
    whatever an upstream echoed or an adapter put in it."""
    ep = request.get(appkeys.ENDPOINT)
    if ep is None:
        return err
    for secret in _secret_strings(ep.secrets):
        if secret in err.reason:
            err.reason = err.reason.replace(secret, "[redacted]")
            err.args = (err.reason,)
    return err


def count_usage(request: web.Request, usage: Usage | None) -> None:
    ep = request.get(appkeys.ENDPOINT)
    if usage is None or ep is None:
        return
    tokens = request.app[appkeys.METRICS].tokens
    if usage.prompt_tokens:
        tokens.labels(ep.inference_id, "in").inc(usage.prompt_tokens)
    if usage.completion_tokens:
        tokens.labels(ep.inference_id, "out").inc(usage.completion_tokens)


def check_input_limits(request: web.Request, inputs: list[str]) -> None:
    settings = request.app[appkeys.SETTINGS]
    if len(inputs) > settings.max_inputs:
        raise StatusError(f"Too many inputs: [{len(inputs)}] is more than the limit of [{settings.max_inputs}] "
                          f"per request", status=413)
    longest = max((len(i) for i in inputs), default=0)
    if longest > settings.max_input_chars:
        raise StatusError(f"An input of [{longest}] characters is longer than the limit of "
                          f"[{settings.max_input_chars}]", status=413)


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
        ret = True  # the elasticsearch service returns documents by default (SPEC ElasticsearchTaskSettings)
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
