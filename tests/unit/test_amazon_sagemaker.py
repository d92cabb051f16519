"""The Amazon SageMaker adapter's pure functions on recorded request, response and stream bytes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import msgspec
import pytest

from adapters.amazon_sagemaker import AmazonSageMakerAdapter
from adapters.aws import EventStreamDecoder
from adapters.base import StreamCut
from proxy.errors import GatewayError, StatusError, UpstreamError
from proxy.types import (ChatMessage, ChatRequest, EmbedRequest, FunctionCall, InputType, RankedDoc, RerankRequest,
                         TaskType, ToolCall, Usage)
from tests.fakes.aws_upstream import event, exception
from tests.tasks import request_for

T = TaskType
BASE = "https://runtime.sagemaker.us-west-2.amazonaws.com/endpoints/my-endpoint"


def adapter(task=T.TEXT_EMBEDDING, api="openai", task_settings=None, **service) -> AmazonSageMakerAdapter:
    ep = SimpleNamespace(inference_id="ep", task_type=task, service="amazon_sagemaker",
                         service_settings={"region": "us-west-2", "endpoint_name": "my-endpoint", "api": api,
                                           **service},
                         task_settings=task_settings or {}, secrets={"access_key": "AKID", "secret_key": "SK"})
    return AmazonSageMakerAdapter(ep)


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


# ------------------------------------------------------------------------------ requests


def test_openai_embeddings_request_and_headers():
    a = adapter(dimensions=384, target_model="m.tar.gz", target_container_hostname="c1",
                inference_component_name="ic-1",
                task_settings={"custom_attributes": "trace=1", "target_variant": "blue", "session_id": "s-1",
                               "inference_id": "cap-1", "enable_explanations": "`true`", "user": "stored-user"})
    up = a.embed_request(EmbedRequest(inputs=["hello"]))
    assert up.url == f"{BASE}/invocations"
    assert up.headers == {
        "Content-Type": "application/json", "Accept": "application/json",
        "X-Amzn-SageMaker-Target-Model": "m.tar.gz", "X-Amzn-SageMaker-Target-Container-Hostname": "c1",
        "X-Amzn-SageMaker-Inference-Component": "ic-1", "X-Amzn-SageMaker-Custom-Attributes": "trace=1",
        "X-Amzn-SageMaker-Enable-Explanations": "`true`", "X-Amzn-SageMaker-Inference-Id": "cap-1",
        "X-Amzn-SageMaker-Session-Id": "s-1", "X-Amzn-SageMaker-Target-Variant": "blue"}
    # a single input is a bare string, as ES sends it; no `model`: the endpoint is the model
    assert json.loads(up.body) == {"input": "hello", "user": "stored-user", "dimensions": 384}
    req = EmbedRequest(inputs=["a", "b"], user="u", task_settings={"target_variant": "green"})
    up = request_for(a, req)
    assert json.loads(up.body)["input"] == ["a", "b"] and json.loads(up.body)["user"] == "u"
    assert up.headers["X-Amzn-SageMaker-Target-Variant"] == "green"  # request wins over stored
    with pytest.raises(GatewayError, match="input_type"):
        a.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.SEARCH))


def test_batch_size_setting_splits_embeddings():
    assert adapter().embed_batch_size == 256
    a = adapter(batch_size=2)
    assert [p.inputs for p in a.split_embed(EmbedRequest(inputs=["a", "b", "c"]))] == [["a", "b"], ["c"]]


def test_openai_chat_stream_request():
    a = adapter(T.CHAT_COMPLETION, task_settings={"custom_attributes": "x"})
    up = a.chat_request(ChatRequest(messages=[user("hi")], stream=True, max_tokens=5))
    assert up.url == f"{BASE}/invocations-response-stream"
    assert up.headers == {"Content-Type": "application/json", "X-Amzn-SageMaker-Accept": "application/json",
                          "X-Amzn-SageMaker-Custom-Attributes": "x"}
    assert json.loads(up.body) == {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 5,
                                   "stream": True, "stream_options": {"include_usage": True}}


@pytest.mark.parametrize("setting, where", [("target_model", "service"), ("enable_explanations", "task")])
def test_options_the_streaming_operation_lacks_are_refused_when_streaming(setting, where):
    kw = {setting: "x"} if where == "service" else {"task_settings": {setting: "x"}}
    a = adapter(T.CHAT_COMPLETION, **kw)
    a.chat_request(ChatRequest(messages=[user("hi")]))  # fine without streaming
    with pytest.raises(StatusError, match=f"\\[{setting}\\].*not available when streaming"):
        a.chat_request(ChatRequest(messages=[user("hi")], stream=True))


@pytest.mark.parametrize("task", [T.RERANK, T.SPARSE_EMBEDDING])
def test_openai_api_refuses_tasks_it_has_no_payload_for(task):
    req = RerankRequest(query="q", documents=["d"]) if task == T.RERANK else EmbedRequest(inputs=["x"])
    with pytest.raises(StatusError) as exc:
        request_for(adapter(task), req)
    assert exc.value.status == 405
    assert exc.value.reason == (f"Task [{task.value}] is not compatible for service [sagemaker] and api [openai]. "
                                f"Supported tasks: [chat_completion, completion, text_embedding]")


def test_elastic_requests():
    emb = adapter(api="elastic", element_type="byte")
    body = json.loads(emb.embed_request(EmbedRequest(inputs=["a", "b"], input_type=InputType.SEARCH,
                                                     task_settings={"pooling": "mean", "session_id": "s"})).body)
    # SageMaker's own task settings become headers; the rest go to the model
    assert body == {"input": ["a", "b"], "input_type": "search", "task_settings": {"pooling": "mean"}}
    rr = adapter(T.RERANK, api="elastic")
    body = json.loads(rr.rerank_request(RerankRequest(query="q", documents=["d1", "d2"], top_n=1,
                                                     return_documents=True)).body)
    assert body == {"input": ["d1", "d2"], "query": "q", "return_documents": True, "top_n": 1}
    comp = adapter(T.COMPLETION, api="elastic")
    assert json.loads(comp.chat_request(ChatRequest(messages=[user("x")])).body) == {"input": "x"}
    with pytest.raises(GatewayError, match="temperature"):
        comp.chat_request(ChatRequest(messages=[user("x")], temperature=0.1))
    chat = adapter(T.CHAT_COMPLETION, api="elastic")
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = json.loads(chat.chat_request(ChatRequest(messages=[user("x")], max_tokens=3, tools=tools,
                                                     stream=True)).body)
    assert body == {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 3, "tools": tools,
                    "stream": True}
    with pytest.raises(GatewayError, match="seed"):
        chat.chat_request(ChatRequest(messages=[user("x")], seed=3))


def test_unknown_api_is_refused():
    with pytest.raises(StatusError, match="api"):
        adapter(api="tgi").embed_request(EmbedRequest(inputs=["x"]))


# ------------------------------------------------------------------------------ responses


def test_openai_responses():
    a = adapter()
    body = (b'{"object":"list","data":[{"index":1,"embedding":[0.3,0.4]},{"index":0,"embedding":[0.1,0.2]}],'
            b'"usage":{"prompt_tokens":2,"total_tokens":2}}')
    res = a.parse_embed(EmbedRequest(inputs=["a", "b"]), body)
    assert [bytes(v) for v in res.vectors] == [b"[0.1,0.2]", b"[0.3,0.4]"]
    chat = adapter(T.CHAT_COMPLETION)
    body = (b'{"id":"c1","model":"tgi","created":1,"choices":[{"index":0,"finish_reason":"tool_calls","message":'
            b'{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":'
            b'{"name":"f","arguments":"{\\"a\\": 1}"}}]}}],"usage":{"prompt_tokens":1,"completion_tokens":2,'
            b'"total_tokens":3}}')
    res = chat.parse_chat(ChatRequest(messages=[user("x")]), body)
    assert res.tool_calls == [ToolCall(id="call_1", function=FunctionCall(name="f", arguments='{"a": 1}'))]
    assert res.usage == Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)


@pytest.mark.parametrize("element, key", [("float", "text_embedding"), ("byte", "text_embedding_bytes"),
                                          ("bit", "text_embedding_bits")])
def test_elastic_dense_responses(element, key):
    a = adapter(api="elastic", element_type=element)
    body = json.dumps({key: [{"embedding": [1, -2]}, {"embedding": [3, 4]}]}).encode()
    res = a.parse_embed(EmbedRequest(inputs=["a", "b"]), body)
    assert [json.loads(bytes(v)) for v in res.vectors] == [[1, -2], [3, 4]] and res.element_type == element
    with pytest.raises(UpstreamError, match="malformed"):
        a.parse_embed(EmbedRequest(inputs=["a"]), b'{"something_else":[]}')


def test_elastic_sparse_rerank_and_completion_responses():
    sparse = adapter(T.SPARSE_EMBEDDING, api="elastic")
    res = sparse.parse_sparse(EmbedRequest(inputs=["a"]), b'{"sparse_embedding":[{"is_truncated":true,'
                                                             b'"embedding":{"tok":0.5,"en":1.25}}]}')
    assert res.embeddings == [{"tok": 0.5, "en": 1.25}] and res.truncated == [True]
    rr = adapter(T.RERANK, api="elastic")
    res = rr.parse_rerank(RerankRequest(query="q", documents=["a", "b"]),
                          b'{"rerank":[{"index":1,"relevance_score":0.9,"text":"b"},{"index":0,"relevance_score":0.1}]}')
    assert res.ranked == [RankedDoc(index=1, relevance_score=0.9, text="b"), RankedDoc(index=0, relevance_score=0.1)]
    comp = adapter(T.COMPLETION, api="elastic")
    res = comp.parse_chat(ChatRequest(messages=[user("x")]), b'{"completion":[{"result":"Hello"}]}')
    assert res.content == "Hello"


def test_error_bodies():
    perr = adapter().parse_error(424, {"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/"},
                                 b'{"ErrorCode":"CLIENT_ERROR_FROM_MODEL","OriginalStatusCode":400,'
                                 b'"Message":"Received client error (400) from primary"}')
    assert (perr.type, perr.message, perr.code) == ("ModelError", "Received client error (400) from primary",
                                                    "CLIENT_ERROR_FROM_MODEL")


# ------------------------------------------------------------------------------ streams


def _part(data: bytes) -> bytes:
    return event("PayloadPart", data, "application/octet-stream")


SSE_TEXT = (
    'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"caf\u00e9 \u65e5"}}]}\n\n'
    'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1",'
    '"type":"function","function":{"name":"f","arguments":""}}]}}]}\n\n'
    'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":'
    '{"arguments":"{\\"a\\": [1, 2.5]}"}}]}}]}\n\n'
    'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    'data: {"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}\n\n'
    'data: [DONE]\n\n').encode()
# PayloadPart boundaries fall inside SSE events and inside a multi-byte character
OPENAI_STREAM = b"".join(_part(SSE_TEXT[i:i + 17]) for i in range(0, len(SSE_TEXT), 17))
ELASTIC_COMPLETION_STREAM = b"".join(_part(json.dumps({"completion": [{"delta": d}]}).encode())
                                     for d in ["Hel", "lo \u00e9", "!"])


def replay(a: AmazonSageMakerAdapter, stream: bytes, pieces: list[bytes] | None = None) -> list[dict]:
    decoder = EventStreamDecoder()
    parser = a.stream_parser(ChatRequest(messages=[user("x")], stream=True))
    out = []
    for piece in pieces or [stream]:
        for msg in decoder.feed(piece):
            out.extend(parser.feed(msg))
    for msg in decoder.close():
        out.extend(parser.feed(msg))
    out.extend(parser.finish())
    return [msgspec.to_builtins(d) for d in out]


def test_openai_stream_through_payload_parts():
    deltas = replay(adapter(T.CHAT_COMPLETION), OPENAI_STREAM)
    assert "".join(d.get("content", "") for d in deltas) == "café 日"
    args = "".join(tc["function"].get("arguments", "") for d in deltas for tc in d.get("tool_calls", []))
    assert json.loads(args) == {"a": [1, 2.5]}
    assert [d["finish_reason"] for d in deltas if "finish_reason" in d] == ["tool_calls"]
    assert [d["usage"] for d in deltas if "usage" in d] == [{"prompt_tokens": 3, "completion_tokens": 4,
                                                             "total_tokens": 7}]


def test_openai_stream_split_at_every_byte_boundary():
    a = adapter(T.CHAT_COMPLETION)
    whole = replay(a, OPENAI_STREAM)
    for cut in range(1, len(OPENAI_STREAM)):
        assert replay(a, OPENAI_STREAM, [OPENAI_STREAM[:cut], OPENAI_STREAM[cut:]]) == whole, cut


def test_openai_stream_without_an_end_is_cut():
    text = SSE_TEXT[:SSE_TEXT.index(b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish')]
    with pytest.raises(StreamCut):
        replay(adapter(T.CHAT_COMPLETION), _part(text))


def test_model_stream_error_is_an_upstream_error():
    broken = _part(SSE_TEXT[:100]) + exception("ModelStreamError", "Model stream error: container exited",
                                               key="Message")
    with pytest.raises(UpstreamError) as exc:
        replay(adapter(T.CHAT_COMPLETION), broken)
    assert exc.value.upstream_status == 424 and "container exited" in exc.value.reason


def test_elastic_completion_stream_split_at_every_byte_boundary():
    a = adapter(T.COMPLETION, api="elastic")
    whole = replay(a, ELASTIC_COMPLETION_STREAM)
    assert [d["content"] for d in whole] == ["Hel", "lo é", "!"]
    for cut in range(1, len(ELASTIC_COMPLETION_STREAM)):
        pieces = [ELASTIC_COMPLETION_STREAM[:cut], ELASTIC_COMPLETION_STREAM[cut:]]
        assert replay(a, ELASTIC_COMPLETION_STREAM, pieces) == whole
    with pytest.raises(StreamCut):
        replay(a, ELASTIC_COMPLETION_STREAM[:-3])


def test_elastic_chat_stream_takes_one_chunk_per_part():
    chunks = [{"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]},
              {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    stream = b"".join(_part(json.dumps(c).encode()) for c in chunks)
    deltas = replay(adapter(T.CHAT_COMPLETION, api="elastic"), stream)
    assert [d.get("content") for d in deltas] == ["hi", None] and deltas[-1]["finish_reason"] == "stop"
    with pytest.raises(StreamCut):
        replay(adapter(T.CHAT_COMPLETION, api="elastic"), _part(json.dumps(chunks[0]).encode()))
