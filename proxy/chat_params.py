"""Chat parameters that not every backend has: each backend says which it maps, the rest are refused.

A client's parameter is mapped or refused by name, never dropped: a model that silently ignores
`logit_bias` or `parallel_tool_calls: false` answers something else than what was asked.
"""

from __future__ import annotations

from typing import Any, Iterable

from .errors import RequestValidationError
from .types import ChatRequest

# ChatRequest fields that are optional to a backend, with the value that asks for nothing (accepted everywhere)
OPTIONAL: dict[str, Any] = {
    "parallel_tool_calls": True, "reasoning_effort": None, "frequency_penalty": 0, "presence_penalty": 0,
    "logit_bias": None, "logprobs": False, "top_logprobs": None,
}


def unsupported(param: str, service: str) -> RequestValidationError:
    return RequestValidationError(f"The [{service}] service does not support the [{param}] parameter", param=param)


def check(req: ChatRequest, service: str, supported: Iterable[str] = (), extra: Iterable[str] | None = ()) -> None:
    """Refuse every optional parameter the backend does not map. `extra`: the names of `req.extra` it
    maps; None when it passes them all on (a backend that speaks OpenAI's format)."""
    names = frozenset(supported)
    for name, noop in OPTIONAL.items():
        if name == "parallel_tool_calls" and not req.tools:
            continue  # without tools there is no call to make in parallel
        value = getattr(req, name)
        if value is not None and value != noop and value != {} and name not in names:
            raise unsupported(name, service)
    if extra is not None:
        allowed = frozenset(extra)
        for name in req.extra:
            if name not in allowed:
                raise unsupported(name, service)
