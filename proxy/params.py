"""The common query parameters of every Elasticsearch API: `pretty`, `human`, `error_trace`, `filter_path`.

As ES `AbstractRestChannel` does: `pretty` and `human` are parsed as booleans when the channel is made
(`?pretty` alone is true; anything but true/false is an `illegal_argument_exception`), `pretty` indents
with two spaces, `" : "` between a name and its value and a line feed at the end (`JsonXContentGenerator
.usePrettyPrint`: Jackson's `DefaultPrettyPrinter` with `DefaultIndenter("  ", "\\n")` for objects and
arrays, `lfAtEnd`), and `filter_path` applies to answers, never to errors (`newErrorBuilder` disables
filtering). `filter_path` is a comma-separated list of dotted paths; `*` matches within a name, `**` any
number of levels, a leading `-` excludes (ES `FilterPath`, `FilterPathBasedFilter`); objects and arrays
left empty by filtering are dropped. `human` changes nothing here: no answer carries the byte sizes or
durations it would spell out. `error_trace=true` adds `stack_trace` to errors, holding the error's type
and reason only: the gateway never shows its own (Python) stack.

Only `/_inference`-side JSON answers are touched; `/v1` speaks OpenAI's wire, which has no such parameters.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable

import msgspec
from aiohttp import web

from .errors import GatewayError
from .httputil import bool_param

_MISSING = object()
_encoder = msgspec.json.Encoder()


# ------------------------------------------------------------------------------ filter_path


def _segments(path: str) -> list[str]:
    """`a.b\\.c` -> ["a", "b.c"]: a backslash escapes a dot inside a field name."""
    parts = re.split(r"(?<!\\)\.", path)
    return [p.replace("\\.", ".") for p in parts if p]


def parse_filters(raw: str) -> tuple[list[list[str]], list[list[str]]]:
    includes, excludes = [], []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("-"):
            segs = _segments(item[1:])
            if segs:
                excludes.append(segs)
        else:
            segs = _segments(item)
            if segs:
                includes.append(segs)
    return includes, excludes


_patterns: dict[str, re.Pattern[str]] = {}


def _match(pattern: str, name: str) -> bool:
    """ES `Regex.simpleMatch`: `*` stands for any run of characters."""
    if "*" not in pattern:
        return pattern == name
    rx = _patterns.get(pattern)
    if rx is None:
        rx = _patterns[pattern] = re.compile(".*".join(re.escape(p) for p in pattern.split("*")), re.S)
    return rx.fullmatch(name) is not None


def _step(filters: list[list[str]], key: str) -> tuple[bool, list[list[str]]]:
    """Advance every filter over one field name: (some filter matched it fully, the filters left below it)."""
    full = False
    below: list[list[str]] = []
    for f in filters:
        if f[0] == "**":
            below.append(f)  # `**` takes this level and stays
            rest = f[1:]
            if not rest:
                full = True
            elif _match(rest[0], key):
                if len(rest) == 1:
                    full = True
                else:
                    below.append(rest[1:])
        elif _match(f[0], key):
            if len(f) == 1 or f[1:] == ["**"]:
                full = True
            else:
                below.append(f[1:])
    return full, below


def _include(value: Any, filters: list[list[str]]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            full, below = _step(filters, key)
            if full:
                out[key] = item
            elif below:
                kept = _include(item, below)
                if kept is not _MISSING:
                    out[key] = kept
        return out if out else _MISSING
    if isinstance(value, list):
        items = [kept for item in value if (kept := _include(item, filters)) is not _MISSING]
        return items if items else _MISSING
    return _MISSING  # a value below a path that is not complete yet


def _exclude(value: Any, filters: list[list[str]]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            full, below = _step(filters, key)
            if full:
                continue
            if below and isinstance(item, (dict, list)) and item:
                kept = _exclude(item, below)
                if kept is _MISSING:
                    continue
                item = kept
            out[key] = item
        return out if out or not value else _MISSING
    if isinstance(value, list):
        items = [kept for item in value if (kept := _exclude(item, filters)) is not _MISSING]
        return items if items or not value else _MISSING
    return value


def filter_value(value: Any, includes: list[list[str]], excludes: list[list[str]]) -> Any:
    if includes:
        value = _include(value, includes)
    if excludes and value is not _MISSING:
        value = _exclude(value, excludes)
    return {} if value is _MISSING else value


# ------------------------------------------------------------------------------ pretty


def _pretty(value: Any, level: int, out: list[str]) -> None:
    if isinstance(value, dict):
        if not value:
            out.append("{ }")
            return
        inner = "\n" + "  " * (level + 1)
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," if i else "") + inner + _encoder.encode(key).decode() + " : ")
            _pretty(item, level + 1, out)
        out.append("\n" + "  " * level + "}")
    elif isinstance(value, list):
        if not value:
            out.append("[ ]")
            return
        inner = "\n" + "  " * (level + 1)
        out.append("[")
        for i, item in enumerate(value):
            out.append(("," if i else "") + inner)
            _pretty(item, level + 1, out)
        out.append("\n" + "  " * level + "]")
    else:
        out.append(_encoder.encode(value).decode())


def pretty(value: Any) -> bytes:
    out: list[str] = []
    _pretty(value, 0, out)
    out.append("\n")
    return "".join(out).encode()


# ------------------------------------------------------------------------------ error_trace


def _with_trace(error: Any) -> None:
    if not isinstance(error, dict) or "type" not in error:
        return
    for cause in error.get("root_cause") or ():
        _with_trace(cause)
    _with_trace(error.get("caused_by"))
    error["stack_trace"] = f"{error['type']}: {error.get('reason')}"


# ------------------------------------------------------------------------------ middleware

Render = Callable[[web.Request, GatewayError], web.StreamResponse]


def middleware(render_error: Render) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def common_params(request: web.Request, handler) -> web.StreamResponse:
        if request.path == "/v1" or request.path.startswith("/v1/"):
            return await handler(request)
        query = request.query
        try:
            is_pretty = bool_param(request, "pretty")
            bool_param(request, "human")
            trace = bool_param(request, "error_trace")
        except GatewayError as err:
            return render_error(request, err)
        filters = query.get("filter_path")
        response = await handler(request)
        if not (is_pretty or trace or filters) or type(response) is not web.Response:
            return response
        if response.content_type != "application/json" or not isinstance(response.body, bytes):
            return response
        try:
            value = msgspec.json.decode(response.body)
        except msgspec.DecodeError:
            return response
        changed = False
        if response.status >= 400:
            if trace and isinstance(value, dict):
                _with_trace(value.get("error"))
                changed = True
        elif filters:
            value = filter_value(value, *parse_filters(filters))
            changed = True
        if is_pretty:
            response.body = pretty(value)
        elif changed:
            response.body = _encoder.encode(value)
        return response

    return common_params
