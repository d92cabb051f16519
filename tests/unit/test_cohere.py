"""The Cohere (v2) adapter's pure functions on recorded request and response bodies."""

from __future__ import annotations

import json
from types import SimpleNamespace

import msgspec
import pytest

from adapters.base import StreamCut
from adapters.cohere import CohereAdapter, CohereStreamParser
from proxy.errors import GatewayError, UpstreamError
from proxy.sse import SSEDecoder
from proxy.types import (ChatMessage, ChatRequest, EmbedRequest, FunctionCall, InputType, RankedDoc, RerankRequest,
                         TaskType, ToolCall, Usage)
from tests.canonical import typed
from tests.tasks import request_for


def adapter(task=TaskType.TEXT_EMBEDDING, task_settings=None, **service) -> CohereAdapter:
    ep = SimpleNamespace(inference_id="ep", task_type=task, service="cohere",
                         service_settings={"model_id": "embed-english-v3.0", **service},
                         task_settings=task_settings or {}, secrets={"api_key": "co-key"})
    return CohereAdapter(ep)


def sent(a: CohereAdapter, req) -> tuple[str, dict]:
    up = request_for(a, typed(req))
    assert up.headers["Authorization"] == "Bearer co-key" and not up.explicit_url
    return up.url, json.loads(up.body)


# ------------------------------------------------------------------------------ embed


def test_embed_body_defaults_to_search_query_and_float():
    url, body = sent(adapter(), EmbedRequest(inputs=["a", "b"]))
    assert url == "https://api.cohere.com/v2/embed"
    assert body == {"model": "embed-english-v3.0", "texts": ["a", "b"], "input_type": "search_query",
                    "embedding_types": ["float"]}


@pytest.mark.parametrize("input_type, value", [(InputType.INGEST, "search_document"),
                                               (InputType.SEARCH, "search_query"),
                                               (InputType.CLASSIFICATION, "classification"),
                                               (InputType.CLUSTERING, "clustering")])
def test_input_type_mapping(input_type, value):
    assert sent(adapter(), EmbedRequest(inputs=["a"], input_type=input_type))[1]["input_type"] == value


def test_stored_input_type_and_truncate_and_request_precedence():
    a = adapter(task_settings={"input_type": "ingest", "truncate": "END"})
    body = sent(a, EmbedRequest(inputs=["a"]))[1]
    assert body["input_type"] == "search_document" and body["truncate"] == "END"
    body = sent(a, EmbedRequest(inputs=["a"], input_type=InputType.SEARCH, task_settings={"truncate": "NONE"}))[1]
    assert body["input_type"] == "search_query" and body["truncate"] == "NONE"


@pytest.mark.parametrize("setting, wire", [("float", "float"), ("int8", "int8"), ("byte", "int8"),
                                           ("binary", "binary"), ("bit", "binary")])
def test_embedding_type_setting(setting, wire):
    assert sent(adapter(embedding_type=setting), EmbedRequest(inputs=["a"]))[1]["embedding_types"] == [wire]


def test_dimensions_and_user():
    assert sent(adapter(), EmbedRequest(inputs=["a"], dimensions=256))[1]["output_dimension"] == 256
    with pytest.raises(GatewayError, match="user"):
        adapter().embed_request(EmbedRequest(inputs=["a"], user="u"))


EMBED_RESPONSE = b"""{"id":"da6e531f","texts":["hello","goodbye"],
"embeddings":{"float":[[0.016296387,-0.008354187,-0.04699707],[0.1,0.2,-0.3]],"int8":[[-21,-12,-50],[3,4,-5]],
"binary":[[-110],[60]]},
"meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":2}},"response_type":"embeddings_by_type"}"""


@pytest.mark.parametrize("setting, element_type, first", [("float", "float", [0.016296387, -0.008354187, -0.04699707]),
                                                          ("byte", "byte", [-21, -12, -50]),
                                                          ("bit", "bit", [-110])])
def test_parse_embeddings_by_type(setting, element_type, first):
    result = adapter(embedding_type=setting).parse_embed(EmbedRequest(inputs=["hello", "goodbye"]),
                                                            EMBED_RESPONSE)
    assert result.element_type == element_type and len(result.vectors) == 2
    assert json.loads(bytes(result.vectors[0])) == first  # spliced unparsed
    assert result.usage == Usage(prompt_tokens=2, total_tokens=2)


def test_parse_embeddings_bare_array_and_missing_type():
    body = b'{"id":"x","embeddings":[[0.5,0.25]],"meta":{"billed_units":{"input_tokens":1}}}'
    result = adapter().parse_embed(EmbedRequest(inputs=["a"]), body)
    assert json.loads(bytes(result.vectors[0])) == [0.5, 0.25] and result.element_type == "float"
    with pytest.raises(UpstreamError, match="malformed"):
        adapter(embedding_type="int8").parse_embed(EmbedRequest(inputs=["a"]),
                                                      b'{"embeddings":{"float":[[1.0]]}}')


def test_batches_of_96():
    parts = adapter().split_embed(EmbedRequest(inputs=[str(i) for i in range(200)]))
    assert [len(p.inputs) for p in parts] == [96, 96, 8]


# ------------------------------------------------------------------------------ rerank


def test_rerank_body_and_response():
    a = adapter(TaskType.RERANK, model_id="rerank-v3.5")
    url, body = sent(a, RerankRequest(query="q", documents=["a", "b"], top_n=1, return_documents=True))
    assert url == "https://api.cohere.com/v2/rerank"
    assert body == {"model": "rerank-v3.5", "query": "q", "documents": ["a", "b"], "top_n": 1}
    resp = b"""{"results":[{"index":1,"relevance_score":0.98},{"index":0,"relevance_score":0.02}],"id":"r1",
    "meta":{"api_version":{"version":"2"},"billed_units":{"search_units":1}}}"""
    result = a.parse_rerank(RerankRequest(query="q", documents=["a", "b"]), resp)
    assert result.ranked == [RankedDoc(index=1, relevance_score=0.98), RankedDoc(index=0, relevance_score=0.02)]


# ------------------------------------------------------------------------------ chat


def chat_adapter(task=TaskType.CHAT_COMPLETION) -> CohereAdapter:
    return adapter(task, model_id="command-a-03-2025")


def test_completion_body():
    url, body = sent(chat_adapter(TaskType.COMPLETION), ChatRequest(messages=[ChatMessage(role="user",
                                                                                          content="hi")]))
    assert url == "https://api.cohere.com/v2/chat"
    assert body == {"model": "command-a-03-2025", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def test_chat_body_maps_every_parameter():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "w",
                                               "parameters": {"type": "object"}, "strict": True}}]
    messages = [ChatMessage(role="system", content="be brief"),
                ChatMessage(role="user", content=[{"type": "text", "text": "weather?"},
                                                  {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]),
                ChatMessage(role="assistant", tool_calls=[ToolCall(id="c1", function=FunctionCall(
                    name="get_weather", arguments='{"city":"Paris"}'))]),
                ChatMessage(role="tool", tool_call_id="c1", content="sunny")]
    req = ChatRequest(messages=messages, model="command-r", max_tokens=50, temperature=0.1, top_p=0.5,
                      stop=["END"], seed=7, tools=tools, tool_choice="required",
                      response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
                      stream=True)
    body = sent(chat_adapter(), req)[1]
    assert body == {
        "model": "command-r", "stream": True,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                                  {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
                     {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                         "name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
        "max_tokens": 50, "temperature": 0.1, "p": 0.5, "stop_sequences": ["END"], "seed": 7,
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "w",
                                                    "parameters": {"type": "object"}}}],
        "strict_tools": True, "tool_choice": "REQUIRED",
        "response_format": {"type": "json_object", "json_schema": {"type": "object"}}}


@pytest.mark.parametrize("kw, match", [
    ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
    ({"user": "u"}, "user"),
    ({"response_format": {"type": "grammar"}}, "response_format"),
    ({"messages": [ChatMessage(role="user", content="x", name="bob")]}, "messages.name")])
def test_chat_rejections(kw, match):
    req = ChatRequest(**{"messages": [ChatMessage(role="user", content="x")], **kw})
    with pytest.raises(GatewayError, match=match):
        chat_adapter().chat_request(req)


def test_tool_choice_auto_and_none():
    req = ChatRequest(messages=[ChatMessage(role="user", content="x")], tool_choice="auto")
    assert "tool_choice" not in sent(chat_adapter(), req)[1]
    req = ChatRequest(messages=[ChatMessage(role="user", content="x")], tool_choice="none")
    assert sent(chat_adapter(), req)[1]["tool_choice"] == "NONE"


CHAT_RESPONSE = b"""{"id":"c14c80c3-18eb-4519-9460-6c92edd8cfb4","finish_reason":"COMPLETE",
"message":{"role":"assistant","content":[{"type":"text","text":"LLMs stand for "},{"type":"text","text":"large."}]},
"usage":{"billed_units":{"input_tokens":5,"output_tokens":11},"tokens":{"input_tokens":71,"output_tokens":11}}}"""

TOOL_RESPONSE = b"""{"id":"t1","finish_reason":"TOOL_CALL","message":{"role":"assistant",
"tool_plan":"I will look up the weather.","tool_calls":[{"id":"get_weather_abc","type":"function",
"function":{"name":"get_weather","arguments":"{\\"location\\":\\"Toronto\\"}"}}]},
"usage":{"billed_units":{"input_tokens":37,"output_tokens":28},"tokens":{"input_tokens":1255,"output_tokens":65}}}"""


def test_parse_chat():
    req = ChatRequest(messages=[ChatMessage(role="user", content="x")])
    result = chat_adapter().parse_chat(req, CHAT_RESPONSE)
    assert result.content == "LLMs stand for large." and result.finish_reason == "stop"
    assert result.id == "c14c80c3-18eb-4519-9460-6c92edd8cfb4" and result.model == "command-a-03-2025"
    assert result.usage == Usage(prompt_tokens=71, completion_tokens=11, total_tokens=82)
    result = chat_adapter().parse_chat(req, TOOL_RESPONSE)
    assert result.finish_reason == "tool_calls" and result.content is None
    assert result.tool_calls == [ToolCall(id="get_weather_abc", function=FunctionCall(
        name="get_weather", arguments='{"location":"Toronto"}'))]


def test_parse_chat_error_finish_and_error_body():
    req = ChatRequest(messages=[ChatMessage(role="user", content="x")])
    with pytest.raises(UpstreamError, match="ERROR"):
        chat_adapter().parse_chat(req, b'{"id":"x","finish_reason":"ERROR","message":{"content":[]}}')
    assert chat_adapter().parse_error(400, {}, b'{"message":"invalid request: bad"}').message == "invalid request: bad"


# ------------------------------------------------------------------------------ streams

STREAM = """event: message-start
data: {"id":"29f14a5a-11de-4cae-9800-25e4747408ea","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}

event: content-start
data: {"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}

event: content-delta
data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Caf\u00e9"}}}}

event: content-delta
data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":" ☕ time"}}}}

event: content-end
data: {"type":"content-end","index":0}

event: message-end
data: {"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":3,"output_tokens":4},"tokens":{"input_tokens":69,"output_tokens":4}}}}

""".encode()

TOOL_STREAM = """event: message-start
data: {"id":"s2","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}

event: tool-plan-delta
data: {"type":"tool-plan-delta","delta":{"message":{"tool_plan":"I will"}}}

event: tool-call-start
data: {"type":"tool-call-start","index":0,"delta":{"message":{"tool_calls":{"id":"get_weather_1","type":"function","function":{"name":"get_weather","arguments":""}}}}}

event: tool-call-delta
data: {"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"{\\"city\\":"}}}}}

event: tool-call-delta
data: {"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"\\"Paris\\"}"}}}}}

event: tool-call-end
data: {"type":"tool-call-end","index":0}

event: tool-call-start
data: {"type":"tool-call-start","index":1,"delta":{"message":{"tool_calls":{"id":"get_time_2","type":"function","function":{"name":"get_time","arguments":"{}"}}}}}

event: tool-call-end
data: {"type":"tool-call-end","index":1}

event: message-end
data: {"type":"message-end","delta":{"finish_reason":"TOOL_CALL","usage":{"billed_units":{"input_tokens":20,"output_tokens":9},"tokens":{"input_tokens":900,"output_tokens":30}}}}

""".encode()


def run_stream(chunks: list[bytes]):
    decoder, parser = SSEDecoder(), CohereStreamParser(model="command-a")
    out = []
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            out.extend(parser.feed(frame))
    for frame in decoder.close():
        out.extend(parser.feed(frame))
    out.extend(parser.finish())
    return out


def test_text_stream():
    deltas = run_stream([STREAM])
    assert deltas[0].role == "assistant" and all(d.id == "29f14a5a-11de-4cae-9800-25e4747408ea" for d in deltas)
    assert "".join(d.content or "" for d in deltas) == "Café ☕ time"
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert [d.usage for d in deltas if d.usage] == [Usage(prompt_tokens=69, completion_tokens=4, total_tokens=73)]


def test_tool_stream():
    deltas = run_stream([TOOL_STREAM])
    calls = [tc for d in deltas for tc in d.tool_calls or []]
    assert [(c.index, c.id, c.function.name) for c in calls if c.id] == [(0, "get_weather_1", "get_weather"),
                                                                           (1, "get_time_2", "get_time")]
    assert json.loads("".join(c.function.arguments or "" for c in calls if c.index == 0)) == {"city": "Paris"}
    assert "".join(c.function.arguments or "" for c in calls if c.index == 1) == "{}"
    assert not any(d.content for d in deltas)  # the tool plan is not answer text
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls"]
    assert [d.usage for d in deltas if d.usage] == [Usage(prompt_tokens=900, completion_tokens=30, total_tokens=930)]


@pytest.mark.parametrize("stream", [STREAM, TOOL_STREAM])
def test_stream_split_at_every_byte_boundary_decodes_the_same(stream):
    whole = msgspec.json.encode(run_stream([stream]))
    for i in range(1, len(stream)):
        assert msgspec.json.encode(run_stream([stream[:i], stream[i:]])) == whole, i
    assert msgspec.json.encode(run_stream([stream[i:i + 1] for i in range(len(stream))])) == whole


def test_stream_without_message_end_is_cut():
    with pytest.raises(StreamCut):
        run_stream([STREAM[:STREAM.index(b"event: message-end")]])


def test_stream_error_finish_and_error_event():
    bad = STREAM.replace(b'"finish_reason":"COMPLETE"', b'"finish_reason":"ERROR","error":"model overloaded"')
    with pytest.raises(UpstreamError, match="model overloaded"):
        run_stream([bad])
    with pytest.raises(UpstreamError, match="internal") as exc:
        run_stream([STREAM[:200].rsplit(b"\n\n", 1)[0] + b'\n\nevent: error\ndata: {"message":"internal"}\n\n'])
    assert not isinstance(exc.value, StreamCut)


def test_embedding_task_sends_content_inputs_and_texts_otherwise():
    """docs.cohere.com/reference/embed: `inputs` of `content` lists (`text`, `image_url` with a data URI) on
    embed-v4; plain `texts` whenever every input is one text, as ES's CohereV2EmbeddingsRequest sends."""
    from proxy.types import EmbedPart

    image = "data:image/png;base64,AAAA"
    ad = adapter(TaskType.EMBEDDING, model_id="embed-v4.0")
    assert ad.embeds_images(ad.endpoint.service_settings)
    assert not ad.embeds_images({"model_id": "embed-english-v3.0"})
    req = EmbedRequest(inputs=["cat"], contents=[[EmbedPart(type="text", value="cat"),
                                                  EmbedPart(type="image", value=image)]])
    sent = json.loads(ad.embed_request(req).body)
    assert sent["inputs"] == [{"content": [{"type": "text", "text": "cat"},
                                           {"type": "image_url", "image_url": {"url": image}}]}]
    assert "texts" not in sent and sent["input_type"] == "search_query" and sent["embedding_types"] == ["float"]
    assert json.loads(ad.embed_request(EmbedRequest(inputs=["cat"])).body)["texts"] == ["cat"]
