"""OpenAI-shaped chat parts (function tools, tool choice, tool-call arguments, content parts) read
once, for the adapters that re-shape them into a provider's own blocks (Anthropic Messages, Bedrock
Converse). Each adapter then writes only its provider's shape."""

from __future__ import annotations

from typing import Any, Callable

import msgspec

from proxy.errors import RequestValidationError
from proxy.types import ToolCall

_any = msgspec.json.Decoder(Any)
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}  # a function without parameters


class FunctionTool(msgspec.Struct, kw_only=True):
    """`{"type": "function", "function": {...}}` of the OpenAI Chat Completions `tools`."""

    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: Any = None

    def schema(self) -> dict[str, Any]:
        return self.parameters or dict(EMPTY_SCHEMA)


class NamedFunction(msgspec.Struct):
    """`tool_choice: {"type": "function", "function": {"name": ...}}`."""

    name: str


def function_tools(tools: list[dict[str, Any]], service: str) -> list[FunctionTool]:
    out = []
    for tool in tools:
        fn = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise RequestValidationError(f"The [{service}] service supports only tools of type [function]")
        out.append(FunctionTool(name=fn.get("name"), description=fn.get("description"),
                                parameters=fn.get("parameters"), strict=fn.get("strict")))
    return out


def tool_choice(choice: str | dict[str, Any]) -> str | NamedFunction:
    """`auto` / `none` / `required` as given, or the named function."""
    if not isinstance(choice, dict):
        return choice
    fn = choice.get("function")
    name = fn.get("name") if isinstance(fn, dict) else None
    if choice.get("type", "function") != "function" or not name:
        raise RequestValidationError("[tool_choice] must name a function: "
                                     "{\"type\": \"function\", \"function\": {\"name\": ...}}")
    return NamedFunction(name)


def tool_arguments(call: ToolCall) -> dict[str, Any]:
    """A past tool call's `arguments` (a JSON string in OpenAI's shape) as the object providers want."""
    args = call.function.arguments
    if not args:
        return {}
    try:
        value = _any.decode(args)
    except msgspec.DecodeError:
        raise RequestValidationError(f"The arguments of tool call [{call.id}] are not valid JSON") from None
    if not isinstance(value, dict):
        raise RequestValidationError(f"The arguments of tool call [{call.id}] must be a JSON object")
    return value


def image_url(part: dict[str, Any]) -> Any:
    """The `url` of an `image_url` part (`{"url": ...}`, or the bare string some clients send)."""
    image = part.get("image_url")
    return image.get("url") if isinstance(image, dict) else image


def data_url(url: str) -> tuple[str, str, bool]:
    """`data:<media type>[;base64],<data>` as (media type, data, whether it says base64)."""
    header, _, data = url.partition(",")
    return header[5:].split(";")[0], data, header.endswith(";base64")


def content_blocks(content: str | list[dict[str, Any]] | None, where: str, service: str,
                   text: Callable[[str], dict[str, Any]], image: Callable[[dict[str, Any]], dict[str, Any]],
                   keep_empty_text: bool) -> list[dict[str, Any]]:
    """Message content as provider blocks: text parts everywhere, image parts in user messages only."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text(content)] if content or keep_empty_text else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append(text(part.get("text", "")))
        elif kind == "image_url" and where == "user":
            blocks.append(image(part))
        else:
            raise RequestValidationError(f"The [{service}] service does not support content parts of type "
                                         f"[{kind}] in [{where}] messages")
    return blocks
