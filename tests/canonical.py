"""Canonical requests written in tests with OpenAI's plain dicts (tools, tool choice, content parts), typed
as the wire modules type them when they decode a body (proxy/wire)."""

from __future__ import annotations

from typing import TypeVar

import msgspec

R = TypeVar("R")


def typed(req: R) -> R:
    return msgspec.convert(msgspec.to_builtins(req), type(req))
