"""The Amazon Bedrock adapter's pure functions on recorded request, response and stream bytes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import msgspec
import pytest

from adapters.amazonbedrock import AmazonBedrockAdapter, ConverseStreamParser
from adapters.aws import EventStreamDecoder
from adapters.base import StreamCut
from proxy.errors import GatewayError, StatusError, UpstreamError
from proxy.types import ChatMessage, ChatRequest, EmbedRequest, FunctionCall, InputType, TaskType, ToolCall, Usage
from tests.canonical import typed
from tests.fakes.aws_upstream import event, exception
from tests.tasks import request_for

T = TaskType


def adapter(task=T.CHAT_COMPLETION, provider="anthropic", model="anthropic.claude-3-haiku-20240307-v1:0",
            task_settings=None, **service) -> AmazonBedrockAdapter:
    ep = SimpleNamespace(inference_id="ep", task_type=task, service="amazonbedrock",
                         service_settings={"region": "eu-central-1", "model": model, "provider": provider, **service},
                         task_settings=task_settings or {}, secrets={"access_key": "AKID", "secret_key": "SK"})
    return AmazonBedrockAdapter(ep)


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def body_of(a: AmazonBedrockAdapter, req) -> dict:
    return json.loads(request_for(a, typed(req)).body)


# ------------------------------------------------------------------------------ Converse requests


def test_converse_url_headers_and_minimal_body():
    a = adapter()
    up = a.chat_request(ChatRequest(messages=[user("hi")]))
    assert up.url == ("https://bedrock-runtime.eu-central-1.amazonaws.com/model/"
                      "anthropic.claude-3-haiku-20240307-v1%3A0/converse")
    assert up.headers == {"Content-Type": "application/json", "Accept": "application/json"}
    assert "Authorization" not in up.headers  # signed in authorize(), over the routed URL
    assert json.loads(up.body) == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    stream = a.chat_request(ChatRequest(messages=[user("hi")], stream=True))
    assert stream.url.endswith("/converse-stream")
    assert stream.headers["Accept"] == "application/vnd.amazon.eventstream"


def test_an_inference_profile_arn_is_one_path_segment():
    a = adapter(model="arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3")
    url = a.chat_request(ChatRequest(messages=[user("x")])).url
    assert url.endswith("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
                        "us.anthropic.claude-3/converse")


def test_task_settings_become_inference_config_and_top_k():
    a = adapter(T.COMPLETION, task_settings={"max_new_tokens": 64, "temperature": 0.2, "top_p": 0.9, "top_k": 40.0})
    body = body_of(a, ChatRequest(messages=[user("a"), user("b")]))
    # the inputs of a completion request are consecutive user turns: Converse wants them merged
    assert body["messages"] == [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]
    assert body["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.2, "topP": 0.9}
    assert body["additionalModelRequestFields"] == {"top_k": 40}


def test_request_values_win_over_task_settings():
    a = adapter(task_settings={"max_new_tokens": 64, "temperature": 0.2, "top_p": 0.9})
    req = ChatRequest(messages=[user("x")], max_tokens=10, temperature=1.0, top_p=0.5, stop=["END"], user="u-1",
                      task_settings={"top_k": 3})
    body = body_of(a, req)
    assert body["inferenceConfig"] == {"maxTokens": 10, "temperature": 1.0, "topP": 0.5, "stopSequences": ["END"]}
    assert body["additionalModelRequestFields"] == {"top_k": 3}
    assert body["requestMetadata"] == {"user": "u-1"}


def test_top_k_is_k_for_cohere_and_refused_where_the_family_has_none():
    assert body_of(adapter(provider="cohere", model="cohere.command-r-v1:0", task_settings={"top_k": 5}),
                   ChatRequest(messages=[user("x")]))["additionalModelRequestFields"] == {"k": 5}
    assert body_of(adapter(provider="mistral", task_settings={"top_k": 0.5}),
                   ChatRequest(messages=[user("x")]))["additionalModelRequestFields"] == {"top_k": 0.5}
    with pytest.raises(StatusError) as exc:
        adapter(provider="meta", task_settings={"top_k": 5}).chat_request(ChatRequest(messages=[user("x")]))
    assert exc.value.reason == "The [top_k] task parameter is not available for provider [meta]"


@pytest.mark.parametrize("field, value", [("seed", 1), ("response_format", {"type": "json_object"})])
def test_parameters_converse_cannot_express_are_refused(field, value):
    with pytest.raises(GatewayError, match=field):
        adapter().chat_request(ChatRequest(messages=[user("x")], **{field: value}))


def test_system_tools_and_a_tool_round_trip_translate():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                               "parameters": {"type": "object", "properties": {"city": {}}}}},
             {"type": "function", "function": {"name": "now"}}]
    args = '{"city": "Paris", "nested": {"list": [1, 2.5, "\\u00fc"]}}'
    messages = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="developer", content="Metric."),
                user("weather?"),
                ChatMessage(role="assistant", content="", tool_calls=[
                    ToolCall(id="t1", function=FunctionCall(name="get_weather", arguments=args)),
                    ToolCall(id="t2", function=FunctionCall(name="now", arguments=""))]),
                ChatMessage(role="tool", tool_call_id="t1", content="18C"),
                ChatMessage(role="tool", tool_call_id="t2", content=[{"type": "text", "text": "noon"}]),
                user("thanks")]
    body = body_of(adapter(), ChatRequest(messages=messages, tools=tools,
                                          tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    assert body["system"] == [{"text": "Be brief."}, {"text": "Metric."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "weather?"}]},
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": json.loads(args)}},
            {"toolUse": {"toolUseId": "t2", "name": "now", "input": {}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "t1", "content": [{"text": "18C"}]}},
            {"toolResult": {"toolUseId": "t2", "content": [{"text": "noon"}]}},
            {"text": "thanks"}]}]
    assert body["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather",
                                "inputSchema": {"json": {"type": "object", "properties": {"city": {}}}}}},
                  {"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}}],
        "toolChoice": {"tool": {"name": "get_weather"}}}


@pytest.mark.parametrize("choice, expected", [("auto", {"auto": {}}), ("required", {"any": {}}), (None, None)])
def test_tool_choice(choice, expected):
    tools = [{"type": "function", "function": {"name": "f"}}]
    config = body_of(adapter(), ChatRequest(messages=[user("x")], tools=tools, tool_choice=choice))["toolConfig"]
    assert config.get("toolChoice") == expected


def test_tool_choice_none_leaves_the_tools_out_unless_the_conversation_uses_them():
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert "toolConfig" not in body_of(adapter(), ChatRequest(messages=[user("x")], tools=tools, tool_choice="none"))
    history = [user("x"), ChatMessage(role="assistant", tool_calls=[ToolCall(id="1", function=FunctionCall(name="f"))]),
               ChatMessage(role="tool", tool_call_id="1", content="r")]
    with pytest.raises(GatewayError, match="tool_choice"):
        adapter().chat_request(ChatRequest(messages=history, tools=tools, tool_choice="none"))


def test_invalid_messages_are_refused():
    with pytest.raises(GatewayError, match="name"):
        adapter().chat_request(ChatRequest(messages=[ChatMessage(role="user", content="x", name="bob")]))
    with pytest.raises(GatewayError, match="tool_call_id"):
        adapter().chat_request(ChatRequest(messages=[ChatMessage(role="tool", content="x")]))
    with pytest.raises(GatewayError, match="not valid JSON"):
        adapter().chat_request(ChatRequest(messages=[ChatMessage(role="assistant", tool_calls=[
            ToolCall(id="1", function=FunctionCall(name="f", arguments="{oops"))])]))


def test_images_must_be_base64_data_urls():
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    body = body_of(adapter(), ChatRequest(messages=[ChatMessage(role="user", content=[
        {"type": "text", "text": "what is it?"}, part])]))
    assert body["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}
    with pytest.raises(GatewayError, match="data URLs"):
        adapter().chat_request(typed(ChatRequest(messages=[ChatMessage(role="user", content=[
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}])])))


# ------------------------------------------------------------------------------ embeddings


def test_titan_one_text_per_call():
    a = adapter(T.TEXT_EMBEDDING, provider="amazontitan", model="amazon.titan-embed-text-v2:0")
    assert a.embed_batch_size == 1
    req = EmbedRequest(inputs=["a", "b", "c"])
    parts = a.split_embed(req)
    assert [p.inputs for p in parts] == [["a"], ["b"], ["c"]]
    up = a.embed_request(parts[1])
    assert up.url.endswith("/model/amazon.titan-embed-text-v2%3A0/invoke")
    assert json.loads(up.body) == {"inputText": "b"}
    assert json.loads(a.embed_request(EmbedRequest(inputs=["a"], dimensions=256)).body) == {"inputText": "a",
                                                                                             "dimensions": 256}
    with pytest.raises(GatewayError, match="input_type"):
        a.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.SEARCH))
    with pytest.raises(GatewayError, match="user"):
        a.embed_request(EmbedRequest(inputs=["a"], user="u"))


@pytest.mark.parametrize("input_type, expected", [
    (None, "search_document"), (InputType.INGEST, "search_document"), (InputType.SEARCH, "search_query"),
    (InputType.CLASSIFICATION, "classification"), (InputType.CLUSTERING, "clustering")])
def test_cohere_embeddings_input_type(input_type, expected):
    a = adapter(T.TEXT_EMBEDDING, provider="cohere", model="cohere.embed-english-v3")
    assert a.embed_batch_size == 96
    body = body_of(a, EmbedRequest(inputs=["a", "b"], input_type=input_type))
    assert body == {"texts": ["a", "b"], "input_type": expected}
    assert [len(p.inputs) for p in a.split_embed(EmbedRequest(inputs=["x"] * 100))] == [96, 4]


@pytest.mark.parametrize("provider", ["anthropic", "ai21labs", "meta", "mistral"])
def test_embeddings_are_refused_for_families_without_them(provider):
    with pytest.raises(StatusError) as exc:
        adapter(T.TEXT_EMBEDDING, provider=provider).embed_request(EmbedRequest(inputs=["x"]))
    assert exc.value.reason == f"The [text_embedding] task type for provider [{provider}] is not available"
    assert exc.value.status == 400


def test_unknown_provider_is_refused():
    with pytest.raises(StatusError, match="provider"):
        adapter(provider="openai").chat_request(ChatRequest(messages=[user("x")]))


def test_parse_titan_and_cohere_responses():
    titan = adapter(T.TEXT_EMBEDDING, provider="amazontitan")
    res = titan.parse_embed(EmbedRequest(inputs=["a"]), b'{"embedding":[0.25,-1.5e-3,3],"inputTextTokenCount":4}')
    assert [bytes(v) for v in res.vectors] == [b"[0.25,-1.5e-3,3]"]  # the vector bytes pass through unparsed
    assert res.usage == Usage(prompt_tokens=4, total_tokens=4)
    cohere = adapter(T.TEXT_EMBEDDING, provider="cohere")
    body = b'{"embeddings":[[0.1,0.2],[0.3,0.4]],"id":"x","response_type":"embeddings_floats","texts":["a","b"]}'
    assert [bytes(v) for v in cohere.parse_embed(EmbedRequest(inputs=["a", "b"]), body).vectors] == \
        [b"[0.1,0.2]", b"[0.3,0.4]"]
    by_type = b'{"embeddings":{"float":[[1,2]]},"id":"x","response_type":"embeddings_by_type"}'
    assert [bytes(v) for v in cohere.parse_embed(EmbedRequest(inputs=["a"]), by_type).vectors] == [b"[1,2]"]
    with pytest.raises(UpstreamError, match="malformed"):
        titan.parse_embed(EmbedRequest(inputs=["a"]), b'{"embeddings":[]}')


# ------------------------------------------------------------------------------ Converse responses


CONVERSE_TOOL_RESPONSE = (
    b'{"output":{"message":{"role":"assistant","content":[{"text":"Let me check."},{"toolUse":{"toolUseId":'
    b'"tooluse_1","name":"get_weather","input":{"city": "Paris", "n": [1, 2.50]}}}]}},"stopReason":"tool_use",'
    b'"usage":{"inputTokens":12,"outputTokens":7,"totalTokens":19,"cacheReadInputTokens":0},'
    b'"metrics":{"latencyMs":321}}')


def test_parse_converse_with_a_tool_call_keeps_the_arguments_byte_for_byte():
    a = adapter()
    res = a.parse_chat(ChatRequest(messages=[user("x")]), CONVERSE_TOOL_RESPONSE)
    assert res.content == "Let me check."
    assert res.tool_calls == [ToolCall(id="tooluse_1", function=FunctionCall(
        name="get_weather", arguments='{"city": "Paris", "n": [1, 2.50]}'))]
    assert res.finish_reason == "tool_calls" and res.model == "anthropic.claude-3-haiku-20240307-v1:0"
    assert res.usage == Usage(prompt_tokens=12, completion_tokens=7, total_tokens=19, cached_tokens=0)
    assert res.id.startswith("chatcmpl-")


@pytest.mark.parametrize("stop, finish", [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
                                          ("content_filtered", "content_filter"), ("guardrail_intervened",
                                                                                   "content_filter")])
def test_stop_reasons(stop, finish):
    body = json.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
                       "stopReason": stop}).encode()
    assert adapter().parse_chat(ChatRequest(messages=[user("x")]), body).finish_reason == finish


def test_error_body():
    perr = adapter().parse_error(429, {"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/"},
                                 b'{"message":"Too many requests, please wait before trying again."}')
    assert (perr.type, perr.message) == ("ThrottlingException", "Too many requests, please wait before trying again.")


# ------------------------------------------------------------------------------ ConverseStream

P = "abcdefghijklmnop"
ARGS = '{"city": "Par\u00eds", "n": [1, 2.5]}'
STREAM = b"".join([
    event("messageStart", {"p": P[:3], "role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Caf\u00e9 "}, "p": P[:1]}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "\u65e5\u672c \U0001f642"}, "p": P}),
    event("contentBlockStop", {"contentBlockIndex": 0, "p": P[:4]}),
    event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1",
                                                                              "name": "get_weather"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ARGS[:9]}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ARGS[9:]}}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event("messageStop", {"stopReason": "tool_use", "p": P[:2]}),
    event("metadata", {"usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 30},
                       "metrics": {"latencyMs": 100}, "p": P[:6]}),
])


def replay(pieces: list[bytes]) -> list[dict]:
    decoder = EventStreamDecoder()
    parser = ConverseStreamParser(model="m")
    out = []
    for piece in pieces:
        for msg in decoder.feed(piece):
            out.extend(parser.feed(msg))
    for msg in decoder.close():
        out.extend(parser.feed(msg))
    out.extend(parser.finish())
    return [msgspec.to_builtins(msgspec.structs.replace(d, id=None)) for d in out]


def test_stream_deltas():
    deltas = replay([STREAM])
    assert deltas[0] == {"role": "assistant", "model": "m"}
    assert "".join(d.get("content", "") for d in deltas) == "Café 日本 🙂"
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "tu_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert "".join(tc["function"]["arguments"] for tc in calls) == ARGS
    assert [d["finish_reason"] for d in deltas if "finish_reason" in d] == ["tool_calls"]
    usage = [d["usage"] for d in deltas if "usage" in d]
    assert usage == [{"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}]  # once, at the end


def test_stream_split_at_every_byte_boundary_gives_identical_deltas():
    whole = replay([STREAM])
    for cut in range(1, len(STREAM)):
        assert replay([STREAM[:cut], STREAM[cut:]]) == whole, cut


def test_stream_fed_byte_by_byte():
    assert replay([STREAM[i:i + 1] for i in range(len(STREAM))]) == replay([STREAM])


def test_stream_without_metadata_is_cut():
    end = STREAM.index(event("metadata", {"usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 30},
                                          "metrics": {"latencyMs": 100}, "p": P[:6]}))
    with pytest.raises(StreamCut):
        replay([STREAM[:end]])
    with pytest.raises(StreamCut):
        replay([STREAM[:end + 10]])  # cut inside the last message


def test_stream_exception_event_is_an_upstream_error():
    start = STREAM.index(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Caf\u00e9 "},
                                                      "p": P[:1]}))
    broken = STREAM[:start] + exception("throttlingException", "Too many tokens, please wait before trying again.")
    with pytest.raises(UpstreamError) as exc:
        replay([broken])
    assert exc.value.upstream_status == 429
    assert "throttlingException: Too many tokens" in exc.value.reason


def test_reasoning_effort_and_top_k_for_claude_refused_elsewhere():
    from proxy.errors import GatewayError

    req = ChatRequest(messages=[user("x")], reasoning_effort="high", extra={"top_k": 7}, max_tokens=30000)
    a = adapter()
    a.check_chat(req)
    body = body_of(a, req)
    assert body["additionalModelRequestFields"] == {"top_k": 7, "thinking": {"type": "enabled",
                                                                             "budget_tokens": 24576}}
    other = adapter(provider="amazontitan", model="amazon.titan-text-express-v1")
    with pytest.raises(GatewayError, match=r"\[reasoning_effort\]"):
        other.check_chat(ChatRequest(messages=[user("x")], reasoning_effort="low"))
    with pytest.raises(GatewayError, match=r"\[parallel_tool_calls\]"):
        a.check_chat(ChatRequest(messages=[user("x")], parallel_tool_calls=False,
                                 tools=[{"type": "function", "function": {"name": "f"}}]))
    a.check_chat(ChatRequest(messages=[user("x")], parallel_tool_calls=False))  # no tools: nothing to refuse
