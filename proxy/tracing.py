"""OpenTelemetry traces: off unless the standard `OTEL_*` variables ask for them (see settings.py).

One SERVER span per request, and one CLIENT span per upstream attempt as its child, named and
attributed after the OpenTelemetry GenAI semantic conventions
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/): `gen_ai.operation.name`,
`gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.usage.input_tokens` / `output_tokens`,
`server.address`, `error.type`. A W3C `traceparent` from the client continues its trace, and each
upstream attempt sends its own on (https://www.w3.org/TR/trace-context/). No prompt or completion
text is ever recorded.

The opentelemetry packages are imported only when tracing is on; with it off, every hook here is
one `is None` test.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlsplit

from aiohttp import web

from .catalogue import otel_provider_name
from .types import TaskType, Usage

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

    from .registry import Endpoint
    from .settings import Settings

# gen_ai.operation.name well-known values; rerank has none, so it is named as such
_OPERATIONS = {TaskType.TEXT_EMBEDDING: "embeddings", TaskType.SPARSE_EMBEDDING: "embeddings",
               TaskType.EMBEDDING: "embeddings", TaskType.COMPLETION: "text_completion",
               TaskType.CHAT_COMPLETION: "chat", TaskType.RERANK: "rerank"}

SPAN: web.RequestKey[Any] = web.RequestKey("otel_span", object)
# what the upstream attempts of the current request are for: set when its endpoint is bound
_CALL: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("gen_ai_call", default=None)


def endpoint_model(ep: "Endpoint") -> str | None:
    settings = ep.service_settings
    return settings.get("model_id") or settings.get("model") or settings.get("deployment_id")


class Tracing:
    def __init__(self, provider: "TracerProvider", owned: bool = False) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self.provider = provider
        self._owned = owned  # made here from the environment, so flushed and shut down here
        self.tracer = provider.get_tracer("inference-proxy")
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Tracing | None":
        if settings.otel_traces_exporter is None:
            return None
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        # the SDK reads its own OTEL_* variables (endpoint, headers, service name, sampler, batch sizes)
        provider = TracerProvider(resource=Resource.create({"service.name": "inference-proxy"}))
        if settings.otel_traces_exporter == "console":
            exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, owned=True)

    def shutdown(self) -> None:
        if self._owned:
            self.provider.shutdown()

    @contextmanager
    def request_span(self, request: web.Request) -> Iterator["Span"]:
        parent = self._propagator.extract(request.headers)
        with self.tracer.start_as_current_span(f"{request.method} {request.path}", context=parent,
                                               kind=self._trace.SpanKind.SERVER,
                                               record_exception=False, set_status_on_exception=False) as span:
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("url.path", request.path)
            request[SPAN] = span
            token = _CALL.set(None)
            try:
                yield span
            finally:
                _CALL.reset(token)

    @contextmanager
    def attempt_span(self, service: str, url: str, headers: dict[str, str]) -> Iterator["Span"]:
        """A CLIENT span around one upstream attempt; injects its traceparent into `headers`."""
        call = _CALL.get() or {"gen_ai.provider.name": otel_provider_name(service)}
        name = " ".join(str(v) for v in (call.get("gen_ai.operation.name"), call.get("gen_ai.request.model")) if v)
        with self.tracer.start_as_current_span(name or f"upstream {service}", kind=self._trace.SpanKind.CLIENT,
                                               record_exception=False, set_status_on_exception=False) as span:
            span.set_attributes(call)
            parts = urlsplit(url)
            if parts.hostname:
                span.set_attribute("server.address", parts.hostname)
            if parts.port:
                span.set_attribute("server.port", parts.port)
            self._propagator.inject(headers)
            yield span


def bind(request: web.Request, ep: "Endpoint") -> None:
    """The endpoint a request is served by: the GenAI attributes of its spans."""
    span = request.get(SPAN)
    if span is None:
        return
    call = {"gen_ai.operation.name": _OPERATIONS.get(ep.task_type, ep.task_type.value),
            "gen_ai.provider.name": otel_provider_name(ep.service)}
    model = endpoint_model(ep)
    if model:
        call["gen_ai.request.model"] = str(model)
    span.set_attributes(call)
    span.set_attribute("inference.endpoint", ep.inference_id)
    _CALL.set(call)


def record_usage(request: web.Request, usage: Usage) -> None:
    span = request.get(SPAN)
    if span is None:
        return
    if usage.prompt_tokens:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
    if usage.completion_tokens:
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)


def record_outcome(span: "Span", status: int, error: BaseException | None = None) -> None:
    """`error.type`: the exception's class, or the status code of a failed answer (the HTTP conventions)."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("http.response.status_code", status)
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(Status(StatusCode.ERROR))
    elif status >= 400:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
