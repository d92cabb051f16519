"""The watsonx.ai adapter's pure functions on recorded request, response and stream bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from adapters import adapter_class
from adapters.base import StreamCut
from adapters.watsonxai import IamTokenCache, WatsonxAIAdapter, WatsonxStreamParser, key_id, watsonx_error
from proxy.errors import RequestValidationError, UpstreamError, ValidationError
from proxy.sse import SSEDecoder
from proxy.types import (ChatMessage, ChatRequest, EmbedRequest, InputType, RerankRequest, TaskType, Usage)

PROJECT = "63dc4cf1-252f-424b-b52d-5cdd9814987f"


@dataclass
class Endpoint:
    task_type: TaskType
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=lambda: {"api_key": "ibm-key"})
    inference_id: str = "ep"
    service: str = "watsonxai"


def adapter(task=TaskType.TEXT_EMBEDDING, task_settings=None, url="us-south.ml.cloud.ibm.com", **settings):
    base = {"model_id": "ibm/granite", "project_id": PROJECT, "url": url, "api_version": "2024-05-02"}
    return WatsonxAIAdapter(Endpoint(task, {**base, **settings}, task_settings or {}))


def body(up) -> dict:
    return json.loads(up.body)


def test_registered_under_its_service_name():
    assert adapter_class("watsonxai") is WatsonxAIAdapter


def test_urls_from_a_host_or_a_full_url():
    up = adapter().embed_request(EmbedRequest(inputs=["a"]))
    assert up.url == "https://us-south.ml.cloud.ibm.com/ml/v1/text/embeddings?version=2024-05-02"
    assert up.explicit_url is True and "Authorization" not in up.headers  # the token is added by authorize
    up = adapter(TaskType.RERANK, url="https://eu-de.ml.cloud.ibm.com/").rerank_request(
        RerankRequest(query="q", documents=["d"]))
    assert up.url == "https://eu-de.ml.cloud.ibm.com/ml/v1/text/rerank?version=2024-05-02"
    chat = ChatRequest(messages=[ChatMessage(role="user", content="hi")])
    assert adapter(TaskType.COMPLETION).chat_request(chat).url.endswith("/ml/v1/text/chat?version=2024-05-02")
    streamed = msgspec.structs.replace(chat, stream=True)
    up = adapter(TaskType.CHAT_COMPLETION).chat_request(streamed)
    assert up.url.endswith("/ml/v1/text/chat_stream?version=2024-05-02")
    assert up.headers["Accept"] == "text/event-stream" and "stream" not in body(up)


def test_embedding_body_and_rejections():
    assert body(adapter().embed_request(EmbedRequest(inputs=["a", "b"]))) == {
        "inputs": ["a", "b"], "model_id": "ibm/granite", "project_id": PROJECT}
    with pytest.raises(ValidationError):
        adapter().embed_request(EmbedRequest(inputs=["a"], input_type=InputType.SEARCH))
    with pytest.raises(RequestValidationError):
        adapter().embed_request(EmbedRequest(inputs=["a"], dimensions=8))
    with pytest.raises(RequestValidationError):
        adapter().embed_request(EmbedRequest(inputs=["a"], user="u"))


def test_embedding_batches_of_1000():
    parts = adapter().split_embed(EmbedRequest(inputs=[str(i) for i in range(2500)]))
    assert [len(p.inputs) for p in parts] == [1000, 1000, 500]


def test_rerank_body_matches_es():
    ad = adapter(TaskType.RERANK, task_settings={"truncate_input_tokens": 512})
    sent = body(ad.rerank_request(RerankRequest(query="q", documents=["d0", "d1"], top_n=3, return_documents=True)))
    # ES IbmWatsonxRerankRequestEntity field order and nesting
    assert list(sent) == ["model_id", "query", "inputs", "project_id", "parameters"]
    assert sent["inputs"] == [{"text": "d0"}, {"text": "d1"}]
    assert sent["parameters"] == {"truncate_input_tokens": 512, "return_options": {"inputs": True, "top_n": 3}}
    # request-level task settings win
    sent = body(ad.rerank_request(RerankRequest(query="q", documents=["d"], task_settings={"truncate_input_tokens": 9})))
    assert sent["parameters"] == {"truncate_input_tokens": 9, "return_options": {}}


def test_chat_body():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    req = ChatRequest(messages=[ChatMessage(role="system", content="s"), ChatMessage(role="user", content="u")],
                      max_tokens=20, temperature=0.1, top_p=0.9, stop=["x"], seed=3, tools=tools,
                      tool_choice="required", response_format={"type": "json_object"}, model="meta-llama/llama-3")
    sent = body(adapter(TaskType.CHAT_COMPLETION).chat_request(req))
    assert sent == {"project_id": PROJECT, "model_id": "meta-llama/llama-3",
                    "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                    "max_tokens": 20, "temperature": 0.1, "top_p": 0.9, "stop": ["x"], "seed": 3, "tools": tools,
                    "response_format": {"type": "json_object"}, "tool_choice_option": "required"}
    named = {"type": "function", "function": {"name": "f"}}
    sent = body(adapter(TaskType.CHAT_COMPLETION).chat_request(msgspec.structs.replace(req, tool_choice=named)))
    assert sent["tool_choice"] == named and "tool_choice_option" not in sent
    with pytest.raises(RequestValidationError):
        adapter(TaskType.CHAT_COMPLETION).chat_request(msgspec.structs.replace(req, user="u"))


# recorded: IBM Java SDK tests and watsonx.ai API reference shapes
EMBED_RESPONSE = (b'{"model_id":"ibm/slate-30m-english-rtrvr","results":[{"embedding":[-0.006929283,-0.005336422]},'
                  b'{"embedding":[0.5,0.25]}],"created_at":"2024-02-21T17:32:28Z","input_token_count":10}')
RERANK_RESPONSE = (b'{"model_id":"cross-encoder/ms-marco-minilm-l-12-v2","results":[{"index":1,"score":0.786,'
                   b'"input":{"text":"doc one"}},{"index":0,"score":-2.9}],"created_at":"2024-02-21T17:32:28Z",'
                   b'"input_token_count":318}')
CHAT_RESPONSE = (b'{"id":"chat-c3b4","model_id":"ibm/granite-3-8b-instruct","model":"ibm/granite-3-8b-instruct",'
                 b'"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"chatcmpl-tool-9","type":'
                 b'"function","function":{"name":"sum","arguments":"{\\"a\\": 1}"}}]},"finish_reason":"tool_calls"}],'
                 b'"created":1749736055,"model_version":"3.3.0","created_at":"2025-06-12T13:47:35.541Z",'
                 b'"usage":{"completion_tokens":12,"prompt_tokens":50,"total_tokens":62}}')


def test_parse_embeddings_rerank_and_chat():
    emb = adapter().parse_embed(EmbedRequest(inputs=["a", "b"]), EMBED_RESPONSE)
    assert [json.loads(bytes(v)) for v in emb.vectors] == [[-0.006929283, -0.005336422], [0.5, 0.25]]
    assert emb.usage == Usage(prompt_tokens=10, total_tokens=10)
    rr = adapter(TaskType.RERANK).parse_rerank(RerankRequest(query="q", documents=["a", "b"]), RERANK_RESPONSE)
    assert [(d.index, d.relevance_score, d.text) for d in rr.ranked] == [(1, 0.786, "doc one"), (0, -2.9, None)]
    chat = adapter(TaskType.CHAT_COMPLETION).parse_chat(ChatRequest(messages=[]), CHAT_RESPONSE)
    assert chat.finish_reason == "tool_calls" and chat.tool_calls[0].function.arguments == '{"a": 1}'
    assert chat.usage == Usage(prompt_tokens=50, completion_tokens=12, total_tokens=62) and chat.created == 1749736055
    with pytest.raises(UpstreamError):
        adapter().parse_embed(EmbedRequest(inputs=["a"]), b'{"results": [')


def test_error_bodies():
    # recorded: IBM Java SDK WatsonxErrorTest
    err = watsonx_error(b'{"errors":[{"code":"authentication_token_not_valid","message":"Failed to authenticate the '
                        b'request due to invalid token: Failed to parse and verify token","more_info":'
                        b'"https://cloud.ibm.com/apidocs/watsonx-ai#text-chat"}],"trace":"23e1","status_code":401}')
    assert err.message == "Failed to authenticate the request due to invalid token: Failed to parse and verify token"
    assert err.code == "authentication_token_not_valid"
    assert watsonx_error(b'{"error":{"message":"es style"}}').message == "es style"


# recorded: IBM Java SDK ChatServiceTest (chat_streaming_tool_test), trimmed
STREAM = """id: 1
event: message
data: {"id":"chatcmpl-cc34","object":"chat.completion.chunk","model_id":"ibm/granite-3-3-8b-instruct","model":"ibm/granite-3-3-8b-instruct","choices":[{"index":0,"finish_reason":null,"delta":{"role":"assistant","content":""}}],"created":1749764735,"model_version":"3.3.0","created_at":"2025-06-12T21:45:35.150Z","system":{"warnings":[{"message":"The value of 'max_completion_tokens' for this model was set to value 1024","id":"unspecified_max_completion_tokens"}]}}

id: 2
event: message
data: {"id":"chatcmpl-cc34","object":"chat.completion.chunk","model_id":"ibm/granite-3-3-8b-instruct","model":"ibm/granite-3-3-8b-instruct","choices":[{"index":0,"finish_reason":null,"delta":{"content":"Sum: é☀"}}],"created":1749764735}

id: 3
event: message
data: {"id":"chatcmpl-cc34","object":"chat.completion.chunk","model_id":"ibm/granite-3-3-8b-instruct","model":"ibm/granite-3-3-8b-instruct","choices":[{"index":0,"finish_reason":null,"delta":{"tool_calls":[{"index":0,"id":"chatcmpl-tool-af37","type":"function","function":{"name":"sum","arguments":""}}]}}],"created":1749764735}

id: 4
event: message
data: {"id":"chatcmpl-cc34","object":"chat.completion.chunk","model_id":"ibm/granite-3-3-8b-instruct","model":"ibm/granite-3-3-8b-instruct","choices":[{"index":0,"finish_reason":null,"delta":{"tool_calls":[{"index":0,"function":{"name":"","arguments":"{\\"firstNumber\\": 2, \\"secondNumber\\": 2}"}}]}}],"created":1749764735}

id: 5
event: message
data: {"id":"chatcmpl-cc34","object":"chat.completion.chunk","model_id":"ibm/granite-3-3-8b-instruct","model":"ibm/granite-3-3-8b-instruct","choices":[{"index":0,"finish_reason":"tool_calls","delta":{"tool_calls":[{"index":1,"id":"chatcmpl-tool-f762","type":"function","function":{"name":"subtraction","arguments":"{}"}}]}}],"created":1749764735}

id: 6
event: message
data: {"id":"chatcmpl-cc34","object":"chat.completion.chunk","model_id":"ibm/granite-3-3-8b-instruct","model":"ibm/granite-3-3-8b-instruct","choices":[],"created":1749764735,"usage":{"completion_tokens":49,"prompt_tokens":319,"total_tokens":368}}

""".encode()


def run_stream(chunks: list[bytes]):
    decoder, parser = SSEDecoder(), WatsonxStreamParser()
    out = []
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            out.extend(parser.feed(frame))
    for frame in decoder.close():
        out.extend(parser.feed(frame))
    out.extend(parser.finish())
    return out


def test_stream_deltas_tools_and_usage():
    deltas = run_stream([STREAM])
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == "Sum: é☀"
    calls = [c for d in deltas for c in d.tool_calls or []]
    assert [(c.index, c.id, c.function.name) for c in calls] == [
        (0, "chatcmpl-tool-af37", "sum"), (0, None, None), (1, "chatcmpl-tool-f762", "subtraction")]
    assert json.loads("".join(c.function.arguments for c in calls if c.index == 0)) == {"firstNumber": 2,
                                                                                        "secondNumber": 2}
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls"]
    assert [d.usage for d in deltas if d.usage] == [Usage(prompt_tokens=319, completion_tokens=49, total_tokens=368)]


def test_stream_split_at_every_byte_boundary_decodes_the_same():
    whole = msgspec.json.encode(run_stream([STREAM]))
    for i in range(1, len(STREAM)):
        assert msgspec.json.encode(run_stream([STREAM[:i], STREAM[i:]])) == whole, i
    assert msgspec.json.encode(run_stream([STREAM[i:i + 1] for i in range(len(STREAM))])) == whole


def test_stream_ends_at_usage_even_without_finish_reason():
    # some models end a tool call with no finish_reason; the final usage chunk still closes the stream
    no_finish = STREAM.replace(b'"finish_reason":"tool_calls"', b'"finish_reason":null')
    assert run_stream([no_finish])[-1].usage is not None


def test_stream_cut_before_finish_and_usage():
    with pytest.raises(StreamCut):
        run_stream([STREAM[:STREAM.index(b"id: 5")]])
    # finish_reason seen but the usage chunk lost: the answer is complete
    assert run_stream([STREAM[:STREAM.index(b"id: 6")]])[-1].finish_reason == "tool_calls"


def test_stream_error_and_close_events():
    err = STREAM[:STREAM.index(b"id: 3")] + (b'event: error\ndata: {"errors":[{"code":"downstream_request_failed",'
                                             b'"message":"Model crashed"}],"trace":"t","status_code":500}\n\n')
    with pytest.raises(UpstreamError) as exc:
        run_stream([err])
    assert "Model crashed" in exc.value.reason and not isinstance(exc.value, StreamCut)
    closed = STREAM[:STREAM.index(b"id: 3")] + b"event: close\ndata: {}\n\n"
    assert run_stream([closed])[-1].content == "Sum: é☀"
    # an OpenAI-style [DONE] (Model Gateway) is accepted too
    assert run_stream([STREAM[:STREAM.index(b"id: 3")] + b"data: [DONE]\n\n"])


def test_token_cache_keys_never_hold_the_key():
    cache = IamTokenCache()
    cache._tokens[(key_id("secret-key"), "u")] = ("bearer-xyz", 1e18)
    assert "secret-key" not in repr(cache) and "bearer-xyz" not in repr(cache)
    assert all("secret-key" not in k[0] for k in cache._tokens)
    cache.forget("secret-key", "u")
    assert cache._tokens == {}
