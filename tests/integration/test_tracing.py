"""Issue 20.6: OpenTelemetry traces, checked with the OpenTelemetry SDK's own in-memory exporter.

A SERVER span per request continuing the client's W3C trace, a CLIENT child span per upstream
attempt with the GenAI semantic-convention attributes, the attempt's `traceparent` sent upstream,
and no prompt or completion text in any span.
"""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed (pip install -e '.[otel]')")

from openai import AsyncOpenAI  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from proxy import settings as settings_mod  # noqa: E402
from proxy.server import create_app  # noqa: E402
from tests.conftest import make_settings  # noqa: E402

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = "00f067aa0ba902b7"
PROMPT = "the secret prompt about zebras"


@pytest.fixture
def spans():
    return InMemorySpanExporter()


@pytest.fixture
async def traced(aiohttp_server, tmp_path, spans):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return await aiohttp_server(create_app(make_settings(tmp_path), tracer_provider=provider))


async def _put(http, base, task, ep, upstream, path):
    body = {"service": "openai", "service_settings": {"api_key": upstream.api_key, "model_id": "gpt-4o-mini",
                                                      "url": f"{upstream.url}{path}"}}
    async with http.put(f"{base}/_inference/{task}/{ep}", json=body) as resp:
        assert resp.status == 200, await resp.text()


def _by_kind(spans, kind):
    return [s for s in spans.get_finished_spans() if s.kind == kind]


async def test_a_chat_request_is_a_server_span_with_one_genai_client_span_per_attempt(traced, spans, upstream):
    import aiohttp

    base = str(traced.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        await _put(http, base, "chat_completion", "chat", upstream, "/v1/chat/completions")
        spans.clear()
        upstream.fail_next(500, "try again")  # one failed attempt, then a good one
        traceparent = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"
        async with http.post(f"{base}/v1/chat/completions", headers={"traceparent": traceparent},
                             json={"model": "chat", "messages": [{"role": "user", "content": PROMPT}]}) as resp:
            assert resp.status == 200, await resp.text()

    (server,) = _by_kind(spans, SpanKind.SERVER)
    assert format(server.context.trace_id, "032x") == CLIENT_TRACE  # the client's trace goes on
    assert format(server.parent.span_id, "016x") == CLIENT_PARENT
    assert server.attributes["gen_ai.operation.name"] == "chat"
    assert server.attributes["gen_ai.provider.name"] == "openai"
    assert server.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert server.attributes["gen_ai.usage.input_tokens"] == 3
    assert server.attributes["gen_ai.usage.output_tokens"] == 1
    assert server.attributes["http.response.status_code"] == 200

    attempts = _by_kind(spans, SpanKind.CLIENT)
    assert len(attempts) == 2
    for attempt in attempts:
        assert attempt.parent.span_id == server.context.span_id
        assert attempt.name == "chat gpt-4o-mini"
        assert attempt.attributes["server.address"] == "127.0.0.1"
        assert attempt.attributes["gen_ai.provider.name"] == "openai"
    failed, ok = sorted(attempts, key=lambda s: s.start_time)
    assert failed.attributes["error.type"] == "500" and "error.type" not in ok.attributes

    # each attempt sent its own traceparent upstream, in the client's trace
    sent = [h["traceparent"] for h in upstream.headers_seen[-2:]]
    assert sent == [f"00-{CLIENT_TRACE}-{format(s.context.span_id, '016x')}-01" for s in (failed, ok)]

    for span in spans.get_finished_spans():
        assert not any("zebras" in str(v) or "ZEBRAS" in str(v) for v in span.attributes.values())


async def test_a_stream_keeps_its_attempt_span_open_until_the_last_event(traced, spans, upstream):
    base = str(traced.make_url("")).rstrip("/")
    import aiohttp

    async with aiohttp.ClientSession() as http:
        await _put(http, base, "chat_completion", "chat", upstream, "/v1/chat/completions")
    spans.clear()
    client = AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(model="chat", stream=True,
                                                  stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": PROMPT}])
    chunks = [c async for c in stream]
    await client.close()
    assert chunks[-1].usage.completion_tokens == 5
    (server,) = _by_kind(spans, SpanKind.SERVER)
    (attempt,) = _by_kind(spans, SpanKind.CLIENT)
    assert attempt.parent.span_id == server.context.span_id
    assert server.attributes["gen_ai.usage.output_tokens"] == 5
    assert attempt.start_time >= server.start_time and attempt.end_time <= server.end_time
    # the attempt lasted as long as the body: it ended after the upstream's last event was read
    assert attempt.end_time > attempt.start_time


async def test_an_unreachable_upstream_is_an_error_type_on_the_attempt(traced, spans):
    import aiohttp
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = str(traced.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        body = {"service": "openai", "service_settings": {"api_key": "k", "model_id": "text-embedding-3-small",
                                                          "url": f"http://127.0.0.1:{port}/v1/embeddings"}}
        async with http.put(f"{base}/_inference/text_embedding/emb", json=body) as resp:
            assert resp.status == 200
        spans.clear()
        async with http.post(f"{base}/_inference/text_embedding/emb?timeout=1s", json={"input": "x"}) as resp:
            assert resp.status >= 400
    (server,) = _by_kind(spans, SpanKind.SERVER)
    assert server.attributes["gen_ai.operation.name"] == "embeddings"
    assert server.attributes["error.type"] == str(server.attributes["http.response.status_code"])
    attempts = _by_kind(spans, SpanKind.CLIENT)
    assert attempts and all(a.attributes["error.type"] == "UpstreamUnreachable" for a in attempts)


def test_tracing_is_off_unless_the_otel_environment_asks_for_it():
    load = settings_mod.load
    assert load({}, env={}).otel_traces_exporter is None
    assert load({}, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}).otel_traces_exporter == "otlp"
    assert load({}, env={"OTEL_TRACES_EXPORTER": "console"}).otel_traces_exporter == "console"
    assert load({}, env={"OTEL_TRACES_EXPORTER": "none",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}).otel_traces_exporter is None
    assert load({}, env={"OTEL_SDK_DISABLED": "true",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}).otel_traces_exporter is None
    with pytest.raises(ValueError, match="only otlp and console"):
        load({}, env={"OTEL_TRACES_EXPORTER": "zipkin"})


async def test_without_tracing_no_traceparent_is_invented(aiohttp_server, tmp_path, upstream):
    import aiohttp

    gw = await aiohttp_server(create_app(make_settings(tmp_path)))
    base = str(gw.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        await _put(http, base, "text_embedding", "emb", upstream, "/v1/embeddings")
        async with http.post(f"{base}/_inference/text_embedding/emb", json={"input": "x"}) as resp:
            assert resp.status == 200
    assert "traceparent" not in upstream.headers_seen[-1]
