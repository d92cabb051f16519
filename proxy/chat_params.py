"""Chat parameters that not every backend has: each backend says which it maps, the rest are refused.

A client's parameter is mapped or refused by name, never dropped: a model that silently ignores
`logit_bias` answers something else than what was asked. `parallel_tool_calls: false` is the exception:
where a backend has no such switch the gateway keeps the answer's first tool call only, which is what the
switch promises a client (`one_tool_call`), so LangChain's `with_structured_output(method="function_calling")`
and the Agents SDK work on every chat endpoint.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterable

from .errors import RequestValidationError
from .types import ChatDelta, ChatRequest, ChatResult

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
        if name == "parallel_tool_calls":
            continue  # mapped by the backend or enforced by the gateway (`one_tool_call`)
        value = getattr(req, name)
        if value is not None and value != noop and value != {} and name not in names:
            raise unsupported(name, service)
    if extra is not None:
        allowed = frozenset(extra)
        for name in req.extra:
            if name not in allowed:
                raise unsupported(name, service)


def one_tool_call(req: ChatRequest) -> bool:
    """Whether the answer may carry one tool call at most. Enforced for every backend: a no-op where the
    provider honoured the switch itself."""
    return req.parallel_tool_calls is False and bool(req.tools)


def first_tool_call(result: ChatResult) -> ChatResult:
    if result.tool_calls and len(result.tool_calls) > 1:
        result.tool_calls = result.tool_calls[:1]
    return result


async def first_tool_call_deltas(deltas: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The stream with the deltas of every tool call after the first left out (by the deltas' `index`).
    Items are deltas or batches of them, as backends yield them."""
    first: int | None = None

    def keep(delta: ChatDelta) -> ChatDelta | None:
        nonlocal first
        if not delta.tool_calls:
            return delta
        if first is None:
            first = delta.tool_calls[0].index
        calls = [c for c in delta.tool_calls if c.index == first]
        if len(calls) == len(delta.tool_calls):
            return delta
        delta.tool_calls = calls or None
        empty = not (calls or delta.content or delta.reasoning or delta.refusal or delta.finish_reason or delta.usage
                     or delta.role)
        return None if empty else delta

    try:
        async for item in deltas:
            if isinstance(item, list):
                batch = [d for d in map(keep, item) if d is not None]
                if batch:
                    yield batch
            else:
                kept = keep(item)
                if kept is not None:
                    yield kept
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
