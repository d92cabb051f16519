"""The Azure AI Studio adapter's pure functions: URL and auth rules, bodies, responses, the token stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters import adapter_class
from adapters.azureaistudio import AzureAIStudioAdapter
from adapters.base import StreamCut
from proxy.errors import GatewayError, RequestValidationError, StatusError, UpstreamError, ValidationError
from proxy.sse import SSEDecoder
from proxy.types import ChatMessage, ChatRequest, EmbedRequest, InputType, RerankRequest, TaskType
from tests.tasks import request_for

T = TaskType
TARGET = "https://my-ep.eastus2.models.ai.azure.com"
OPENAI_TARGET = "https://res.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-02-01"
REALTIME_TARGET = "https://my-ml.eastus2.inference.ml.azure.com/score"


@dataclass
class Endpoint:
    task_type: TaskType
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=lambda: {"api_key": "az-key"})
    inference_id: str = "ep"
    service: str = "azureaistudio"


def adapter(task=T.COMPLETION, provider="meta", endpoint_type="token", target=TARGET, task_settings=None,
            **extra) -> AzureAIStudioAdapter:
    settings = {"target": target, "provider": provider, "endpoint_type": endpoint_type, **extra}
    return AzureAIStudioAdapter(Endpoint(task, settings, task_settings or {}))


def chat(*texts: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=t) for t in texts], **kw)


def body(up) -> dict:
    return json.loads(up.body)


def test_registered_under_its_service_name():
    assert adapter_class("azureaistudio") is AzureAIStudioAdapter


# ------------------------------------------------------------------------------ URL and auth


@pytest.mark.parametrize("task, provider, endpoint_type, target, url, headers", [
    (T.TEXT_EMBEDDING, "cohere", "token", TARGET + "/", TARGET + "/embeddings?api-version=2024-05-01-preview",
     {"Authorization": "Bearer az-key", "api-key": "az-key"}),
    (T.TEXT_EMBEDDING, "openai", "token", OPENAI_TARGET, OPENAI_TARGET, {"api-key": "az-key"}),
    (T.COMPLETION, "meta", "token", TARGET, TARGET + "/chat/completions?api-version=2024-05-01-preview",
     {"Authorization": "Bearer az-key", "api-key": "az-key"}),
    (T.COMPLETION, "openai", "token", OPENAI_TARGET, OPENAI_TARGET, {"api-key": "az-key"}),
    (T.COMPLETION, "mistral", "realtime", REALTIME_TARGET, REALTIME_TARGET, {"Authorization": "Bearer az-key"}),
    (T.RERANK, "cohere", "token", TARGET, TARGET + "/v1/rerank", {"Authorization": "Bearer az-key"}),
])
def test_url_and_auth_rules(task, provider, endpoint_type, target, url, headers):
    ad = adapter(task, provider, endpoint_type, target)
    req = {T.TEXT_EMBEDDING: EmbedRequest(inputs=["a"]), T.COMPLETION: chat("hi"),
           T.RERANK: RerankRequest(query="q", documents=["a"])}[task]
    up = request_for(ad, req)
    assert up.url == url
    assert up.explicit_url  # the target is the endpoint's own URL: origin overrides never apply
    assert {k: v for k, v in up.headers.items() if k != "Content-Type"} == headers


@pytest.mark.parametrize("task, provider, endpoint_type, message", [
    (T.TEXT_EMBEDDING, "meta", "token", "The [text_embedding] task type for provider [meta] is not available"),
    (T.RERANK, "openai", "token", "The [rerank] task type for provider [openai] is not available"),
    (T.TEXT_EMBEDDING, "cohere", "realtime",
     "The [realtime] endpoint type with [text_embedding] task type for provider [cohere] is not available"),
    (T.COMPLETION, "mistral", "token",
     "The [token] endpoint type with [completion] task type for provider [mistral] is not available"),
])
def test_provider_capabilities_follow_es(task, provider, endpoint_type, message):
    req = EmbedRequest(inputs=["a"]) if task == T.TEXT_EMBEDDING else (
        RerankRequest(query="q", documents=["a"]) if task == T.RERANK else chat("x"))
    with pytest.raises(StatusError) as exc:
        request_for(adapter(task, provider, endpoint_type), req)
    assert exc.value.reason == message and exc.value.status == 400


# ------------------------------------------------------------------------------ embeddings


def test_embeddings_body():
    ad = adapter(T.TEXT_EMBEDDING, "cohere", dimensions=512)
    assert body(ad.embed_request(EmbedRequest(inputs=["a", "b"]))) == {"input": ["a", "b"], "dimensions": 512}
    sent = body(ad.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.SEARCH)))
    assert sent == {"input": ["a"], "dimensions": 512, "input_type": "query"}
    with pytest.raises(ValidationError, match=r"Input type \[clustering\] is not supported for \[Azure AI Studio\]"):
        ad.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.CLUSTERING))


def test_model_inference_embeddings_refuse_user():
    # the Model Inference embeddings request has no `user`; Azure OpenAI deployments (provider openai) do
    ad = adapter(T.TEXT_EMBEDDING, "cohere", task_settings={"user": "stored-user"})
    with pytest.raises(GatewayError, match=r"\[user\]"):
        ad.embed_request(EmbedRequest(inputs=["a"]))
    ad = adapter(T.TEXT_EMBEDDING, "openai", target=OPENAI_TARGET, task_settings={"user": "stored-user"})
    assert body(ad.embed_request(EmbedRequest(inputs=["a"])))["user"] == "stored-user"


def test_embeddings_response_is_openai_shaped():
    raw = (b'{"object":"list","data":[{"object":"embedding","index":1,"embedding":[0.2]},'
           b'{"object":"embedding","index":0,"embedding":[0.1]}],"model":"embed-v-4-0",'
           b'"usage":{"prompt_tokens":2,"total_tokens":2}}')
    result = adapter(T.TEXT_EMBEDDING, "cohere").parse_embed(EmbedRequest(inputs=["a", "b"]), raw)
    assert [json.loads(bytes(v)) for v in result.vectors] == [[0.1], [0.2]] and result.usage.total_tokens == 2


# ------------------------------------------------------------------------------ completion


def test_token_completion_body_sends_sampling_at_the_top_level():
    ad = adapter(task_settings={"temperature": 0.5})
    assert body(ad.chat_request(chat("a", "b"))) == {
        "messages": [{"content": "a", "role": "user"}, {"content": "b", "role": "user"}],
        "max_tokens": 64, "temperature": 0.5}
    # canonical fields (the /v1 surface) win over request task settings, which win over stored ones
    sent = body(ad.chat_request(chat("a", temperature=0.1, max_tokens=10, stream=True,
                                      task_settings={"top_p": 0.9, "temperature": 0.7})))
    assert sent["max_tokens"] == 10 and sent["temperature"] == 0.1 and sent["top_p"] == 0.9
    assert sent["stream"] is True and "stream_options" not in sent and "parameters" not in sent
    with pytest.raises(GatewayError, match=r"\[do_sample\]"):  # no such field in the token APIs
        adapter(task_settings={"do_sample": 1.0}).chat_request(chat("a"))


def test_realtime_completion_body_and_response():
    ad = adapter(provider="databricks", endpoint_type="realtime", target=REALTIME_TARGET,
                 task_settings={"max_new_tokens": 20})
    assert body(ad.chat_request(chat("hello"))) == {"input_data": {
        "input_string": [{"content": "hello", "role": "user"}], "parameters": {"max_new_tokens": 20}}}
    result = ad.parse_chat(chat("hello"), b'{"output": "HELLO"}')
    assert result.content == "HELLO"
    with pytest.raises(UpstreamError) as exc:
        ad.parse_chat(chat("hello"), b'{"result": "x"}')
    assert exc.value.status == 502
    with pytest.raises(StatusError, match="Streaming is not supported for \\[realtime\\] endpoints"):
        ad.chat_request(chat("hello", stream=True))


def test_token_completion_response():
    raw = (b'{"id":"cmpl-1","object":"chat.completion","created":1,"model":"llama","choices":[{"index":0,'
           b'"finish_reason":"stop","message":{"role":"assistant","content":"HI"}}],'
           b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')
    result = adapter().parse_chat(chat("hi"), raw)
    assert result.content == "HI" and result.usage.total_tokens == 2


@pytest.mark.parametrize("kw, param", [({"stop": ["x"]}, "stop"), ({"seed": 3}, "seed"), ({"user": "u"}, "user"),
                                       ({"tools": [{"type": "function"}]}, "tools"),
                                       ({"response_format": {"type": "json_object"}}, "response_format")])
def test_parameters_without_an_upstream_field_are_rejected(kw, param):
    with pytest.raises(RequestValidationError, match=rf"\[{param}\]"):
        adapter().chat_request(chat("a", **kw))


def test_non_text_content_and_tool_messages_are_rejected():
    parts = ChatRequest(messages=[ChatMessage(role="user", content=[{"type": "image_url", "image_url": {}}])])
    with pytest.raises(RequestValidationError, match="content parts"):
        adapter().chat_request(parts)
    tool = ChatRequest(messages=[ChatMessage(role="tool", content="x", tool_call_id="c1")])
    with pytest.raises(RequestValidationError, match="tool_calls"):
        adapter().chat_request(tool)


# ------------------------------------------------------------------------------ stream

STREAM = (
    'data: {"id":"cmpl-1","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,'
    '"delta":{"role":"assistant","content":""}}]}\n\n'
    'data: {"id":"cmpl-1","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,'
    '"delta":{"content":"Héllo "}}]}\n\n'
    ': keep-alive\n\n'
    'data: {"id":"cmpl-1","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,'
    '"delta":{"content":"wörld 🌍"}}]}\r\n\r\n'
    'data: {"id":"cmpl-1","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,'
    '"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}\n\n'
    'data: [DONE]\n\n'
).encode()


def replay(raw: bytes, cut: int | None = None) -> list:
    parser = adapter().stream_parser(chat("x", stream=True))
    decoder = SSEDecoder()
    deltas = []
    pieces = [raw] if cut is None else [raw[:cut], raw[cut:]]
    for piece in pieces:
        for frame in decoder.feed(piece):
            deltas.extend(parser.feed(frame))
    for frame in decoder.close():
        deltas.extend(parser.feed(frame))
    deltas.extend(parser.finish())
    return deltas


def test_stream_replayed_split_at_every_byte_gives_identical_deltas():
    whole = replay(STREAM)
    assert "".join(d.content or "" for d in whole) == "Héllo wörld 🌍"
    usage = [d.usage for d in whole if d.usage is not None]
    assert len(usage) == 1 and usage[0].total_tokens == 8  # reported once
    assert [d.finish_reason for d in whole if d.finish_reason] == ["stop"]
    for cut in range(1, len(STREAM)):
        assert replay(STREAM, cut) == whole, cut


def test_stream_without_done_is_cut_and_in_stream_errors_raise():
    truncated = STREAM[:STREAM.index(b"data: [DONE]")]
    with pytest.raises(StreamCut):
        replay(truncated)
    with pytest.raises(UpstreamError, match="content filter"):
        replay(b'data: {"error":{"code":"content_filter","message":"content filter triggered"}}\n\n')


# ------------------------------------------------------------------------------ rerank


def test_rerank_body_and_response():
    ad = adapter(T.RERANK, "cohere", task_settings={"top_n": 2})
    assert body(ad.rerank_request(RerankRequest(query="q", documents=["a", "b", "c"], return_documents=True))) == {
        "query": "q", "documents": ["a", "b", "c"], "top_n": 2, "return_documents": True}
    raw = (b'{"id":"ff2feb42","results":[{"document":{"text":"Carson City"},"index":0,"relevance_score":0.1728413},'
           b'{"document":{"text":"Mariana"},"index":1,"relevance_score":0.031005697}],'
           b'"meta":{"api_version":{"version":"1"},"billed_units":{"search_units":1}}}')
    result = ad.parse_rerank(RerankRequest(query="q", documents=["a", "b"]), raw)
    assert [(d.index, d.text) for d in result.ranked] == [(0, "Carson City"), (1, "Mariana")]


def test_error_body():
    err = adapter().parse_error(429, {}, b'{"error":{"code":"429","message":"Rate limit is exceeded."}}')
    assert err.message == "Rate limit is exceeded." and err.code == "429"
