"""What the adapters that re-shape OpenAI's chat parts into a provider's own blocks (Anthropic Messages,
Bedrock Converse) share: function schemas, tool-call arguments, data URLs and content blocks. Each
adapter then writes only its provider's shape."""

from __future__ import annotations

from typing import Any, Callable

import msgspec

from proxy.errors import RequestValidationError
from proxy.types import ContentPart, FunctionDef, ImagePart, TextPart, ToolCall, part_type

_any = msgspec.json.Decoder(Any)
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}  # a function without parameters


def schema(fn: FunctionDef) -> dict[str, Any]:
    """A function's parameters schema; providers that require one get an empty object schema."""
    return fn.parameters or dict(EMPTY_SCHEMA)


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


def data_url(url: str) -> tuple[str, str, bool]:
    """`data:<media type>[;base64],<data>` as (media type, data, whether it says base64)."""
    header, _, data = url.partition(",")
    return header[5:].split(";")[0], data, header.endswith(";base64")


def content_blocks(content: str | list[ContentPart] | None, where: str, service: str,
                   text: Callable[[str], dict[str, Any]], image: Callable[[ImagePart], dict[str, Any]],
                   keep_empty_text: bool) -> list[dict[str, Any]]:
    """Message content as provider blocks: text parts everywhere, image parts in user messages only."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text(content)] if content or keep_empty_text else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            blocks.append(text(part.text))
        elif isinstance(part, ImagePart) and where == "user":
            blocks.append(image(part))
        else:
            raise RequestValidationError(f"The [{service}] service does not support content parts of type "
                                         f"[{part_type(part)}] in [{where}] messages")
    return blocks
