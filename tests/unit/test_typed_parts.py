"""Tools, tool choice and content parts are typed once, where a surface decodes the body (proxy/wire), and an
OpenAI-shaped upstream still gets them exactly as the client wrote them. The bodies are written from OpenAI's
Chat Completions reference (platform.openai.com/docs/api-reference/chat/create) and ES's
`UnifiedCompletionRequest`."""

from __future__ import annotations

import json
from types import SimpleNamespace

import msgspec
import pytest

from adapters.openai_compat import OpenAIAdapter
from proxy.errors import GatewayError, ParseError
from proxy.types import (AudioPart, FilePart, ImagePart, NamedToolChoice, RefusalPart, TaskType, TextPart, Tool,
                         part_type)
from proxy.wire import anthropic as anthropic_wire
from proxy.wire import es as es_wire
from proxy.wire import openai as openai_wire

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                                           "strict": True}},
         {"type": "function", "function": {"name": "get_time"}}]
MESSAGES = [
    {"role": "user", "content": [
        {"type": "text", "text": "What is on these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
        {"type": "image_url", "image_url": "data:image/png;base64,AAA="},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-1"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"}}]},
    {"role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot."}]},
]
CHOICE = {"type": "function", "function": {"name": "get_weather"}}


def _openai_request(**fields):
    body = {"model": "gpt-test", "messages": MESSAGES, "tools": TOOLS, "tool_choice": CHOICE, **fields}
    parsed, extra = openai_wire.decode_with_extra(json.dumps(body).encode(), openai_wire.ChatBody)
    return openai_wire.to_chat_request(parsed, extra)


def test_the_openai_surface_types_tools_choice_and_parts():
    req = _openai_request()
    assert [type(t) for t in req.tools] == [Tool, Tool] and req.tools[0].function.strict is True
    assert isinstance(req.tool_choice, NamedToolChoice) and req.tool_choice.function.name == "get_weather"
    parts = req.messages[0].content
    assert [type(p) for p in parts] == [TextPart, ImagePart, ImagePart, AudioPart, FilePart, FilePart]
    assert [p.url for p in parts[1:3]] == ["https://example.com/a.png", "data:image/png;base64,AAA="]
    assert [part_type(p) for p in parts] == ["text", "image_url", "image_url", "input_audio", "file", "file"]
    assert isinstance(req.messages[1].content[0], RefusalPart)


def test_an_openai_upstream_gets_the_tools_and_parts_as_written():
    ep = SimpleNamespace(inference_id="ep", task_type=TaskType.CHAT_COMPLETION, service="openai",
                         service_settings={"model_id": "gpt-test"}, task_settings={}, secrets={"api_key": "k"})
    sent = json.loads(OpenAIAdapter(ep).chat_request(_openai_request()).body)
    assert sent["tools"] == TOOLS and sent["tool_choice"] == CHOICE and sent["messages"] == MESSAGES
    legacy = _openai_request(tools=None, tool_choice=None, functions=[TOOLS[1]["function"]],
                             function_call={"name": "get_time"})
    sent = json.loads(OpenAIAdapter(ep).chat_request(legacy).body)
    assert sent["tools"] == [TOOLS[1]] and sent["tool_choice"] == {"type": "function",
                                                                   "function": {"name": "get_time"}}


@pytest.mark.parametrize("field, value", [
    ("tools", [{"type": "retrieval"}]),  # not a function tool
    ("tools", [{"type": "function", "function": {"description": "no name"}}]),
    ("tool_choice", {"type": "function", "function": {}}),
    ("messages", [{"role": "user", "content": [{"type": "video", "video": "x"}]}]),
    ("messages", [{"role": "user", "content": [{"type": "image_url"}]}]),
])
def test_parts_providers_cannot_take_are_openai_errors(field, value):
    with pytest.raises(openai_wire.InvalidRequest, match="Invalid request") as exc:
        _openai_request(**{field: value})
    assert exc.value.status == 400 and exc.value.param.startswith(field)


def test_the_es_surface_types_them_and_refuses_others_in_es_words():
    body = {"messages": MESSAGES[:1], "tools": TOOLS, "tool_choice": CHOICE}
    req = es_wire.to_chat_request(es_wire.decode_chat(json.dumps(body).encode()), stream=False)
    assert isinstance(req.tools[0], Tool) and isinstance(req.tool_choice, NamedToolChoice)
    assert isinstance(req.messages[0].content[1], ImagePart)
    with pytest.raises(ParseError, match=r"\[UnifiedCompletionRequest\] tools doesn't support values of type"):
        es_wire.decode_chat(json.dumps({**body, "tools": [{"type": "retrieval"}]}).encode())


def test_the_anthropic_surface_converts_to_the_typed_shapes():
    body = anthropic_wire.decode(json.dumps({
        "model": "m", "max_tokens": 5, "tools": [{"name": "get_time", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get_time"},
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA="}}]}],
    }).encode(), anthropic_wire.MessagesBody)
    req = anthropic_wire.chat_request(body)
    assert req.tools == [Tool(function=openai_wire.FunctionDef(name="get_time", parameters={"type": "object"}))]
    assert req.tool_choice.function.name == "get_time"
    assert [part_type(p) for p in req.messages[0].content] == ["text", "image_url"]
    assert req.messages[0].content[1].url == "data:image/png;base64,AAA="
    nameless = msgspec.structs.replace(body, tool_choice={"type": "tool"})
    with pytest.raises(GatewayError, match=r"tool_choice: a choice of type \[tool\] needs a \[name\]"):
        anthropic_wire.chat_request(nameless)
