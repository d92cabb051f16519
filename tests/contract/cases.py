"""The contract cases, as data: per service and task, the SDK call, the reply and the accepted differences.

A case's `call(url, params)` drives the provider's official SDK against the capture server with the
canonical `params` (the same ones the gateway request is built from) and returns what the SDK parsed;
`reply(params)` builds the answer from the SDK's own response types; `answer(result)` reduces the SDK's
parsed result to the form `test_contract.gateway_answer` reduces the gateway's answer to. Accepted
differences (`ignore_*`) map a name to its reason.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from .capture import Captured, Reply, sse

KEY = "contract-key-0123"
TEXTS = ["alpha text", "beta text"]
VECTORS = [[0.25, -0.5, 0.125], [1.0, 0.0, -0.75]]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]
CHAT = {"messages": MESSAGES, "max_tokens": 64, "temperature": 0.25, "top_p": 0.5, "stop": ["END"],
        "tools": TOOLS, "tool_choice": "auto", "seed": 7, "user": "u-1"}
COMPLETION = {"input": "Say hi", "max_tokens": 32, "temperature": 0.5}
EMBED = {"input": TEXTS}
RERANK = {"query": "which one?", "documents": ["doc zero", "doc one", "doc two"], "top_n": 2,
          "return_documents": False}


@dataclass
class Case:
    service: str
    task: str
    sdk: str  # the distribution that is the oracle
    call: Callable[[str, dict], Any]
    reply: Callable[[dict], Reply]
    answer: Callable[[Any], Any]
    settings: dict[str, Any]
    params: dict[str, Any]
    stream: bool = False
    task_settings: dict[str, Any] = field(default_factory=dict)
    surfaces: tuple[str, ...] = ("es", "v1")
    ignore_body: dict[str, str] = field(default_factory=dict)
    ignore_headers: dict[str, str] = field(default_factory=dict)
    ignore_query: dict[str, str] = field(default_factory=dict)
    verify: Callable[[Captured, Captured, dict], list[str]] | None = None
    modules: tuple[str, ...] = ()  # imported to tell whether the SDK is there

    @property
    def id(self) -> str:
        return f"{self.service}-{self.task}{'-stream' if self.stream else ''}"

    def unavailable(self) -> str | None:
        for name in self.modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # an SDK that does not import here: the case says why it skips
                return f"the {self.sdk} SDK cannot be imported here ({type(exc).__name__}: {exc})"
        return None


# ------------------------------------------------------------------------------ OpenAI and its family


def _openai_client(url: str, **kw):
    import openai
    return openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, **kw)


def _openai_kwargs(params: dict, max_tokens_field: str, stream_usage: bool) -> dict:
    kw = {k: params[k] for k in ("messages", "temperature", "top_p", "stop", "tools", "tool_choice", "seed", "user",
                                 "response_format") if k in params}
    if "input" in params:  # the completion task: one user message
        kw["messages"] = [{"role": "user", "content": params["input"]}]
    if "max_tokens" in params:
        kw[max_tokens_field] = params["max_tokens"]
    if params.get("stream"):
        kw["stream"] = True
        if stream_usage:
            kw["stream_options"] = {"include_usage": True}
    return kw


def openai_chat(base: str, *, max_tokens_field: str = "max_completion_tokens", stream_usage: bool = True,
                client: Callable[[str], Any] | None = None, **extra):
    """An OpenAI chat.completions.create call at `base` (relative to the capture URL)."""
    def call(url: str, params: dict):
        c = (client or (lambda u: _openai_client(u)))(url + base)
        kw = _openai_kwargs(params, max_tokens_field, stream_usage)
        if kw.get("stream"):
            return list(c.chat.completions.create(model=params.get("model", "m-1"), **kw, **extra))
        return c.chat.completions.create(model=params.get("model", "m-1"), **kw, **extra)
    return call


def openai_embed(base: str, *, client: Callable[[str], Any] | None = None, **extra):
    def call(url: str, params: dict):
        c = (client or (lambda u: _openai_client(u)))(url + base)
        kw = {k: params[k] for k in ("dimensions", "user") if k in params}
        return c.embeddings.create(model=params.get("model", "m-1"), input=params["input"], encoding_format="float",
                                   **kw, **extra)
    return call


def sdk_type(path: str):
    """`"package.module:Name"` to the SDK's class, imported when a case runs."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def dump(path: str, data: dict) -> str:
    """`data` validated by the SDK's own response type, serialised as the provider sends it."""
    return sdk_type(path).model_validate(data).model_dump_json(by_alias=True, exclude_unset=True)


USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}


def chat_reply(completion: str = "openai.types.chat:ChatCompletion",
               chunk: str = "openai.types.chat:ChatCompletionChunk", usage_in_last: bool = False):
    """An OpenAI-shaped chat answer (text, and a tool call when the request had tools), in the SDK's types;
    streamed as `data:` events ending with `[DONE]`, usage in its own last chunk or in the finishing one."""
    def reply(params: dict) -> Reply:
        tools = "tools" in params
        head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m-1"}
        if params.get("stream"):
            deltas = [{"role": "assistant", "content": "Sun"}, {"content": "ny."}]
            if tools:
                deltas += [{"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                            "function": {"name": "get_weather", "arguments": "{\"city\":"}}]},
                           {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}]
            events = [{**head, "choices": [{"index": 0, "delta": d}]} for d in deltas]
            last = {**head, "choices": [{"index": 0, "delta": {"content": ""} if usage_in_last else {},
                                         "finish_reason": "tool_calls" if tools else "stop"}]}
            if usage_in_last:
                last["usage"] = USAGE
            events.append(last)
            if not usage_in_last:
                events.append({**head, "choices": [], "usage": USAGE})
            return Reply(sse([dump(chunk, e) for e in events], done=True), content_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": "Sunny."}
        if tools:
            message["tool_calls"] = [{"id": "call_1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
        obj = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m-1",
               "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tools else "stop"}],
               "usage": USAGE}
        return Reply(dump(completion, obj).encode())
    return reply


openai_chat_reply = chat_reply()


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def openai_chat_answer(result: Any) -> dict:
    if isinstance(result, list):  # stream chunks (or events that carry them in `data`)
        text, calls = "", {}
        for event in result:
            for choice in getattr(event, "data", event).choices:
                text += choice.delta.content or ""
                for call in choice.delta.tool_calls or []:
                    slot = calls.setdefault(call.index or 0, ["", ""])
                    slot[0] += (call.function.name or "") if call.function else ""
                    slot[1] += _arguments(call.function.arguments or "") if call.function else ""
        return {"text": text, "tools": [tuple(v) for _, v in sorted(calls.items())]}
    msg = result.choices[0].message
    return {"text": msg.content or "",
            "tools": [(c.function.name, _arguments(c.function.arguments)) for c in msg.tool_calls or []]}


def openai_embed_reply(params: dict) -> Reply:
    from openai.types import CreateEmbeddingResponse
    obj = CreateEmbeddingResponse(object="list", model="m-1",
                                  data=[{"object": "embedding", "index": i, "embedding": VECTORS[i]}
                                        for i in range(len(params["input"]))],
                                  usage={"prompt_tokens": 4, "total_tokens": 4})
    return Reply(obj.model_dump_json().encode())


def openai_embed_answer(result: Any) -> list:
    return [d.embedding for d in result.data]


def _openai_cases(service: str, settings: dict, base: str, *, embeddings: bool = True, stream_usage: bool = True,
                  max_tokens_field: str = "max_completion_tokens", sdk: str = "openai",
                  client: Callable[[str], Any] | None = None, chat_ignore: dict | None = None,
                  embed_ignore: dict | None = None, chat_params: dict | None = None,
                  ignore_body: dict | None = None, **kw) -> list[Case]:
    common = dict(sdk=sdk, settings=settings, modules=(sdk.replace("-", "_"),), **kw)
    ignore = dict(ignore_body or {})
    chat = openai_chat(base, max_tokens_field=max_tokens_field, stream_usage=stream_usage, client=client)
    cp = chat_params or CHAT
    cases = [
        Case(service, "chat_completion", call=chat, reply=openai_chat_reply, answer=openai_chat_answer,
             params=cp, ignore_body={**ignore, **(chat_ignore or {})}, **common),
        Case(service, "chat_completion", call=chat, reply=openai_chat_reply, answer=openai_chat_answer,
             params={**cp, "stream": True}, stream=True, ignore_body={**ignore, **(chat_ignore or {})},
             **common),
        Case(service, "completion", call=chat, reply=openai_chat_reply, answer=openai_chat_answer,
             params=COMPLETION, ignore_body=ignore, **common),
        Case(service, "completion", call=chat, reply=openai_chat_reply, answer=openai_chat_answer,
             params={**COMPLETION, "stream": True}, stream=True, ignore_body=ignore, **common),
    ]
    if embeddings:
        cases.append(Case(service, "text_embedding", call=openai_embed(base, client=client), reply=openai_embed_reply,
                          answer=openai_embed_answer, params=EMBED,
                          ignore_body={"encoding_format": "float is the API's default; the gateway parses floats",
                                       **ignore, **(embed_ignore or {})}, **common))
    return cases


def _azure_client(url: str):
    import openai
    return openai.AzureOpenAI(azure_endpoint=url, api_key=KEY, api_version="2024-10-21", azure_deployment="dep-1",
                              max_retries=0)


CASES: list[Case] = [
    *_openai_cases("openai", {"api_key": KEY, "model_id": "m-1"}, "/v1"),
    *_openai_cases("azureopenai", {"api_key": KEY, "resource_name": "res", "deployment_id": "dep-1",
                                   "api_version": "2024-10-21"}, "", client=_azure_client,
                   ignore_body={"model": "the SDK sends it; Azure routes by the deployment in the path"}),
]
