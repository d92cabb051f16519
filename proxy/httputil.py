"""Small HTTP helpers shared by the routes: JSON bodies, query parameters, time values."""

from __future__ import annotations

import asyncio
import re
from array import array
from itertools import accumulate
from typing import Any, Iterable

import msgspec
from aiohttp import web

from . import appkeys
from .errors import GatewayError, IllegalArgumentError, ParseError, StatusError
from .timevalue import parse_time

JSON_TYPES = ("application/json", "application/vnd.elasticsearch+json", "application/x-ndjson")
_GENERIC_PARAMS = frozenset({"error_trace", "filter_path", "human", "pretty"})


_encoder = msgspec.json.Encoder()


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(payload), status=status, content_type="application/json")


class UnsupportedMediaType(GatewayError):
    """ES answers this one in its simple form, `{"error": "<reason>", "status": 406}` (RestController)."""

    status = 406
    es_type = "media_type_exception"
    simple = True


def check_content_type(request: web.Request) -> None:
    ctype = request.headers.get("Content-Type")
    if ctype and ctype.split(";")[0].strip().lower() not in JSON_TYPES:
        raise UnsupportedMediaType(f"Content-Type header [{ctype}] is not supported")


async def read_body(request: web.Request) -> bytes:
    check_content_type(request)
    return await read_raw(request)


async def read_raw(request: web.Request) -> bytes:
    """The body, within the client read timeout: a client that trickles its body cannot pin a handler.
    `body_first` has normally read it already (aiohttp keeps it), so this returns at once."""
    if request.content.is_eof():  # the usual case for small bodies: already received, no timer needed
        return await request.read()
    timeout = request.app[appkeys.SETTINGS].client_read_timeout
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise StatusError(f"The request body did not arrive within [{timeout:g}s]", status=408) from None


@web.middleware
async def body_first(request: web.Request, handler) -> web.StreamResponse:
    """Receive the whole body, within `client_read_timeout`, before the request takes an in-flight
    slot: clients that send headers and then trickle their bodies must not hold the slots meant for
    work (the admission middleware runs after this one). Bodies nested deeper than `max_json_depth`
    are refused here, before any decoder or validator recurses into them."""
    if request.body_exists:
        check_depth(await read_raw(request), request.app[appkeys.SETTINGS].max_json_depth)
    return await handler(request)


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def check_depth(body: bytes, limit: int) -> None:
    """Refuse JSON nested deeper than `limit` arrays and objects (the decoders recurse, so a body
    nested 100,000 deep would otherwise raise RecursionError). Counting brackets is enough for
    almost every body; only one with more brackets than the limit is scanned, strings left out."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return
    steps = array("b", _STRING.sub(b"", body).translate(_STEP, _NOT_BRACKETS))  # +1 per opening, -1 per closing
    deepest = max(accumulate(steps), default=0)
    if deepest > limit:
        raise ParseError(f"Document nesting depth ({deepest}) exceeds the maximum allowed ({limit})")


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # as signed bytes: +1, +1, -1, -1


async def read_object(request: web.Request) -> dict[str, Any]:
    body = await read_body(request)
    if not body.strip():
        raise ParseError("request body is required")
    try:
        value = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # invalid UTF-8 in a string is a client error too
        raise ParseError(f"Failed to parse request body: {exc}") from None
    if not isinstance(value, dict):
        raise ParseError("request body must be a JSON object")
    return value


def check_params(request: web.Request, allowed: Iterable[str]) -> None:
    """ES rejects query parameters a route does not know."""
    allowed_set = _GENERIC_PARAMS.union(allowed)
    unknown = sorted(k for k in request.query if k not in allowed_set)
    if unknown:
        noun = "parameter" if len(unknown) == 1 else "parameters"
        raise IllegalArgumentError(f"request [{request.path}] contains unrecognized {noun}: "
                                   f"[{', '.join(unknown)}]")


def bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "true" or raw == "":
        return raw is not None
    if raw == "false":
        return False
    raise IllegalArgumentError(f"Failed to parse value [{raw}] as only [true] or [false] are allowed.")


def check_timeout_param(request: web.Request) -> None:
    raw = request.query.get("timeout")
    if raw is not None:
        parse_time(raw)
