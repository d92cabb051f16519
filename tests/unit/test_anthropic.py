"""The Anthropic adapter's pure functions on recorded request and response bodies."""

from __future__ import annotations

import json
from types import SimpleNamespace

import msgspec
import pytest

from adapters.anthropic import AnthropicAdapter, AnthropicStreamParser
from adapters.base import SSEEvent, StreamCut
from proxy.errors import GatewayError, UpstreamError
from proxy.sse import SSEDecoder
from proxy.types import ChatMessage, ChatRequest, FunctionCall, TaskType, ToolCall, Usage
from tests.canonical import typed


def adapter(task=TaskType.CHAT_COMPLETION, task_settings=None, **service) -> AnthropicAdapter:
    ep = SimpleNamespace(inference_id="ep", task_type=task, service="anthropic",
                         service_settings={"model_id": "claude-test", **service},
                         task_settings=task_settings if task_settings is not None else {"max_tokens": 256},
                         secrets={"api_key": "sk-ant"})
    return AnthropicAdapter(ep)


def body_of(a: AnthropicAdapter, req: ChatRequest) -> dict:
    up = a.chat_request(typed(req))
    return json.loads(up.body)


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


# ------------------------------------------------------------------------------ requests


def test_headers_url_and_minimal_body():
    a = adapter()
    up = a.chat_request(ChatRequest(messages=[user("hi")]))
    assert up.url == "https://api.anthropic.com/v1/messages" and not up.explicit_url
    assert up.headers["x-api-key"] == "sk-ant" and up.headers["anthropic-version"] == "2026-10-21"
    assert "Authorization" not in up.headers
    assert json.loads(up.body) == {"model": "claude-test", "messages": [{"role": "user", "content": "hi"}],
                                   "max_tokens": 256}


def test_completion_inputs_are_user_messages_with_task_settings():
    a = adapter(TaskType.COMPLETION, {"max_tokens": 64})
    body = body_of(a, ChatRequest(messages=[user("a"), user("b")], stream=True))
    assert body == {"model": "claude-test", "messages": [{"role": "user", "content": "a"},
                                                         {"role": "user", "content": "b"}],
                    "max_tokens": 64, "stream": True}


def test_request_values_win_over_task_settings():
    a = adapter(task_settings={"max_tokens": 64})
    body = body_of(a, ChatRequest(messages=[user("x")], max_tokens=10, stop=["END"], user="u1"))
    assert body["max_tokens"] == 10 and body["stop_sequences"] == ["END"] and body["metadata"] == {"user_id": "u1"}


@pytest.mark.parametrize("request_values, task_settings", [({"temperature": 1.0}, {}), ({"top_p": 0.5}, {}),
                                                           ({}, {"temperature": 0.2}), ({}, {"top_k": 3})])
def test_sampling_parameters_are_refused(request_values, task_settings):
    # platform.claude.com/docs/en/api/migration-2026-10-21: 400 for any of them, even at the default
    a = adapter(task_settings={"max_tokens": 64, **task_settings})
    with pytest.raises(GatewayError, match="2026-10-21"):
        a.chat_request(ChatRequest(messages=[user("x")], **request_values))


def test_vertex_keeps_sampling_parameters():
    a = adapter(task_settings={"max_tokens": 64, "temperature": 0.2, "top_k": 3})
    body = a.body(ChatRequest(messages=[user("x")], top_p=0.5), sampling=True)
    assert body["temperature"] == 0.2 and body["top_p"] == 0.5 and body["top_k"] == 3


def test_max_tokens_is_required():
    with pytest.raises(GatewayError, match="max_tokens"):
        adapter(task_settings={}).chat_request(ChatRequest(messages=[user("x")]))


@pytest.mark.parametrize("field, value", [("seed", 1), ("response_format", {"type": "json_object"})])
def test_unsupported_parameters_are_rejected(field, value):
    with pytest.raises(GatewayError, match=field):
        adapter().chat_request(ChatRequest(messages=[user("x")], **{field: value}))


def test_message_name_is_rejected():
    with pytest.raises(GatewayError, match="messages.name"):
        adapter().chat_request(ChatRequest(messages=[ChatMessage(role="user", content="x", name="bob")]))


def test_system_messages_move_to_the_top():
    body = body_of(adapter(), ChatRequest(messages=[ChatMessage(role="system", content="be brief"), user("x")]))
    assert body["system"] == "be brief" and body["messages"] == [{"role": "user", "content": "x"}]
    body = body_of(adapter(), ChatRequest(messages=[
        ChatMessage(role="system", content="one"),
        ChatMessage(role="developer", content=[{"type": "text", "text": "two"}]), user("x")]))
    assert body["system"] == [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]


def test_tools_tool_choice_and_a_tool_round_trip():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}},
             {"type": "function", "function": {"name": "now"}}]
    messages = [
        user("weather and time?"),
        ChatMessage(role="assistant", content="Checking.", tool_calls=[
            ToolCall(id="toolu_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}')),
            ToolCall(id="toolu_2", function=FunctionCall(name="now", arguments=""))]),
        ChatMessage(role="tool", tool_call_id="toolu_1", content="sunny"),
        ChatMessage(role="tool", tool_call_id="toolu_2", content=[{"type": "text", "text": "noon"}]),
    ]
    body = body_of(adapter(), ChatRequest(messages=messages, tools=tools, tool_choice="required"))
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "any"}
    assert body["messages"] == [
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "noon"}]}]}]


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}), ("none", {"type": "none"}), ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"})])
def test_tool_choice_translation(choice, expected):
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert body_of(adapter(), ChatRequest(messages=[user("x")], tools=tools, tool_choice=choice))["tool_choice"] \
        == expected


def test_strict_tools_pass_and_bad_tool_choice_is_rejected():
    tools = [{"type": "function", "function": {"name": "f", "strict": True}},
             {"type": "function", "function": {"name": "g", "strict": False}}]
    body = body_of(adapter(), ChatRequest(messages=[user("x")], tools=tools, max_tokens=10))
    assert [t.get("strict") for t in body["tools"]] == [True, None]
    with pytest.raises(GatewayError, match="tool_choice"):
        adapter().chat_request(ChatRequest(messages=[user("x")], tool_choice="sometimes"))


def test_images_become_image_blocks():
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    body = body_of(adapter(), ChatRequest(messages=[ChatMessage(role="user", content=content)]))
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]


# ------------------------------------------------------------------------------ responses

RESPONSE = b"""{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant",
"model":"claude-sonnet-4-5","content":[{"type":"text","text":"I'll check."},
{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location":"San Francisco, CA"}}],
"stop_reason":"tool_use","stop_sequence":null,
"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":89}}"""


def test_parse_chat_with_tool_use():
    result = adapter().parse_chat(ChatRequest(messages=[user("x")]), RESPONSE)
    assert result.id == "msg_01XFDUDYJgAACzvnptvVoYEL" and result.model == "claude-sonnet-4-5"
    assert result.content == "I'll check." and result.finish_reason == "tool_calls"
    assert result.tool_calls == [ToolCall(id="toolu_01A09q90qw90lq917835lq9", function=FunctionCall(
        name="get_weather", arguments='{"location":"San Francisco, CA"}'))]
    assert json.loads(result.tool_calls[0].function.arguments) == {"location": "San Francisco, CA"}
    assert result.usage == Usage(prompt_tokens=572, completion_tokens=89, total_tokens=661, cached_tokens=100,
                                 cache_write_tokens=0)


@pytest.mark.parametrize("reason, mapped", [("end_turn", "stop"), ("max_tokens", "length"),
                                            ("stop_sequence", "stop"), ("tool_use", "tool_calls")])
def test_finish_reasons(reason, mapped):
    body = json.dumps({"id": "m", "model": "c", "content": [{"type": "text", "text": "x"}], "stop_reason": reason,
                       "usage": {"input_tokens": 1, "output_tokens": 1}}).encode()
    assert adapter().parse_chat(ChatRequest(messages=[user("x")]), body).finish_reason == mapped


def test_malformed_response_is_502():
    with pytest.raises(UpstreamError) as exc:
        adapter().parse_chat(ChatRequest(messages=[user("x")]), b'{"content": [')
    assert exc.value.status == 502


def test_parse_error_body():
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}'
    err = adapter().parse_error(529, {}, body)
    assert err.message == "Overloaded" and err.type == "overloaded_error"
    assert 529 in AnthropicAdapter.retry_statuses and 429 in AnthropicAdapter.retry_statuses


# ------------------------------------------------------------------------------ streams

STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, l\u00e9t's"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" check ☀"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"Paris\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":null,"stop_sequence":null},"usage":{"output_tokens":40}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

""".encode()


def run_stream(chunks: list[bytes]):
    decoder, parser = SSEDecoder(), AnthropicStreamParser()
    out = []
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            out.extend(parser.feed(frame))
    for frame in decoder.close():
        out.extend(parser.feed(frame))
    out.extend(parser.finish())
    return out


def test_stream_deltas_usage_and_tool_indexes():
    deltas = run_stream([STREAM])
    assert deltas[0].role == "assistant" and deltas[0].id == "msg_014p7gG3wDgGV9EUtLvnow3U"
    assert all(d.id == "msg_014p7gG3wDgGV9EUtLvnow3U" and d.model == "claude-sonnet-4-5" for d in deltas)
    assert "".join(d.content or "" for d in deltas) == "Okay, lét's check ☀"
    calls = [tc for d in deltas for tc in d.tool_calls or []]
    # tool_use blocks are numbered 0, 1 in order, not by their content-block index (1, 2)
    assert [(c.index, c.id, c.function.name) for c in calls if c.id] == [
        (0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"), (1, "toolu_02", "get_time")]
    args0 = "".join(c.function.arguments or "" for c in calls if c.index == 0)
    assert json.loads(args0) == {"location": "Paris"}
    assert "".join(c.function.arguments or "" for c in calls if c.index == 1) == "{}"
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls"]
    usages = [d.usage for d in deltas if d.usage is not None]
    assert usages == [Usage(prompt_tokens=472, completion_tokens=89, total_tokens=561)]  # once, not summed
    assert deltas[-1].usage is not None


def test_stream_split_at_every_byte_boundary_decodes_the_same():
    whole = msgspec.json.encode(run_stream([STREAM]))
    for i in range(1, len(STREAM)):
        assert msgspec.json.encode(run_stream([STREAM[:i], STREAM[i:]])) == whole, i
    assert msgspec.json.encode(run_stream([STREAM[i:i + 1] for i in range(len(STREAM))])) == whole


def test_stream_without_message_stop_is_cut():
    cut = STREAM[:STREAM.index(b"event: message_stop")]
    with pytest.raises(StreamCut):
        run_stream([cut])


def test_in_stream_error_event():
    stream = STREAM[:STREAM.index(b"event: content_block_stop")] + (
        b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n')
    with pytest.raises(UpstreamError) as exc:
        run_stream([stream])
    assert "Overloaded" in exc.value.reason and exc.value.provider_type == "overloaded_error"
    assert not isinstance(exc.value, StreamCut)


def test_usage_without_message_delta_comes_from_message_start():
    stream = b"".join([
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","role":"assistant",'
        b'"content":[],"usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'])
    deltas = run_stream([stream])
    assert [d.usage for d in deltas if d.usage] == [Usage(prompt_tokens=3, completion_tokens=1, total_tokens=4)]


def test_spend_limit_429_is_not_retryable():
    from adapters.anthropic import AnthropicAdapter

    body = (b'{"type":"error","error":{"type":"rate_limit_error","message":"spend limit",'
            b'"details":{"error_code":"enforced_spend_limit_reached"}}}')
    adapter = AnthropicAdapter.__new__(AnthropicAdapter)
    assert adapter.parse_error(429, {}, body).retryable is False
    assert adapter.parse_error(429, {}, b'{"type":"error","error":{"message":"slow down"}}').retryable is None


# ------------------------------------------------------------------------------ reasoning (extended thinking)


def test_reasoning_becomes_extended_thinking_and_thinking_comes_back():
    a = adapter()
    assert body_of(a, ChatRequest(messages=[user("hi")], reasoning={"max_tokens": 2048}))["thinking"] == {
        "type": "enabled", "budget_tokens": 2048}
    assert body_of(a, ChatRequest(messages=[user("hi")], reasoning={"enabled": True}))["thinking"] == {
        "type": "enabled", "budget_tokens": 1024}
    with pytest.raises(GatewayError, match=r"\[reasoning.effort\]"):
        a.chat_request(ChatRequest(messages=[user("hi")], reasoning={"effort": "high"}))
    # docs.claude.com extended thinking: a `thinking` block before the text, `thinking_delta` events in streams
    answer = {"id": "msg_1", "model": "claude-test", "role": "assistant", "stop_reason": "end_turn",
              "content": [{"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
                          {"type": "text", "text": "Hello"}], "usage": {"input_tokens": 3, "output_tokens": 9}}
    result = a.parse_chat(ChatRequest(messages=[user("hi")]), json.dumps(answer).encode())
    assert result.reasoning == "Let me think." and result.content == "Hello"
    parser = AnthropicStreamParser()
    events = [("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "claude-test",
                                                                      "usage": {"input_tokens": 3}}}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "thinking", "thinking": ""}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "signature_delta", "signature": "sig"}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                       "delta": {"type": "text_delta", "text": "Hello"}})]
    deltas = [d for name, data in events for d in parser.feed(SSEEvent(json.dumps(data), name))]
    assert [d.reasoning for d in deltas if d.reasoning] == ["Let me "]
    assert [d.content for d in deltas if d.content] == ["Hello"]


def test_parallel_tool_calls_false_disables_parallel_tool_use():
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = body_of(adapter(), ChatRequest(messages=[user("x")], tools=tools, max_tokens=10, parallel_tool_calls=False))
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    body = body_of(adapter(), ChatRequest(messages=[user("x")], tools=tools, max_tokens=10, parallel_tool_calls=False,
                                          tool_choice="required"))
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    body = body_of(adapter(), ChatRequest(messages=[user("x")], tools=tools, max_tokens=10, parallel_tool_calls=True))
    assert "tool_choice" not in body


def test_response_format_json_schema_becomes_output_config():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "A", "schema": schema, "strict": True}}
    body = body_of(adapter(), ChatRequest(messages=[user("x")], max_tokens=10, response_format=fmt))
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in body_of(adapter(), ChatRequest(messages=[user("x")], max_tokens=10,
                                                                 response_format={"type": "text"}))
    with pytest.raises(GatewayError, match="json_object"):
        adapter().chat_request(ChatRequest(messages=[user("x")], max_tokens=10,
                                            response_format={"type": "json_object"}))


def test_reasoning_effort_becomes_a_thinking_budget():
    body = body_of(adapter(), ChatRequest(messages=[user("x")], max_tokens=10000, reasoning_effort="medium"))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert "thinking" not in body_of(adapter(), ChatRequest(messages=[user("x")], max_tokens=10,
                                                            reasoning_effort="none"))
    with pytest.raises(GatewayError, match="max_tokens"):
        adapter().chat_request(ChatRequest(messages=[user("x")], max_tokens=100, reasoning_effort="low"))


def test_tool_message_name_is_accepted_other_names_refused():
    call = ToolCall(id="t1", function=FunctionCall(name="f", arguments="{}"))
    msgs = [user("x"), ChatMessage(role="assistant", tool_calls=[call]),
            ChatMessage(role="tool", tool_call_id="t1", name="f", content="42")]
    body = body_of(adapter(), ChatRequest(messages=msgs, max_tokens=10))
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}]
    with pytest.raises(GatewayError, match="messages.name"):
        adapter().chat_request(ChatRequest(messages=[ChatMessage(role="user", name="bob", content="x")],
                                            max_tokens=10))


def test_optional_parameters_without_an_equivalent_are_refused_by_name():
    req = ChatRequest(messages=[user("x")], max_tokens=10, logit_bias={"1": 2.0})
    with pytest.raises(GatewayError, match=r"\[logit_bias\]") as exc:
        adapter().check_chat(req)
    assert exc.value.param == "logit_bias"
    with pytest.raises(GatewayError, match=r"\[repetition_penalty\]"):
        adapter().check_chat(ChatRequest(messages=[user("x")], extra={"repetition_penalty": 1.1}))
    adapter().check_chat(ChatRequest(messages=[user("x")], extra={"top_k": 5}, frequency_penalty=0))
    with pytest.raises(GatewayError, match=r"\[top_k\]"):  # mapped, but this API version removed it
        body_of(adapter(), ChatRequest(messages=[user("x")], max_tokens=10, extra={"top_k": 5}))
