"""The OpenAI Responses API as the gateway speaks it on `/v1/responses`: request bodies and input items to
canonical requests, canonical answers and deltas to `response` objects and typed stream events.

Written from the official `openai` SDK's types (3.63: `ResponseCreateParams`, `Response`,
`ResponseUsage`, `ResponseStreamEvent` and the item types), which the SDK and openai-agents parse.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from ..errors import GatewayError, RequestValidationError
from ..types import (ChatDelta, ChatMessage, ChatRequest, ChatResult, ContentPart, FilePart, FileRef, FunctionCall,
                     FunctionDef, FunctionName, ImagePart, ImageURL, NamedToolChoice, TextPart, Tool, ToolCall,
                     ToolChoice, Usage)
from . import openai as openai_wire
from . import FrameByFrame

_encoder = msgspec.json.Encoder()


class ReasoningBody(msgspec.Struct, kw_only=True):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class TextBody(msgspec.Struct, kw_only=True):
    format: dict[str, Any] | None = None
    verbosity: str | None = None


class ResponsesBody(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: int | None = None
    stream: bool = False
    store: bool = True  # the Responses API keeps responses unless told not to
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    text: TextBody | None = None
    reasoning: ReasoningBody | None = None
    user: str | None = None
    truncation: str | None = None
    include: list[str] | None = None
    stream_options: dict[str, Any] | None = None


# Responses parameters no canonical request can carry: refused unless set to their no-op value
UNSUPPORTED: dict[str, Any] = {"background": False, "conversation": None, "prompt": None, "max_tool_calls": None}


def _bad(message: str, param: str | None = None) -> RequestValidationError:
    return RequestValidationError(message, param=param)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# ------------------------------------------------------------------------------ requests


def _part(part: dict[str, Any]) -> ContentPart:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return TextPart(text=str(part.get("text", "")))
    if kind == "refusal":
        return TextPart(text=str(part.get("refusal", "")))
    if kind == "input_image":
        if not part.get("image_url"):
            raise _bad("input_image: only [image_url] images are supported by this gateway (no file ids)",
                       param="input")
        detail = part.get("detail")
        return ImagePart(image_url=ImageURL(url=str(part["image_url"]),
                                            detail=str(detail) if detail and detail != "auto" else None))
    if kind == "input_file" and part.get("file_data"):
        return FilePart(file=FileRef(file_data=str(part["file_data"]), filename=part.get("filename")))
    raise _bad(f"Input content of type [{kind}] is not supported by this gateway", param="input")


def _content(content: Any) -> str | list[ContentPart]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("A message's content must be a string or a list of content parts", param="input")
    parts = [_part(p) for p in content]
    texts = [p.text for p in parts if isinstance(p, TextPart)]
    return "".join(texts) if len(texts) == len(parts) else parts


def input_messages(items: str | list[dict[str, Any]]) -> list[ChatMessage]:
    """Input items as canonical messages: function calls join the assistant turn they belong to,
    their outputs become tool messages."""
    if isinstance(items, str):
        return [ChatMessage(role="user", content=items)]
    out: list[ChatMessage] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"Input messages cannot have the role [{role}]", param="input")
            out.append(ChatMessage(role=role, content=_content(item.get("content", ""))))
        elif kind == "function_call":
            call = ToolCall(id=item.get("call_id"), function=FunctionCall(name=item.get("name"),
                                                                          arguments=item.get("arguments") or "{}"))
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and isinstance(last.content, (str, type(None))):
                out[-1] = msgspec.structs.replace(last, tool_calls=[*(last.tool_calls or []), call])
            else:
                out.append(ChatMessage(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            output = item.get("output")
            out.append(ChatMessage(role="tool", tool_call_id=item.get("call_id"),
                                   content=output if isinstance(output, str) else _content(output or "")))
        elif kind == "reasoning":
            continue  # the model's own earlier reasoning: no provider takes it back through a chat request
        else:
            raise _bad(f"Input items of type [{kind}] are not supported by this gateway", param="input")
    return out


def _item_parts(role: str, content: Any) -> list[dict[str, Any]]:
    """A message's content as the parts a listed item carries: the input types for user, system and
    developer messages (`ResponseInputMessageItem`), output text for the assistant's (`ResponseOutputMessage`)."""
    parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else content
    out = []
    for part in parts:
        if part.get("type") in ("input_text", "output_text", "text"):
            part = ({"type": "output_text", "text": part.get("text", ""), "annotations": part.get("annotations") or [],
                     "logprobs": part.get("logprobs") or []} if role == "assistant"
                    else {"type": "input_text", "text": part.get("text", "")})
        elif part.get("type") == "input_image":
            part = {"detail": "auto", **part}
        out.append(part)
    return out


def input_items(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A request's input as `GET /v1/responses/{id}/input_items` lists it: every item with an id (the
    client's, else a new one) and a status, message content as typed parts. Called after
    `input_messages` accepted the same input."""
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    out = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = item["role"]
            out.append({"type": "message", "id": item.get("id") or new_id("msg"), "role": role,
                        "status": item.get("status") or "completed",
                        "content": _item_parts(role, item.get("content", ""))})
        elif kind == "function_call":
            out.append(call_item(item.get("id") or new_id("fc"), item.get("call_id") or "", item.get("name"),
                                 item.get("arguments") or "{}", item.get("status") or "completed"))
        elif kind == "function_call_output":
            out.append({"type": "function_call_output", "id": item.get("id") or new_id("fco"),
                        "call_id": item.get("call_id"), "output": item.get("output") or "",
                        "status": item.get("status") or "completed"})
        else:  # reasoning: kept as given
            out.append({"summary": [], **item, "id": item.get("id") or new_id("rs")})
    return out


# `include` values that concern listed input items; the others name items no gateway response has
ITEM_INCLUDES = frozenset({"message.input_image.image_url", "message.output_text.logprobs"})


def _shown(item: dict[str, Any], include: frozenset[str]) -> dict[str, Any]:
    """Image URLs and logprobs are listed only when `include` asks for them, as OpenAI's API reference says
    (`ResponseIncludable`)."""
    if item["type"] != "message":
        return item
    parts = []
    for part in item["content"]:
        if part.get("type") == "input_image" and "message.input_image.image_url" not in include:
            part = {**part, "image_url": None}
        elif part.get("type") == "output_text" and "message.output_text.logprobs" not in include:
            part = {**part, "logprobs": []}
        parts.append(part)
    return {**item, "content": parts}


def item_list(items: list[dict[str, Any]], *, order: str, limit: int, after: str | None, before: str | None,
              include: frozenset[str]) -> dict[str, Any]:
    """One page of a response's input items (`ResponseItemList`): `order` over the conversation's own order,
    `after`/`before` item ids of that ordering, exclusive."""
    ordered = items if order == "asc" else items[::-1]
    ids = [item["id"] for item in ordered]
    start, end = 0, len(ordered)
    for cursor, param in ((after, "after"), (before, "before")):
        if cursor is not None and cursor not in ids:
            raise _bad(f"No input item with id '{cursor}' in this response", param=param)
    if after is not None:
        start = ids.index(after) + 1
    if before is not None:
        end = ids.index(before)
    page = ordered[start:end][:limit]
    return {"object": "list", "data": [_shown(item, include) for item in page],
            "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
            "has_more": start + len(page) < end}


def _tools(tools: list[dict[str, Any]] | None) -> list[Tool] | None:
    if not tools:
        return None
    out = []
    for tool in tools:
        if tool.get("type") != "function":
            raise _bad(f"Tools of type [{tool.get('type')}] (hosted tools) are not supported by this gateway; "
                       f"function tools are", param="tools")
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        try:
            out.append(Tool(function=msgspec.convert(fn, FunctionDef)))
        except msgspec.ValidationError as exc:
            raise _bad(f"tools: {exc}", param="tools") from None
    return out


def _tool_choice(choice: str | dict[str, Any] | None) -> ToolChoice | None:
    if choice is None or isinstance(choice, str):
        return choice
    if choice.get("type") == "function":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("tool_choice: a choice of type [function] needs a [name]", param="tool_choice")
        return NamedToolChoice(function=FunctionName(name=name))
    raise _bad(f"tool_choice of type [{choice.get('type')}] is not supported by this gateway", param="tool_choice")


def _response_format(text: TextBody | None) -> dict[str, Any] | None:
    fmt = text.format if text else None
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad(f"text.format of type [{fmt.get('type')}] is not supported", param="text.format")


def chat_request(body: ResponsesBody, history: list[ChatMessage], extra: dict[str, Any]) -> ChatRequest:
    """`history`: the stored conversation of `previous_response_id` (without its instructions, which
    the Responses API does not carry over)."""
    if body.include:
        raise _bad(f"include: [{', '.join(body.include)}] cannot be produced by this gateway", param="include")
    if body.truncation not in (None, "disabled"):
        raise _bad("truncation: only [disabled] is supported by this gateway", param="truncation")
    if body.reasoning and (body.reasoning.summary or body.reasoning.generate_summary):
        raise _bad("reasoning.summary: reasoning summaries are not relayed by this gateway", param="reasoning")
    messages = list(history) + input_messages(body.input)
    if body.instructions:
        messages.insert(0, ChatMessage(role="system", content=body.instructions))
    if text := body.text:
        if text.verbosity is not None:
            extra = {**extra, "verbosity": text.verbosity}
    return ChatRequest(messages=messages, max_tokens=body.max_output_tokens, temperature=body.temperature,
                       top_p=body.top_p, tools=_tools(body.tools), tool_choice=_tool_choice(body.tool_choice),
                       parallel_tool_calls=body.parallel_tool_calls, response_format=_response_format(body.text),
                       reasoning_effort=body.reasoning.effort if body.reasoning else None,
                       logprobs=True if body.top_logprobs else None, top_logprobs=body.top_logprobs,
                       user=body.user, stream=body.stream, extra=extra)


# ------------------------------------------------------------------------------ answers


def usage_object(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0,
                                     "cache_write_tokens": usage.cache_write_tokens or 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
            "total_tokens": usage.total_tokens}


def _status(finish: str | None) -> tuple[str, dict[str, Any] | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def logprob_list(raw: msgspec.Raw | None) -> list[Any]:
    """Chat Completions `choices[].logprobs.content` entries, which have the Responses API's shape."""
    if raw is None:
        return []
    value = msgspec.json.decode(raw)
    return (value.get("content") if isinstance(value, dict) else None) or []


def message_item(item_id: str, text: str, status: str, logprobs: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}]}


def call_item(item_id: str, call_id: str, name: str | None, arguments: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name or "", "arguments": arguments,
            "status": status}


class Envelope:
    """What every `response` object of one request repeats: the request's settings as the API echoes them."""

    def __init__(self, body: ResponsesBody) -> None:
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.body = body

    def response(self, status: str, output: list[dict[str, Any]], usage: Usage | None = None,
                 incomplete: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
        b = self.body
        tools = [{"strict": None, **t} for t in b.tools or ()]
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "model": b.model, "output": output, "error": error, "incomplete_details": incomplete,
                "instructions": b.instructions, "max_output_tokens": b.max_output_tokens,
                "parallel_tool_calls": b.parallel_tool_calls is not False, "previous_response_id":
                b.previous_response_id, "reasoning": msgspec.to_builtins(b.reasoning) if b.reasoning else None,
                "store": b.store, "temperature": b.temperature, "top_p": b.top_p,
                "text": msgspec.to_builtins(b.text) if b.text else {"format": {"type": "text"}},
                "tool_choice": b.tool_choice or "auto", "tools": tools, "truncation": b.truncation or "disabled",
                "metadata": b.metadata or {}, "user": b.user, "usage": usage_object(usage)}


def output_items(result: ChatResult) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if result.content:
        items.append(message_item(new_id("msg"), result.content, "completed", logprob_list(result.logprobs)))
    for call in result.tool_calls or ():
        items.append(call_item(new_id("fc"), call.id or new_id("call"), call.function.name,
                               call.function.arguments or "", "completed"))
    return items


def render(envelope: Envelope, result: ChatResult) -> dict[str, Any]:
    status, incomplete = _status(result.finish_reason)
    return envelope.response(status, output_items(result), result.usage, incomplete)


# ------------------------------------------------------------------------------ stream events


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encoder.encode({"type": kind, **data}) + b"\n\n"


class StreamWriter(FrameByFrame):
    """Canonical deltas to the Responses API's typed events. Each output item (the text message, each
    function call) opens, streams and closes in turn; `response.completed` carries the whole response."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.seq = 0
        self.started = False
        self.output: list[dict[str, Any]] = []  # finished items
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.text: list[str] = []
        self.logprobs: list[Any] = []
        self.calls: dict[int, dict[str, Any]] = {}  # canonical tool-call index -> its item
        self.finish: str | None = None
        self.usage: Usage | None = None

    def _ev(self, kind: str, data: dict[str, Any]) -> bytes:
        out = _event(kind, {**data, "sequence_number": self.seq})
        self.seq += 1
        return out

    def _start(self) -> bytes:
        self.started = True
        snapshot = self.envelope.response("in_progress", [])
        return self._ev("response.created", {"response": snapshot}) + self._ev("response.in_progress",
                                                                              {"response": snapshot})

    def _finished(self, item: dict[str, Any]) -> dict[str, Any]:
        if item["type"] == "message":
            return message_item(item["id"], "".join(self.text), "completed", self.logprobs)
        return {**item, "status": "completed"}

    def _close(self) -> bytes:
        item = self.open
        if item is None:
            return b""
        done = self._finished(item)
        self.open = None
        index = len(self.output)
        if item["type"] == "message":
            text = done["content"][0]["text"]
            self.text, self.logprobs = [], []
            out = self._ev("response.output_text.done", {"item_id": item["id"], "output_index": index,
                                                         "content_index": 0, "text": text,
                                                         "logprobs": done["content"][0]["logprobs"]})
            out += self._ev("response.content_part.done", {"item_id": item["id"], "output_index": index,
                                                           "content_index": 0, "part": done["content"][0]})
        else:
            out = self._ev("response.function_call_arguments.done", {"item_id": item["id"], "output_index": index,
                                                                     "name": item["name"],
                                                                     "arguments": item["arguments"]})
        self.output.append(done)
        return out + self._ev("response.output_item.done", {"output_index": index, "item": done})

    def final(self) -> dict[str, Any]:
        """The response as `response.completed` will carry it (known once the upstream has finished)."""
        output = self.output + ([self._finished(self.open)] if self.open is not None else [])
        status, incomplete = _status(self.finish)
        return self.envelope.response(status, output, self.usage, incomplete)

    def frame(self, delta: ChatDelta) -> bytes | None:
        out = b"" if self.started else self._start()
        if delta.content:
            if self.open is None or self.open["type"] != "message":
                out += self._close()
                self.open = message_item(new_id("msg"), "", "in_progress")
                self.open["content"] = []
                index = len(self.output)
                out += self._ev("response.output_item.added", {"output_index": index, "item": self.open})
                out += self._ev("response.content_part.added", {
                    "item_id": self.open["id"], "output_index": index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
            self.text.append(delta.content)
            logprobs = logprob_list(delta.logprobs)
            self.logprobs.extend(logprobs)
            out += self._ev("response.output_text.delta", {"item_id": self.open["id"], "output_index": len(self.output),
                                                           "content_index": 0, "delta": delta.content,
                                                           "logprobs": logprobs})
        for call in delta.tool_calls or ():
            fn = call.function
            item = self.calls.get(call.index)
            if item is None:
                out += self._close()
                item = call_item(new_id("fc"), call.id or new_id("call"), fn.name if fn else None, "", "in_progress")
                self.calls[call.index] = self.open = item
                out += self._ev("response.output_item.added", {"output_index": len(self.output), "item": item})
            if fn is not None and fn.arguments:
                item["arguments"] += fn.arguments
                out += self._ev("response.function_call_arguments.delta", {
                    "item_id": item["id"], "output_index": len(self.output), "delta": fn.arguments})
        if delta.finish_reason is not None:
            self.finish = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage
        return out or None

    def done(self) -> bytes:
        out = (b"" if self.started else self._start()) + self._close()
        final = self.final()
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        return out + self._ev(kind, {"response": final})

    def error(self, err: GatewayError) -> bytes:
        body = openai_wire.error_body(err)["error"]
        failed = self.envelope.response("failed", self.output, self.usage,
                                        error={"code": body["code"] or "server_error", "message": body["message"]})
        return (self._ev("error", {"code": body["code"], "message": body["message"], "param": body["param"]})
                + self._ev("response.failed", {"response": failed}))


def encode(value: Any) -> bytes:
    return _encoder.encode(value)
