"""The body of the `embedding` task (ES 9.4+, `POST /_inference/embedding/{id}`) and its conversion.

`input` is a string, a content object, or a list of either (ES `InferenceStringGroup.parse`). A content
object is `{"content": <item> | [<item>, ...]}`: several items in one content give one embedding (9.5).
An item is `{"type": "text" | "image", "format"?: ..., "value": ...}` (ES `InferenceString`: the type and
format names are case-insensitive, `text` takes only format `text`, `image` only `base64`, and the format
defaults to the type's one). Requests are validated as `EmbeddingAction.Request.validate()` does.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..catalogue import Service
from ..errors import IllegalArgumentError, ParseError, RequestValidationError
from ..types import EmbedPart, EmbedRequest, TaskType
from ..validation import check_input_limits, validate_task_settings_override
from .es import _input_type, decode_strict


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    value: str
    format: str | None = None


class _Content(msgspec.Struct, forbid_unknown_fields=True):
    content: _Item | list[_Item]


class EmbeddingBody(msgspec.Struct, forbid_unknown_fields=True):
    input: str | _Content | list[str | _Content] | None = None
    input_type: str | None = None
    task_settings: dict[str, Any] | None = None
    timeout: str | None = None


_decoder = msgspec.json.Decoder(EmbeddingBody)
_FORMATS = {"text": ("text",), "image": ("base64",)}  # InferenceString.supportedFormatsForType


def _field_error(field: str, reason: str) -> ParseError:
    err = ParseError(f"[InferenceString] failed to parse field [{field}]")
    err.caused_by = IllegalArgumentError(reason)  # type: ignore[attr-defined]
    return err


def _part(item: _Item) -> EmbedPart:
    kind = item.type.strip().lower()
    if kind not in _FORMATS:
        raise _field_error("type", f"Unrecognized type [{item.type}], must be one of [text, image]")
    fmt = (item.format or _FORMATS[kind][0]).strip().lower()
    if fmt not in ("text", "base64"):
        raise _field_error("format", f"Unrecognized format [{item.format}], must be one of [text, base64]")
    if fmt not in _FORMATS[kind]:
        raise IllegalArgumentError(f"Data type [{kind}] does not support data format [{fmt}], supported formats "
                                   f"are [{', '.join(_FORMATS[kind])}]")
    return EmbedPart(type=kind, value=item.value)


def decode(body: bytes) -> EmbeddingBody:
    return decode_strict(_decoder, "embedding_request", body)


def groups(body: EmbeddingBody) -> list[list[EmbedPart]]:
    """One list of parts per embedding to produce, after `EmbeddingAction.Request.validate()`."""
    raw = body.input
    if raw is None:
        raise RequestValidationError("Field [inputs] cannot be null")
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise RequestValidationError("Field [inputs] cannot be an empty array")
    out = []
    for item in items:
        if isinstance(item, str):
            out.append([EmbedPart(type="text", value=item)])
        else:
            parts = item.content if isinstance(item.content, list) else [item.content]
            if not parts:
                raise RequestValidationError("Field [content] cannot be an empty array")
            out.append([_part(p) for p in parts])
    return out


def text_only(parsed: list[list[EmbedPart]]) -> list[str] | None:
    """The inputs as plain texts when every embedding is of one text item; None otherwise."""
    if all(len(g) == 1 and g[0].type == "text" for g in parsed):
        return [g[0].value for g in parsed]
    return None



def to_request(raw: bytes, service: Service, max_inputs: int, max_input_chars: int) -> tuple[EmbedRequest, str | None]:
    """An `embedding` body as a canonical request (`contents` set when it holds images or grouped items)
    and the body's `timeout`."""
    body = decode(raw)
    parsed = groups(body)
    overrides = validate_task_settings_override(service, TaskType.EMBEDDING, body.task_settings) \
        if body.task_settings else {}
    input_type = _input_type(body.input_type)
    if input_type is None and overrides.get("input_type"):
        input_type = _input_type(overrides["input_type"])
    texts = text_only(parsed)
    check_input_limits(texts if texts is not None else [p.value for g in parsed for p in g], max_inputs,
                       max_input_chars)
    contents = None
    if texts is None:  # one text per embedding all the same: what counting, batching and caching go by
        texts = [" ".join(p.value for p in g if p.type == "text") for g in parsed]
        contents = parsed
    return EmbedRequest(inputs=texts, input_type=input_type, task_settings=overrides, contents=contents), body.timeout
