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

from proxy.catalogue import SERVICES
from proxy.types import TaskType

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
# ES `embedding` task inputs (EmbeddingRequestExample1/3 of the specification): an image, a text, and an image
# with a caption as one embedding (9.5); the image is a real 1x1 PNG, as SDKs that check images need one
PNG_URI = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElF"
           "TkSuQmCC")
IMAGE_ITEM = {"type": "image", "format": "base64", "value": PNG_URI}
TEXT_ITEM = {"type": "text", "value": "alpha text"}
CONTENTS = {"input": [{"content": IMAGE_ITEM}, {"content": TEXT_ITEM}, {"content": [TEXT_ITEM, IMAGE_ITEM]}]}
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
    proto_json: bool = False  # Google APIs: snake_case and lowerCamelCase field names are the same field
    # side calls the gateway makes (token exchanges): path -> reply, or a function making it when the case runs
    routes: dict[str, Reply | Callable[[], Reply]] = field(default_factory=dict)
    ignore_side: dict[str, str] = field(default_factory=dict)  # headers of the side calls that may differ
    tls: bool = False  # the SDK takes https URLs only: it is given the capture server's TLS port
    variant: str = ""  # one of several shapes of a service's task (a provider, an endpoint type)
    modules: tuple[str, ...] = ()  # imported to tell whether the SDK is there

    @property
    def id(self) -> str:
        variant = f"-{self.variant}" if self.variant else ""
        return f"{self.service}-{self.task}{variant}{'-stream' if self.stream else ''}"

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


def _openai_kwargs(params: dict, max_tokens_field: str, stream_usage: Any) -> dict:
    kw = {k: params[k] for k in ("messages", "temperature", "top_p", "stop", "tools", "tool_choice", "seed", "user",
                                 "response_format") if k in params}
    if "input" in params:  # the completion task: one user message
        kw["messages"] = [{"role": "user", "content": params["input"]}]
    if "max_tokens" in params:
        kw[max_tokens_field] = params["max_tokens"]
    if params.get("stream"):
        kw["stream"] = True
        if stream_usage == "extra_body":
            kw["extra_body"] = {"stream_options": {"include_usage": True}}
        elif stream_usage:
            kw["stream_options"] = {"include_usage": True}
    return kw


def openai_chat(base: str, *, max_tokens_field: str = "max_completion_tokens", stream_usage: Any = True,
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


def dump(path: str, data: Any) -> str:
    """`data` once the SDK's own response type has accepted it, serialised as the provider sends it."""
    cls = sdk_type(path)
    if hasattr(cls, "model_validate"):  # pydantic (Stainless, Speakeasy, Fern SDKs)
        cls.model_validate(data)
    elif hasattr(cls, "parse_obj"):  # huggingface_hub's dataclasses
        cls.parse_obj(data)
    else:  # azure-core models take the wire mapping
        cls(data)
    return json.dumps(data, separators=(",", ":"))


USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}


def chat_reply(completion: str = "openai.types.chat:ChatCompletion",
               chunk: str = "openai.types.chat:ChatCompletionChunk", usage_in_last: bool = False,
               whole_tool_calls: bool = False):
    """An OpenAI-shaped chat answer (text, and a tool call when the request had tools), in the SDK's types;
    streamed as `data:` events ending with `[DONE]`, usage in its own last chunk or in the finishing one."""
    def reply(params: dict) -> Reply:
        tools = "tools" in params
        head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m-1"}
        if params.get("stream"):
            deltas = [{"role": "assistant", "content": "Sun"}, {"content": "ny."}]
            if tools and whole_tool_calls:  # Mistral streams each tool call in one delta
                deltas.append({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                               "function": {"name": "get_weather",
                                                            "arguments": "{\"city\":\"Paris\"}"}}]})
            elif tools:
                deltas += [{"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                            "function": {"name": "get_weather", "arguments": "{\"city\":"}}]},
                           {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}]
            events = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
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


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def openai_chat_answer(result: Any) -> dict:
    if isinstance(result, list):  # stream chunks (or events that carry them in `data`)
        text, calls = "", {}
        for event in result:
            for choice in getattr(event, "data", event).choices:
                text += choice.delta.content or ""
                for call in _get(choice.delta, "tool_calls") or []:
                    slot = calls.setdefault(_get(call, "index") or 0, ["", ""])
                    fn = _get(call, "function")
                    slot[0] += (_get(fn, "name") or "") if fn else ""
                    slot[1] += _arguments(_get(fn, "arguments") or "") if fn else ""
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


def chat_cases(service: str, sdk: str, call, reply, settings: dict, *, answer=openai_chat_answer,
               chat_params: dict | None = None, completion_params: dict | None = None,
               modules: tuple[str, ...] | None = None, explicit_stream_false: bool = False, **kw) -> list[Case]:
    """chat_completion and completion, each plain and streamed: four cases of one SDK call."""
    common = dict(sdk=sdk, call=call, reply=reply, answer=answer, modules=modules or (sdk.replace("-", "_"),), **kw)
    cp, pp = chat_params or CHAT, completion_params or COMPLETION
    ignore = common.pop("ignore_body", {})
    plain = {**ignore, **({"stream": "the SDK writes the default (false) that the gateway leaves out"}
                          if explicit_stream_false else {})}
    return [Case(service, task, params={**p, "stream": True} if stream else p, stream=stream,
                 settings=settings(task) if callable(settings) else settings,
                 ignore_body=ignore if stream else plain, **common)
            for task, p in (("chat_completion", cp), ("completion", pp)) for stream in (False, True)]


def _openai_cases(service: str, settings: dict, base: str, *, embeddings: bool = True, stream_usage: Any = True,
                  max_tokens_field: str = "max_completion_tokens", client: Callable[[str], Any] | None = None,
                  ignore_body: dict | None = None, chat_params: dict | None = None, **kw) -> list[Case]:
    chat = openai_chat(base, max_tokens_field=max_tokens_field, stream_usage=stream_usage, client=client)
    cases = chat_cases(service, "openai", chat, openai_chat_reply, settings, chat_params=chat_params,
                       ignore_body=dict(ignore_body or {}), **kw)
    if embeddings:
        cases.append(Case(service, "text_embedding", "openai", call=openai_embed(base, client=client),
                          reply=openai_embed_reply, answer=openai_embed_answer, params=EMBED,
                          settings=settings("text_embedding") if callable(settings) else settings,
                          ignore_body={"encoding_format": "float is the API's default; the gateway parses floats",
                                       **(ignore_body or {})}, modules=("openai",), **kw))
    return cases


def _azure_client(url: str):
    import openai
    return openai.AzureOpenAI(azure_endpoint=url, api_key=KEY, api_version="2024-10-21", azure_deployment="dep-1",
                              max_retries=0)


# -- Mistral (mistralai: Speakeasy SDK)


def _mistral(url: str):
    from mistralai.client import Mistral
    return Mistral(api_key=KEY, server_url=url)


def mistral_chat(url: str, params: dict):
    kw = _openai_kwargs(params, "max_tokens", False)
    kw.pop("stream", None)
    if "seed" in kw:
        kw["random_seed"] = kw.pop("seed")
    c = _mistral(url)
    if params.get("stream"):
        return list(c.chat.stream(model="m-1", **kw))
    return c.chat.complete(model="m-1", **kw)


def mistral_embed(url: str, params: dict):
    return _mistral(url).embeddings.create(model="m-1", inputs=params["input"], encoding_format="float")


def mistral_embed_reply(params: dict) -> Reply:
    data = {"id": "e1", "object": "list", "model": "m-1", "usage": USAGE,
            "data": [{"object": "embedding", "index": i, "embedding": VECTORS[i]} for i in range(len(params["input"]))]}
    return Reply(dump("mistralai.client.models:EmbeddingResponse", data).encode())


# -- Groq, AI21, Fireworks: their own Stainless / hand-written SDKs


def _groq(url: str):
    import groq
    return groq.Groq(api_key=KEY, base_url=url, max_retries=0)


def _fireworks(url: str):
    import fireworks
    return fireworks.Fireworks(api_key=KEY, base_url=url, max_retries=0)


def ai21_chat(url: str, params: dict):
    import ai21
    from ai21.models.chat import ChatMessage
    c = ai21.AI21Client(api_key=KEY, api_host=url + "/studio/v1", num_retries=0)
    kw = _openai_kwargs(params, "max_tokens", False)
    kw["messages"] = [ChatMessage(role=m["role"], content=m["content"]) for m in kw["messages"]]
    result = c.chat.completions.create(model="m-1", **kw)
    return list(result) if params.get("stream") else result


def _ai21_reply(params: dict) -> Reply:
    return chat_reply("ai21.models.chat:ChatCompletionResponse", "ai21.models.chat:ChatCompletionChunk",
                      usage_in_last=True)(params)


# -- Llama Stack, OpenShift AI (vLLM), NVIDIA NIM: OpenAI-compatible servers at the user's URL


def llama_embed(url: str, params: dict):
    import llama_stack_client
    c = llama_stack_client.LlamaStackClient(base_url=url, api_key=KEY, max_retries=0)
    return c.inference.embeddings(model_id="m-1", contents=params["input"])


def llama_embed_reply(params: dict) -> Reply:
    return Reply(dump("llama_stack_client.types:EmbeddingsResponse",
                      {"embeddings": VECTORS[:len(params["input"])]}).encode())


def _at(path: str, setting: str = "url", **settings):
    """Settings whose `url` (or `setting`) is the capture server's `path` (services called at the user's URL)."""
    return {setting: "{url}" + path, **settings}


# -- Amazon Bedrock (boto3 bedrock-runtime): Converse, ConverseStream, InvokeModel; SigV4 checked by botocore

AWS = {"access_key": "AKIDCONTRACT", "secret_key": "contract/secret+key", "region": "us-east-1"}
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"  # the `:` must be sent as signed (%3A)
TITAN = "amazon.titan-embed-text-v2:0"


def _boto(service: str, url: str):
    import boto3
    from botocore.config import Config
    return boto3.client(service, region_name=AWS["region"], endpoint_url=url, aws_access_key_id=AWS["access_key"],
                        aws_secret_access_key=AWS["secret_key"], config=Config(retries={"max_attempts": 1}))


def converse_kwargs(params: dict, model: str) -> dict:
    """The canonical chat parameters in the Converse shape (docs.aws.amazon.com/bedrock/latest/APIReference/
    API_runtime_Converse.html): system blocks apart, content as text blocks, inferenceConfig, toolConfig."""
    msgs = params.get("messages") or [{"role": "user", "content": params["input"]}]
    kw: dict[str, Any] = {"modelId": model,
                          "messages": [{"role": m["role"], "content": [{"text": m["content"]}]}
                                       for m in msgs if m["role"] != "system"]}
    system = [{"text": m["content"]} for m in msgs if m["role"] == "system"]
    if system:
        kw["system"] = system
    config = {name: params[key] for key, name in (("max_tokens", "maxTokens"), ("temperature", "temperature"),
                                                 ("top_p", "topP"), ("stop", "stopSequences")) if key in params}
    if config:
        kw["inferenceConfig"] = config
    if "tools" in params:
        kw["toolConfig"] = {"tools": [{"toolSpec": {"name": t["function"]["name"],
                                                    "description": t["function"]["description"],
                                                    "inputSchema": {"json": t["function"]["parameters"]}}}
                                      for t in params["tools"]],
                            "toolChoice": {"auto": {}}}
    return kw


def bedrock_chat(url: str, params: dict):
    c = _boto("bedrock-runtime", url)
    if params.get("stream"):
        return list(c.converse_stream(**converse_kwargs(params, CLAUDE))["stream"])
    return c.converse(**converse_kwargs(params, CLAUDE))


def bedrock_chat_reply(params: dict) -> Reply:
    from tests.fakes.aws_upstream import event
    tools = "tools" in params
    usage = {"inputTokens": 9, "outputTokens": 3, "totalTokens": 12}
    if params.get("stream"):
        frames = [event("messageStart", {"role": "assistant"}),
                  event("contentBlockDelta", {"delta": {"text": "Sun"}, "contentBlockIndex": 0}),
                  event("contentBlockDelta", {"delta": {"text": "ny."}, "contentBlockIndex": 0}),
                  event("contentBlockStop", {"contentBlockIndex": 0})]
        if tools:
            frames += [event("contentBlockStart", {"start": {"toolUse": {"toolUseId": "call_1", "name": "get_weather"}},
                                                   "contentBlockIndex": 1}),
                       event("contentBlockDelta", {"delta": {"toolUse": {"input": "{\"city\":"}},
                                                   "contentBlockIndex": 1}),
                       event("contentBlockDelta", {"delta": {"toolUse": {"input": "\"Paris\"}"}},
                                                   "contentBlockIndex": 1}),
                       event("contentBlockStop", {"contentBlockIndex": 1})]
        frames += [event("messageStop", {"stopReason": "tool_use" if tools else "end_turn"}),
                   event("metadata", {"usage": usage, "metrics": {"latencyMs": 5}})]
        return Reply(frames, content_type="application/vnd.amazon.eventstream")
    content: list[dict] = [{"text": "Sunny."}]
    if tools:
        content.append({"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}})
    return Reply(json.dumps({"output": {"message": {"role": "assistant", "content": content}},
                             "stopReason": "tool_use" if tools else "end_turn", "usage": usage,
                             "metrics": {"latencyMs": 5}}).encode())


def bedrock_chat_answer(result: Any) -> dict:
    text, calls = "", []
    if isinstance(result, list):
        for ev in result:
            if "contentBlockStart" in ev and "toolUse" in ev["contentBlockStart"]["start"]:
                calls.append([ev["contentBlockStart"]["start"]["toolUse"]["name"], ""])
            delta = ev.get("contentBlockDelta", {}).get("delta", {})
            text += delta.get("text", "")
            if "toolUse" in delta:
                calls[-1][1] += delta["toolUse"]["input"]
        return {"text": text, "tools": [tuple(c) for c in calls]}
    for block in result["output"]["message"]["content"]:
        text += block.get("text", "")
        if "toolUse" in block:
            calls.append((block["toolUse"]["name"], json.dumps(block["toolUse"]["input"], separators=(",", ":"))))
    return {"text": text, "tools": calls}


def bedrock_embed(url: str, params: dict):
    c = _boto("bedrock-runtime", url)
    out = []
    for text in params["input"]:  # Titan takes one text per call
        resp = c.invoke_model(modelId=TITAN, body=json.dumps({"inputText": text}), contentType="application/json",
                              accept="application/json")
        out.append(json.loads(resp["body"].read())["embedding"])
    return out


def aws_verify(service: str):
    def verify(sdk: Captured, gw: Captured, settings: dict) -> list[str]:
        from .capture import sigv4_differences
        return sigv4_differences(gw, access_key=settings["access_key"], secret_key=settings["secret_key"],
                                 region=settings["region"], service=service)
    return verify


SIGNED = {"authorization": "each side signs at its own time: the gateway's is checked with botocore's signer",
          "x-amz-date": "the signing time"}

# -- Anthropic (anthropic: Messages API; its 2.x SDK has no temperature, top_p or top_k)


def anthropic_kwargs(params: dict, default_max_tokens: int) -> dict:
    msgs = params.get("messages") or [{"role": "user", "content": params["input"]}]
    kw: dict[str, Any] = {"model": "m-1", "max_tokens": params.get("max_tokens", default_max_tokens),
                          "messages": [m for m in msgs if m["role"] != "system"]}
    system = "".join(m["content"] for m in msgs if m["role"] == "system")
    if system:
        kw["system"] = system
    if "stop" in params:
        kw["stop_sequences"] = params["stop"]
    if "tools" in params:
        kw["tools"] = [{"name": t["function"]["name"], "description": t["function"]["description"],
                        "input_schema": t["function"]["parameters"]} for t in params["tools"]]
    if "tool_choice" in params:
        kw["tool_choice"] = {"type": params["tool_choice"]}
    if "user" in params:
        kw["metadata"] = {"user_id": params["user"]}
    return kw


def anthropic_chat(url: str, params: dict):
    import anthropic
    c = anthropic.Anthropic(api_key=KEY, base_url=url, max_retries=0)
    kw = anthropic_kwargs(params, ANTHROPIC_MAX_TOKENS)
    if params.get("stream"):
        return list(c.messages.create(stream=True, **kw))
    return c.messages.create(**kw)


ANTHROPIC_MAX_TOKENS = 64  # the endpoint's task setting, used when the request has none


def anthropic_reply(params: dict) -> Reply:
    tools = "tools" in params
    stop = "tool_use" if tools else "end_turn"
    if params.get("stream"):
        t = "anthropic.types:"
        events = [(t + "RawMessageStartEvent", {"type": "message_start", "message": {
                      "id": "msg_1", "type": "message", "role": "assistant", "model": "m-1", "content": [],
                      "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
                  (t + "RawContentBlockStartEvent", {"type": "content_block_start", "index": 0,
                                                     "content_block": {"type": "text", "text": ""}}),
                  (t + "RawContentBlockDeltaEvent", {"type": "content_block_delta", "index": 0,
                                                     "delta": {"type": "text_delta", "text": "Sun"}}),
                  (t + "RawContentBlockDeltaEvent", {"type": "content_block_delta", "index": 0,
                                                     "delta": {"type": "text_delta", "text": "ny."}}),
                  (t + "RawContentBlockStopEvent", {"type": "content_block_stop", "index": 0})]
        if tools:
            events += [(t + "RawContentBlockStartEvent", {"type": "content_block_start", "index": 1, "content_block": {
                           "type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}}),
                       (t + "RawContentBlockDeltaEvent", {"type": "content_block_delta", "index": 1, "delta": {
                           "type": "input_json_delta", "partial_json": "{\"city\":"}}),
                       (t + "RawContentBlockDeltaEvent", {"type": "content_block_delta", "index": 1, "delta": {
                           "type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
                       (t + "RawContentBlockStopEvent", {"type": "content_block_stop", "index": 1})]
        events += [(t + "RawMessageDeltaEvent", {"type": "message_delta", "delta": {"stop_reason": stop,
                                                                                   "stop_sequence": None},
                                                 "usage": {"output_tokens": 3}}),
                   (t + "RawMessageStopEvent", {"type": "message_stop"})]
        return Reply(sse([dump(kind, data) for kind, data in events], named=True), content_type="text/event-stream")
    content: list[dict] = [{"type": "text", "text": "Sunny."}]
    if tools:
        content.append({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}})
    return Reply(dump("anthropic.types:Message", {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m-1", "content": content,
        "stop_reason": stop, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 3}}).encode())


# The 2.x SDK sends its API key as `Authorization: Bearer`; the API documentation's requests (the versioning and
# migration-2026-10-21 pages, with anthropic-version 2026-10-21) send `x-api-key`, which the gateway follows.
ANTHROPIC_AUTH = {"authorization": "the SDK's Bearer form; the documentation's x-api-key is checked instead",
                  "x-api-key": "checked by anthropic_auth"}


def anthropic_auth(sdk: Captured, gw: Captured, settings: dict) -> list[str]:
    key = gw.headers.get("x-api-key")
    return [] if key == settings["api_key"] else [f"header x-api-key: {key!r} is not the endpoint's key"]


def anthropic_answer(result: Any) -> dict:
    text, calls = "", []
    if isinstance(result, list):
        for ev in result:
            if ev.type == "content_block_start" and ev.content_block.type == "tool_use":
                calls.append([ev.content_block.name, ""])
            elif ev.type == "content_block_delta":
                if ev.delta.type == "text_delta":
                    text += ev.delta.text
                elif ev.delta.type == "input_json_delta":
                    calls[-1][1] += ev.delta.partial_json
        return {"text": text, "tools": [tuple(c) for c in calls]}
    for block in result.content:
        if block.type == "text":
            text += block.text
        elif block.type == "tool_use":
            calls.append((block.name, json.dumps(block.input, separators=(",", ":"))))
    return {"text": text, "tools": calls}


# -- Anthropic on Vertex AI (anthropic's AnthropicVertex client: rawPredict / streamRawPredict, the model in the
#    URL, `anthropic_version: vertex-2023-10-16` in the body)


# ES takes a Model Garden endpoint's URLs as given (GoogleVertexAiChatCompletionServiceSettings: uri, streaming_uri)
ANTHROPIC_VERTEX = "{url}/v1/projects/p-1/locations/us-central1/publishers/anthropic/models/m-1:"


def anthropic_vertex_chat(url: str, params: dict):
    from anthropic import AnthropicVertex
    c = AnthropicVertex(region="us-central1", project_id="p-1", access_token=VERTEX_TOKEN, base_url=url + "/v1",
                        max_retries=0)
    kw = anthropic_kwargs(params, ANTHROPIC_MAX_TOKENS)
    if params.get("stream"):
        return list(c.messages.create(stream=True, **kw))
    return c.messages.create(**kw)


# -- Google AI Studio (google-genai, Gemini API v1beta)


def _genai(url: str, **kw):
    from google import genai
    from google.genai import types
    return genai.Client(http_options=types.HttpOptions(base_url=url, api_version="v1beta"), **kw)


def genai_config(params: dict):
    from google.genai import types
    msgs = params.get("messages") or []
    kw: dict[str, Any] = {}
    system = [m["content"] for m in msgs if m["role"] == "system"]
    if system:
        kw["system_instruction"] = types.Content(parts=[types.Part(text=t) for t in system])
    for key, name in (("max_tokens", "max_output_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                      ("stop", "stop_sequences"), ("seed", "seed")):
        if key in params:
            kw[name] = params[key]
    if "tools" in params:
        # raw JSON Schema goes in parametersJsonSchema; `parameters` takes Google's OpenAPI subset only
        # (ai.google.dev/api/caching#FunctionDeclaration)
        kw["tools"] = [types.Tool(function_declarations=[types.FunctionDeclaration(
            name=t["function"]["name"], description=t["function"]["description"],
            parameters_json_schema=t["function"]["parameters"]) for t in params["tools"]])]
    return types.GenerateContentConfig(**kw) if kw else None


def genai_contents(params: dict):
    from google.genai import types
    msgs = params.get("messages") or [{"role": "user", "content": params["input"]}]
    return [types.Content(role="user" if m["role"] == "user" else "model", parts=[types.Part(text=m["content"])])
            for m in msgs if m["role"] != "system"]


def genai_chat(make_client):
    def call(url: str, params: dict):
        client = make_client(url)  # kept referenced: a collected client closes its connection pool
        models = client.models
        if params.get("stream"):
            return list(models.generate_content_stream(model="m-1", contents=genai_contents(params),
                                                       config=genai_config(params)))
        return models.generate_content(model="m-1", contents=genai_contents(params), config=genai_config(params))
    return call


def gemini_reply(params: dict) -> Reply:
    tools = "tools" in params
    usage = {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12}
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    kind = "google.genai.types:GenerateContentResponse"
    if params.get("stream"):
        chunks = [{"candidates": [{"content": {"role": "model", "parts": [{"text": "Sun"}]}, "index": 0}],
                   "modelVersion": "m-1"},
                  {"candidates": [{"content": {"role": "model", "parts": [{"text": "ny."}, *([call] if tools else [])]},
                                   "finishReason": "STOP", "index": 0}], "usageMetadata": usage, "modelVersion": "m-1"}]
        return Reply(sse([dump(kind, c) for c in chunks]), content_type="text/event-stream")
    return Reply(dump(kind, {"candidates": [{"content": {"role": "model",
                                                         "parts": [{"text": "Sunny."}, *([call] if tools else [])]},
                                             "finishReason": "STOP", "index": 0}],
                             "usageMetadata": usage, "modelVersion": "m-1"}).encode())


def gemini_answer(result: Any) -> dict:
    text, calls = "", []
    for chunk in result if isinstance(result, list) else [result]:
        for part in chunk.candidates[0].content.parts or []:
            text += part.text or ""
            if part.function_call:
                calls.append((part.function_call.name, json.dumps(part.function_call.args, separators=(",", ":"))))
    return {"text": text, "tools": calls}


def genai_embed(make_client, input_type: str | None = None):
    def call(url: str, params: dict):
        from google.genai import types
        config = types.EmbedContentConfig(task_type=input_type) if input_type else None
        client = make_client(url)
        resp = client.models.embed_content(model="m-1", contents=params["input"], config=config)
        return [e.values for e in resp.embeddings]
    return call


def gemini_embed_reply(params: dict) -> Reply:
    return Reply(dump("google.genai.types:EmbedContentResponse", {
        "embeddings": [{"values": VECTORS[i]} for i in range(len(params["input"]))]}).encode())


# -- Azure AI Studio token endpoints (azure-ai-inference: the Azure AI Model Inference API)


def _azure_inference(kind: str, url: str):
    from azure.ai import inference
    from azure.core.credentials import AzureKeyCredential
    return getattr(inference, kind)(endpoint=url, credential=AzureKeyCredential(KEY))


AZURE_DEFAULT_MAX_TOKENS = 64  # ES's default max_new_tokens, filled in when the endpoint sets none


def azure_inference_chat(url: str, params: dict):
    msgs = params.get("messages") or [{"role": "user", "content": params["input"]}]
    kw = {k: params[k] for k in ("temperature", "top_p", "stream") if k in params}
    result = _azure_inference("ChatCompletionsClient", url).complete(
        messages=msgs, max_tokens=params.get("max_tokens", AZURE_DEFAULT_MAX_TOKENS), **kw)
    return list(result) if params.get("stream") else result


def azure_inference_embed(url: str, params: dict):
    result = _azure_inference("EmbeddingsClient", url).embed(input=params["input"])
    return [d.embedding for d in result.data]


# -- Rerank and embedding services: Cohere (cohere v2), Voyage (voyageai), Contextual AI (contextual-client),
#    Jina (no official Python SDK: its published API reference, jina.ai/embeddings and jina.ai/reranker)

RANKED = [{"index": 2, "relevance_score": 0.91}, {"index": 0, "relevance_score": 0.42}]


def rerank_answer(result: Any) -> list:
    items = result if isinstance(result, list) else (_get(result, "results") or _get(result, "data"))
    return [(_get(r, "index"), round(_get(r, "relevance_score"), 6)) for r in items]


def _cohere(url: str):
    import cohere
    return cohere.ClientV2(api_key=KEY, base_url=url, max_retries=0)


def cohere_embed(url: str, params: dict):
    resp = _cohere(url).embed(model="m-1", texts=params["input"], input_type="search_query",
                              embedding_types=["float"])
    return resp.embeddings.float_


def cohere_embed_reply(params: dict) -> Reply:
    n = len(params["input"])
    return Reply(dump("cohere:EmbedByTypeResponse", {
        "id": "e1", "response_type": "embeddings_by_type", "embeddings": {"float": VECTORS[:n]},
        "texts": params["input"], "meta": {"billed_units": {"input_tokens": 4}}}).encode())


def cohere_multimodal(url: str, params: dict):
    from cohere import EmbedInput, ImageUrlEmbedContent, TextEmbedContent
    from cohere.types import EmbedImageUrl
    inputs = [EmbedInput(content=[TextEmbedContent(text=i["value"]) if i["type"] == "text" else
                                  ImageUrlEmbedContent(image_url=EmbedImageUrl(url=i["value"])) for i in items])
              for items in _items(params)]
    resp = _cohere(url).embed(model="embed-v4.0", inputs=inputs, input_type="search_query", embedding_types=["float"])
    return resp.embeddings.float_


def cohere_multimodal_reply(params: dict) -> Reply:
    n = len(params["input"])
    return Reply(dump("cohere:EmbedByTypeResponse", {
        "id": "e2", "response_type": "embeddings_by_type", "embeddings": {"float": [VECTORS[i % 2] for i in range(n)]},
        "meta": {"billed_units": {"input_tokens": 4, "images": 2}}}).encode())


def cohere_rerank(url: str, params: dict):
    return _cohere(url).rerank(model="m-1", query=params["query"], documents=params["documents"],
                               top_n=params.get("top_n"))


def cohere_rerank_reply(params: dict) -> Reply:
    return Reply(dump("cohere:V2RerankResponse", {"id": "r1", "results": RANKED,
                                                  "meta": {"billed_units": {"search_units": 1}}}).encode())


def cohere_v1_rerank(url: str, params: dict):
    """Cohere's v1 rerank, the API Cohere models answer on Azure AI serverless endpoints (`{target}/v1/rerank`)."""
    import cohere
    c = cohere.Client(api_key=KEY, base_url=url, max_retries=0)
    return c.rerank(query=params["query"], documents=params["documents"], top_n=params.get("top_n"),
                    return_documents=params.get("return_documents"))


def cohere_chat(url: str, params: dict):
    msgs = params.get("messages") or [{"role": "user", "content": params["input"]}]
    kw: dict[str, Any] = {}
    for key, name in (("max_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "p"),
                      ("stop", "stop_sequences"), ("seed", "seed"), ("tools", "tools")):
        if key in params:
            kw[name] = params[key]
    c = _cohere(url)
    if params.get("stream"):
        return list(c.chat_stream(model="m-1", messages=msgs, **kw))
    return c.chat(model="m-1", messages=msgs, **kw)


def cohere_chat_reply(params: dict) -> Reply:
    tools = "tools" in params
    usage = {"billed_units": {"input_tokens": 9, "output_tokens": 3}, "tokens": {"input_tokens": 9, "output_tokens": 3}}
    finish = "TOOL_CALL" if tools else "COMPLETE"
    if params.get("stream"):
        events = [{"type": "message-start", "id": "c1", "delta": {"message": {"role": "assistant"}}},
                  {"type": "content-start", "index": 0,
                   "delta": {"message": {"content": {"type": "text", "text": ""}}}},
                  {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Sun"}}}},
                  {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "ny."}}}},
                  {"type": "content-end", "index": 0}]
        if tools:
            events += [{"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
                           "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}}}},
                       {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {
                           "function": {"arguments": "{\"city\":\"Paris\"}"}}}}},
                       {"type": "tool-call-end", "index": 0}]
        events.append({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}})
        return Reply(sse(events, named=True), content_type="text/event-stream")
    message: dict[str, Any] = {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}]}
    if tools:
        message["tool_calls"] = [{"id": "call_1", "type": "function",
                                  "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
    return Reply(dump("cohere:V2ChatResponse", {"id": "c1", "finish_reason": finish, "message": message,
                                                "usage": usage}).encode())


def cohere_chat_answer(result: Any) -> dict:
    text, calls = "", []
    if isinstance(result, list):
        for ev in result:
            if ev.type == "content-delta":
                text += ev.delta.message.content.text
            elif ev.type == "tool-call-start":
                fn = ev.delta.message.tool_calls.function
                calls.append([fn.name, fn.arguments or ""])
            elif ev.type == "tool-call-delta":
                calls[-1][1] += ev.delta.message.tool_calls.function.arguments
        return {"text": text, "tools": [tuple(c) for c in calls]}
    text = "".join(c.text for c in result.message.content or [] if c.type == "text")
    return {"text": text, "tools": [(c.function.name, c.function.arguments) for c in result.message.tool_calls or []]}


def _voyage(url: str):
    import voyageai
    return voyageai.Client(api_key=KEY, base_url=url + "/v1", max_retries=0)


def voyage_embed(url: str, params: dict):
    return _voyage(url).embed(texts=params["input"], model="m-1").embeddings


def voyage_embed_reply(params: dict) -> Reply:
    return Reply(json.dumps({"object": "list", "model": "m-1", "usage": {"total_tokens": 4},
                             "data": [{"object": "embedding", "embedding": VECTORS[i], "index": i}
                                      for i in range(len(params["input"]))]}).encode())


def _items(params: dict) -> list[list[dict]]:
    """The ES content objects of an `embedding` request as lists of items."""
    return [c["content"] if isinstance(c["content"], list) else [c["content"]] for c in params["input"]]


def voyage_multimodal(url: str, params: dict):
    # the SDK's dict form of multimodal_embed (docs.voyageai.com/docs/multimodal-embeddings)
    inputs = [{"content": [{"type": "text", "text": i["value"]} if i["type"] == "text" else
                           {"type": "image_base64", "image_base64": i["value"]} for i in items]}
              for items in _items(params)]
    return _voyage(url).multimodal_embed(inputs=inputs, model="voyage-multimodal-3", output_dtype="float").embeddings


def voyage_multimodal_reply(params: dict) -> Reply:
    return Reply(json.dumps({"object": "list", "model": "voyage-multimodal-3",
                             "usage": {"text_tokens": 5, "image_pixels": 2, "video_pixels": 0,
                                       "total_tokens": 7},
                             "data": [{"object": "embedding", "embedding": VECTORS[i % 2], "index": i}
                                      for i in range(len(params["input"]))]}).encode())


def voyage_rerank(url: str, params: dict):
    return _voyage(url).rerank(query=params["query"], documents=params["documents"], model="m-1",
                               top_k=params.get("top_n")).results


def voyage_rerank_reply(params: dict) -> Reply:
    return Reply(json.dumps({"object": "list", "model": "m-1", "usage": {"total_tokens": 5}, "data": RANKED}).encode())


VOYAGE_SOURCE = {"request-source": "ES sends Request-Source: unspecified:elasticsearch to Voyage and Jina "
                                   "(VoyageAIUtils, JinaAIUtils), the header integrations identify themselves by"}
VOYAGE_DEFAULTS = {"truncation": "voyageai sends its default (true); the API's default is true too "
                                 "(docs.voyageai.com/reference/embeddings-api)",
                   "encoding_format": "voyageai asks for base64 and decodes it; the gateway takes the default floats",
                   "output_dtype": "ES sends the endpoint's embedding_type as output_dtype "
                                   "(VoyageAIEmbeddingsRequestEntity); float is the API's default"}


def contextual_rerank(url: str, params: dict):
    import contextual
    c = contextual.ContextualAI(api_key=KEY, base_url=url + "/v1", max_retries=0)
    return c.rerank.create(query=params["query"], documents=params["documents"], model="m-1",
                           top_n=params.get("top_n")).results


def contextual_rerank_reply(params: dict) -> Reply:
    return Reply(dump("contextual.types:RerankCreateResponse", {"results": RANKED}).encode())


def documented_post(path: str, body: Callable[[dict], dict], headers: dict[str, str]):
    """For a provider without an official Python SDK: the request its API reference documents, sent as is."""
    def call(url: str, params: dict):
        import httpx
        resp = httpx.post(url + path, json=body(params), headers=headers, timeout=30)
        resp.raise_for_status()
        return resp.json()
    return call


# Realtime (managed online) endpoints have no SDK call of their own: Azure Machine Learning's scoring request
# for chat models deployed to managed compute (learn.microsoft.com/azure/machine-learning/how-to-deploy-models-llama,
# "Consume Meta Llama models": `{"input_data": {"input_string": [{role, content}], "parameters": {temperature, top_p,
# max_new_tokens, do_sample}}}` posted to the scoring URI with `Authorization: Bearer <key>`, answered `{"output"}`)


def azure_realtime_body(params: dict) -> dict:
    parameters = {k: params[k] for k in ("temperature", "top_p") if k in params}
    parameters["max_new_tokens"] = params.get("max_tokens", AZURE_DEFAULT_MAX_TOKENS)
    return {"input_data": {"input_string": [{"role": "user", "content": params["input"]}], "parameters": parameters}}


AZURE_REALTIME = documented_post("/score", azure_realtime_body,
                                 {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})


# jina.ai/embeddings ("curl https://api.jina.ai/v1/embeddings -H Authorization: Bearer ..." with model, input,
# embedding_type) and jina.ai/reranker (model, query, documents, top_n, return_documents)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="  # 1x1
JINA_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}",
                "Request-Source": "unspecified:elasticsearch"}


# -- Hugging Face (huggingface_hub InferenceClient: TGI chat, TEI embed), NVIDIA NIM, OpenShift AI (vLLM)


def hf_chat(url: str, params: dict):
    import huggingface_hub
    c = huggingface_hub.InferenceClient(base_url=url, api_key=KEY)
    kw = _openai_kwargs(params, "max_tokens", True)
    result = c.chat_completion(model="m-1", **kw)
    return list(result) if params.get("stream") else result


def hf_embed(url: str, params: dict):
    import huggingface_hub
    c = huggingface_hub.InferenceClient(model=url + "/embed", api_key=KEY)
    return c.feature_extraction(params["input"]).tolist()


def hf_embed_reply(params: dict) -> Reply:
    return Reply(json.dumps(VECTORS[:len(params["input"])]).encode())


# TEI's /rerank (huggingface.github.io/text-embeddings-inference: query, texts, return_text; a bare array back)
TEI_RERANK = documented_post("/rerank", lambda p: {"query": p["query"], "texts": p["documents"], "return_text": False},
                             {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
# NIM reranking (docs.api.nvidia.com/nim/reference/nvidia-rerank-qa-mistral-4b-infer: model, query.text, passages)
NIM_RERANK = documented_post("/v1/retrieval/nvidia/reranking",
                             lambda p: {"model": "m-1", "query": {"text": p["query"]},
                                        "passages": [{"text": d} for d in p["documents"]]},
                             {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})


def nim_embed(url: str, params: dict):
    # NIM embedding models are asymmetric and need input_type (query or passage), passed as the NIM docs do:
    # extra_body={"input_type": "query"} (docs.api.nvidia.com/nim/reference/nvidia-nv-embedqa-e5-v5-infer)
    c = _openai_client(url + "/v1")
    return c.embeddings.create(model="m-1", input=params["input"], encoding_format="float",
                               extra_body={"input_type": "query"})


# -- Amazon SageMaker (boto3 sagemaker-runtime InvokeEndpoint[WithResponseStream], api=openai): the body is the
#    container's own OpenAI-format payload, passed through by the SDK; path, headers and SigV4 are SageMaker's


def sagemaker_call(url: str, params: dict):
    c = _boto("sagemaker-runtime", url)
    if "messages" in params or "input" in params and isinstance(params["input"], str):
        body = _openai_kwargs(params, "max_completion_tokens", True)
    else:
        body = {"input": params["input"]}
    if params.get("stream"):
        resp = c.invoke_endpoint_with_response_stream(EndpointName="ep-1", Body=json.dumps(body),
                                                      ContentType="application/json", Accept="application/json")
        raw = b"".join(ev["PayloadPart"]["Bytes"] for ev in resp["Body"] if "PayloadPart" in ev)
        return _sse_chunks(raw)
    resp = c.invoke_endpoint(EndpointName="ep-1", Body=json.dumps(body), ContentType="application/json",
                             Accept="application/json")
    return json.loads(resp["Body"].read())


def _sse_chunks(raw: bytes) -> list:
    from openai.types.chat import ChatCompletionChunk
    return [ChatCompletionChunk.model_validate_json(line[6:]) for line in raw.decode().split("\n")
            if line.startswith("data: ") and line[6:] != "[DONE]"]


def sagemaker_reply(params: dict) -> Reply:
    from tests.fakes.aws_upstream import event
    if "input" in params and not isinstance(params["input"], str) and "messages" not in params:
        return openai_embed_reply(params)
    inner = openai_chat_reply(params)
    if not params.get("stream"):
        return inner
    raw = b"".join(inner.body)  # the container's SSE bytes, cut into PayloadParts at arbitrary points
    parts = [raw[i:i + 37] for i in range(0, len(raw), 37)]
    return Reply([event("PayloadPart", part, "application/octet-stream") for part in parts],
                 content_type="application/vnd.amazon.eventstream")


def sagemaker_answer(result: Any) -> Any:
    if isinstance(result, dict) and "data" in result:
        return [d["embedding"] for d in result["data"]]
    if isinstance(result, dict):
        msg = result["choices"][0]["message"]
        return {"text": msg.get("content") or "", "tools": [(c["function"]["name"], c["function"]["arguments"])
                                                            for c in msg.get("tool_calls") or []]}
    return openai_chat_answer(result)


SAGEMAKER = {**AWS, "endpoint_name": "ep-1", "api": "openai"}


# api=elastic: the body is ES's own payload (ES sagemaker/schema/elastic ElasticRerankPayload and
# ElasticSparseEmbeddingPayload: `input` one string or a list, rerank's `query`, `return_documents`, `top_n`),
# answered in ES's result shapes (`rerank`, `sparse_embedding`); boto3 InvokeEndpoint carries it


def sagemaker_elastic_call(url: str, params: dict):
    docs = params.get("documents", params.get("input"))
    body: dict[str, Any] = {"input": docs if len(docs) > 1 else docs[0]}
    if "query" in params:
        body["query"] = params["query"]
        body.update({k: params[k] for k in ("return_documents", "top_n") if k in params})
    resp = _boto("sagemaker-runtime", url).invoke_endpoint(EndpointName="ep-1", Body=json.dumps(body),
                                                           ContentType="application/json", Accept="application/json")
    return json.loads(resp["Body"].read())


def sagemaker_elastic_reply(params: dict) -> Reply:
    if "query" in params:
        return Reply(json.dumps({"rerank": RANKED}).encode())
    return Reply(json.dumps({"sparse_embedding": [{"is_truncated": False, "embedding": {"alpha": 0.5, "text": 0.25}}
                                                  for _ in params["input"]]}).encode())


def sagemaker_elastic_answer(result: dict) -> list:
    if "rerank" in result:
        return [(r["index"], round(r["relevance_score"], 6)) for r in result["rerank"]]
    return [e["embedding"] for e in result["sparse_embedding"]]


# -- Google Vertex AI (google-genai with vertexai=True; Discovery Engine ranking from its API reference)
# The gateway exchanges its service account for a token at the account's token_uri (routed to the capture
# server); the SDK is given that same token, so both send `Authorization: Bearer vertex-token`.

VERTEX_TOKEN = "vertex-token"


def _service_account() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "client_email": "contract@p-1.iam.gserviceaccount.com",
                       "private_key": pem, "token_uri": "https://oauth2.googleapis.com/token", "project_id": "p-1"})


def _vertex_settings():
    return {"service_account_json": _service_account(), "project_id": "p-1", "location": "us-central1",
            "model_id": "m-1"}


VERTEX_TOKEN_ROUTE = {"/token": Reply(json.dumps({"access_token": VERTEX_TOKEN, "expires_in": 3600,
                                                  "token_type": "Bearer"}).encode())}


def _vertex_genai(url: str):
    import google.oauth2.credentials
    from google import genai
    from google.genai import types
    return genai.Client(vertexai=True, project="p-1", location="us-central1",
                        credentials=google.oauth2.credentials.Credentials(token=VERTEX_TOKEN),
                        http_options=types.HttpOptions(base_url=url, api_version="v1"))


def vertex_embed(url: str, params: dict):
    client = _vertex_genai(url)
    resp = client.models.embed_content(model="m-1", contents=params["input"])
    return [e.values for e in resp.embeddings]


def vertex_embed_reply(params: dict) -> Reply:
    return Reply(json.dumps({"predictions": [{"embeddings": {"values": VECTORS[i],
                                                             "statistics": {"token_count": 2, "truncated": False}}}
                                             for i in range(len(params["input"]))]}).encode())


def vertex_multimodal(url: str, params: dict):
    """The multimodal embeddings API reference (cloud.google.com/vertex-ai/generative-ai/docs/model-reference/
    multimodal-embeddings): `{"instances": [{"text"} | {"image": {"bytesBase64Encoded", "mimeType"}}]}` at the
    model's `:predict`, one instance per call as the Vertex SDK's MultiModalEmbeddingModel.get_embeddings sends."""
    import httpx
    out = []
    for (item,) in _items(params):
        if item["type"] == "text":
            instance: dict = {"text": item["value"]}
        else:
            head, data = item["value"].split(",", 1)
            instance = {"image": {"bytesBase64Encoded": data, "mimeType": head[5:].split(";")[0]}}
        resp = httpx.post(f"{url}/v1/projects/p-1/locations/us-central1/publishers/google/models/"
                          f"multimodalembedding@001:predict", json={"instances": [instance]},
                          headers={"Content-Type": "application/json", "Authorization": f"Bearer {VERTEX_TOKEN}"})
        resp.raise_for_status()
        prediction = resp.json()["predictions"][0]
        out.append(prediction.get("textEmbedding") or prediction["imageEmbedding"])
    return out


# discoveryengine.googleapis.com v1 rankingConfigs.rank (cloud.google.com/generative-ai-app-builder/docs/reference/
# rest/v1/projects.locations.rankingConfigs/rank): model, query, records[{id, content}], topN
VERTEX_RANK = documented_post(
    "/v1/projects/p-1/locations/global/rankingConfigs/default_ranking_config:rank",
    lambda p: {"model": "m-1", "query": p["query"], "records": [{"id": str(i), "content": d}
                                                                for i, d in enumerate(p["documents"])],
               "topN": p["top_n"], "ignoreRecordDetailsInResponse": True},
    {"Content-Type": "application/json", "Authorization": f"Bearer {VERTEX_TOKEN}"})


# -- Alibaba Cloud AI Search (alibabacloud-searchplat20240529). The SDK signs nothing with a bearer token:
#    x-acs-signature-type BEARERTOKEN, and the API reference's own requests send only `Authorization: Bearer
#    <API-KEY>` (alibabacloud.com/help/en/open-search/search-platform/developer-reference/text-embedding-api-details)


def _searchplat(url: str):
    from alibabacloud_searchplat20240529.client import Client
    from alibabacloud_tea_openapi.models import Config
    return Client(Config(bearer_token=KEY, endpoint=url.split("//", 1)[1], protocol="http"))


def alibaba_call(url: str, params: dict):
    from alibabacloud_searchplat20240529 import models as m
    c, ws, sid = _searchplat(url), "ws-1", "svc-1"
    if "query" in params:
        return c.get_document_rank(ws, sid, m.GetDocumentRankRequest(query=params["query"],
                                                                     docs=params["documents"])).body.to_map()
    if "input" in params and isinstance(params["input"], str):
        return c.get_text_generation(ws, sid, m.GetTextGenerationRequest(
            messages=[m.GetTextGenerationRequestMessages(role="user", content=params["input"])])).body.to_map()
    if params.get("sparse"):
        return c.get_text_sparse_embedding(ws, sid, m.GetTextSparseEmbeddingRequest(
            input=params["input"])).body.to_map()
    return c.get_text_embedding(ws, sid, m.GetTextEmbeddingRequest(input=params["input"])).body.to_map()


def alibaba_reply(params: dict) -> Reply:
    head = {"request_id": "r-1", "latency": 3}
    if "query" in params:
        result = {"scores": [{"index": r["index"], "score": r["relevance_score"]} for r in RANKED]}
        usage = {"doc_count": len(params["documents"])}
    elif isinstance(params.get("input"), str):
        result, usage = {"text": "Sunny."}, {"input_tokens": 9, "output_tokens": 3}
    elif params.get("sparse"):
        result = {"sparse_embeddings": [{"index": i, "embedding": [{"token_id": 7, "weight": 0.5, "token": "alpha"}]}
                                        for i in range(len(params["input"]))]}
        usage = {"token_count": 4}
    else:
        result = {"embeddings": [{"index": i, "embedding": VECTORS[i]} for i in range(len(params["input"]))]}
        usage = {"token_count": 4}
    return Reply(json.dumps({**head, "usage": usage, "result": result}).encode())


def alibaba_answer(result: dict) -> Any:
    out = result["result"]
    if "scores" in out:
        return [(x["index"], round(x["score"], 6)) for x in out["scores"]]
    if "text" in out:
        return {"text": out["text"], "tools": []}
    if "sparse_embeddings" in out:
        return [{t["token"]: t["weight"] for t in e["embedding"]} for e in out["sparse_embeddings"]]
    return [e["embedding"] for e in out["embeddings"]]


ALIBABA = _at("", "host", api_key=KEY, workspace="ws-1", service_id="svc-1", http_schema="http")
ALIBABA["host"] = "{host}"
ACS_HEADERS = {name: "the SDK's own x-acs-* request metadata; the API reference's requests carry Bearer alone"
               for name in ("x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-action",
                            "x-acs-content-sha256", "x-acs-bearer-token", "x-acs-signature-type")}


# -- IBM watsonx.ai (ibm-watsonx-ai: APIClient, Embeddings, Rerank, ModelInference). The SDK takes https URLs
#    only and treats any host outside IBM Cloud's list as Cloud Pak for Data (a version handshake first):
#    `platform_url` marks the capture server as IBM Cloud, `auth_url` points its IAM exchange there, and
#    scope_validation=False skips the project lookup. Replies follow the API reference
#    (cloud.ibm.com/apidocs/watsonx-ai: text-embeddings, text-rerank, text-chat, text-chat-stream); the SDK
#    returns them as dicts, having no response types.

WX_VERSION = "2024-05-01"  # the endpoint's api_version; the SDK is set to send the same


def _jwt(claims: dict) -> str:
    import base64

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def _iam_reply() -> Reply:
    import time
    now = int(time.time())
    # IAM answers an API key exchange with a JWT access token (cloud.ibm.com/apidocs/iam-identity-token-api)
    return Reply(json.dumps({"access_token": _jwt({"iat": now, "exp": now + 3600}), "refresh_token": "not-used",
                             "token_type": "Bearer", "expires_in": 3600, "expiration": now + 3600}).encode())


def _watsonx(url: str, key: str):
    from ibm_watsonx_ai import APIClient, Credentials

    from .capture import CA_FILES
    credentials = Credentials(url=url, api_key=key, platform_url=url, auth_url=url + "/identity/token",
                              verify=CA_FILES[url])
    client = APIClient(credentials, project_id="p-1", scope_validation=False)
    client.version_param = WX_VERSION
    return client


def watsonx_call(key: str):
    def call(url: str, params: dict):
        from ibm_watsonx_ai.foundation_models import Embeddings, ModelInference, Rerank
        client = _watsonx(url, key)
        if "query" in params:
            rerank = Rerank(model_id="m-1", api_client=client, project_id="p-1")
            options: dict[str, Any] = {"top_n": params["top_n"]} if "top_n" in params else {}
            if "return_documents" in params:
                options["inputs"] = params["return_documents"]  # return_options.inputs: the documents' texts
            return rerank.generate(query=params["query"], inputs=params["documents"],
                                   params={"return_options": options})["results"]
        if "messages" not in params and not isinstance(params.get("input"), str):
            embeddings = Embeddings(model_id="m-1", api_client=client, project_id="p-1")
            return embeddings.embed_documents(params["input"])
        model = ModelInference(model_id="m-1", api_client=client, project_id="p-1", validate=False)
        messages = params.get("messages") or [{"role": "user", "content": params["input"]}]
        chat = {k: params[k] for k in ("max_tokens", "temperature", "top_p", "stop", "seed") if k in params}
        kw: dict[str, Any] = {"messages": messages, "params": chat or None}
        if "tools" in params:
            kw["tools"] = params["tools"]
        if isinstance(params.get("tool_choice"), str):
            kw["tool_choice_option"] = params["tool_choice"]
        if params.get("stream"):
            return list(model.chat_stream(**kw))
        return model.chat(**kw)
    return call


def watsonx_reply(params: dict) -> Reply:
    if "query" in params:
        return Reply(json.dumps({"model_id": "m-1", "created_at": "2024-05-01T00:00:00Z", "input_token_count": 5,
                                 "query": params["query"],
                                 "results": [{"index": r["index"], "score": r["relevance_score"]}
                                             for r in RANKED]}).encode())
    if "messages" not in params and not isinstance(params.get("input"), str):
        return Reply(json.dumps({"model_id": "m-1", "created_at": "2024-05-01T00:00:00Z", "input_token_count": 4,
                                 "results": [{"embedding": VECTORS[i]} for i in range(len(params["input"]))]}).encode())
    inner = openai_chat_reply(params)
    if not params.get("stream"):
        data = json.loads(inner.body)  # type: ignore[arg-type]
        data["model_id"] = data.pop("model")
        data["created_at"] = "2024-05-01T00:00:00Z"
        return Reply(json.dumps(data).encode())
    # text-chat-stream: `id: n` / `event: message` / `data: <chunk>` events, no `[DONE]`, usage in the last chunk
    frames = []
    for i, raw in enumerate(b"".join(inner.body).decode().split("\n\n")):  # type: ignore[arg-type]
        if raw.startswith("data: ") and raw[6:] != "[DONE]":
            chunk = json.loads(raw[6:])
            chunk["model_id"] = chunk.pop("model")
            frames.append(f"id: {i + 1}\nevent: message\ndata: {json.dumps(chunk)}\n\n".encode())
    return Reply(frames, content_type="text/event-stream")


def watsonx_answer(result: Any) -> Any:
    if isinstance(result, list) and result and isinstance(result[0], dict) and "score" in result[0]:
        return [(r["index"], round(r["score"], 6)) for r in result]
    if isinstance(result, list) and result and isinstance(result[0], list):
        return result
    if isinstance(result, list):  # stream chunks as dicts
        text, calls = "", {}
        for chunk in result:
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                text += delta.get("content") or ""
                for call in delta.get("tool_calls") or []:
                    slot = calls.setdefault(call.get("index", 0), ["", ""])
                    fn = call.get("function") or {}
                    slot[0] += fn.get("name") or ""
                    slot[1] += fn.get("arguments") or ""
        return {"text": text, "tools": [tuple(v) for _, v in sorted(calls.items())]}
    msg = result["choices"][0]["message"]
    return {"text": msg.get("content") or "",
            "tools": [(c["function"]["name"], c["function"]["arguments"]) for c in msg.get("tool_calls") or []]}


IAM_SIDE = {"authorization": "the SDK adds `Basic Yng6Yng=`; IAM's API reference (cloud.ibm.com/apidocs/"
                             "iam-identity-token-api, create an IAM access token for an API key) sends none"}


def watsonx_cases() -> list[Case]:
    out = []
    for task, params, stream in (("text_embedding", EMBED, False), ("rerank", RERANK, False),
                                 ("completion", COMPLETION, False), ("completion", COMPLETION, True),
                                 ("chat_completion", NO_USER, False), ("chat_completion", NO_USER, True)):
        key = f"{KEY}-wx-{task}{'-stream' if stream else ''}"  # one key per case: the gateway exchanges it anew
        out.append(Case("watsonxai", task, "ibm-watsonx-ai", call=watsonx_call(key), reply=watsonx_reply,
                        answer=watsonx_answer, params={**params, "stream": True} if stream else params, stream=stream,
                        settings=_at("", api_key=key, model_id="m-1", project_id="p-1", api_version=WX_VERSION),
                        routes={"/identity/token": _iam_reply}, ignore_side=IAM_SIDE, tls=True,
                        modules=("ibm_watsonx_ai", "trustme")))
    return out


# -- custom (no provider of its own): the endpoints are ES's documented examples (elasticsearch-specification
#    inference/put_custom/examples: OpenAI embeddings, Cohere v2 embed and rerank; the json_parser paths of
#    CustomResponseParams: Alibaba sparse `$.result.sparse_embeddings[*].embedding[*].token_id`/`.weight`, OpenAI
#    chat `$.choices[*].message.content`), so the oracle of what the templates must put on the wire is the SDK of
#    the API each example targets, and the reply each SDK parses is what the JSON paths must read.

CUSTOM_JSON = {"Authorization": "Bearer ${api_key}", "Content-Type": "application/json"}
CUSTOM_INPUT_TYPES = {"translation": {"ingest": "search_document", "search": "search_query"},
                      "default": "search_document"}


def _custom(path: str, request: str, parser: dict, **extra) -> dict:
    return {"url": "{url}" + path, "headers": CUSTOM_JSON, "secret_parameters": {"api_key": KEY},
            "request": request, "response": {"json_parser": parser}, **extra}


def custom_cohere_embed(url: str, params: dict):
    input_type = CUSTOM_INPUT_TYPES["translation"].get(params.get("input_type", ""), CUSTOM_INPUT_TYPES["default"])
    return _cohere(url).embed(model="embed-v4.0", texts=params["input"], input_type=input_type).embeddings.float_


def custom_cohere_embed_reply(params: dict) -> Reply:
    n = len(params["input"])
    return Reply(dump("cohere:EmbedByTypeResponse", {
        "id": "e1", "response_type": "embeddings_by_type", "embeddings": {"float": VECTORS[:n]},
        "texts": params["input"], "meta": {"billed_units": {"input_tokens": 4}}}).encode())


def custom_cohere_rerank(url: str, params: dict):
    return _cohere(url).rerank(model="rerank-v3.5", query=params["query"], documents=params["documents"],
                               top_n=params["top_n"])


def custom_sparse(url: str, params: dict):
    from alibabacloud_searchplat20240529 import models as m
    return _searchplat(url).get_text_sparse_embedding("ws-1", "svc-1", m.GetTextSparseEmbeddingRequest(
        input=params["input"], input_type="document", return_token=True)).body.to_map()


def custom_sparse_answer(result: dict) -> list:
    return [{str(t["token_id"]): t["weight"] for t in e["embedding"]} for e in result["result"]["sparse_embeddings"]]


def custom_chat(url: str, params: dict):
    return _openai_client(url + "/v1").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": params["input"]}])


CUSTOM_CASES = [
    Case("custom", "text_embedding", "cohere", call=custom_cohere_embed, reply=custom_cohere_embed_reply,
         answer=lambda r: r, params={**EMBED, "input_type": "search"},
         settings=_custom("/v2/embed", '{"texts": ${input}, "model": "embed-v4.0", "input_type": ${input_type}}',
                          {"text_embeddings": "$.embeddings.float[*]"}, input_type=CUSTOM_INPUT_TYPES)),
    Case("custom", "rerank", "cohere", call=custom_cohere_rerank, reply=cohere_rerank_reply, answer=rerank_answer,
         params=RERANK,
         settings=_custom("/v2/rerank", '{"documents": ${input}, "query": ${query}, "model": "rerank-v3.5", '
                                        '"top_n": ${top_n}}',
                          {"reranked_index": "$.results[*].index", "relevance_score": "$.results[*].relevance_score"})),
    Case("custom", "sparse_embedding", "alibabacloud-searchplat20240529", call=custom_sparse,
         reply=lambda p: alibaba_reply({**p, "sparse": True}), answer=custom_sparse_answer, params=EMBED,
         surfaces=("es",), ignore_headers=ACS_HEADERS, modules=("alibabacloud_searchplat20240529",),
         settings=_custom("/v3/openapi/workspaces/ws-1/text-sparse-embedding/svc-1",
                          '{"input": ${input}, "input_type": "document", "return_token": true}',
                          {"token_path": "$.result.sparse_embeddings[*].embedding[*].token_id",
                           "weight_path": "$.result.sparse_embeddings[*].embedding[*].weight"})),
    Case("custom", "completion", "openai", call=custom_chat, reply=openai_chat_reply, answer=openai_chat_answer,
         params={"input": "Say hi"}, modules=("openai",),
         settings=_custom("/v1/chat/completions",
                          '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ${input}}]}',
                          {"completion_result": "$.choices[*].message.content"})),
]


NO_SEED_USER = {k: v for k, v in CHAT.items() if k not in ("seed", "user")}
NO_USER = {k: v for k, v in CHAT.items() if k != "user"}
NO_SAMPLING = {k: v for k, v in CHAT.items() if k not in ("seed", "temperature", "top_p")}
AI21_CHAT = {k: v for k, v in CHAT.items() if k not in ("seed", "user", "tool_choice")}

CASES: list[Case] = [
    *_openai_cases("openai", {"api_key": KEY, "model_id": "m-1"}, "/v1"),
    *_openai_cases("azureopenai", {"api_key": KEY, "resource_name": "res", "deployment_id": "dep-1",
                                   "api_version": "2024-10-21"}, "", client=_azure_client,
                   ignore_body={"model": "the SDK sends it; Azure routes by the deployment in the path"}),
    # DeepSeek documents the OpenAI SDK as its client (api-docs.deepseek.com), with `max_tokens`
    *_openai_cases("deepseek", {"api_key": KEY, "model_id": "m-1"}, "", embeddings=False,
                   max_tokens_field="max_tokens"),
    *chat_cases("mistral", "mistralai", mistral_chat,
                chat_reply("mistralai.client.models:ChatCompletionResponse",
                           "mistralai.client.models:CompletionChunk", usage_in_last=True, whole_tool_calls=True),
                {"api_key": KEY, "model": "m-1"}, chat_params={**NO_SEED_USER, "seed": 7}, modules=("mistralai",),
                explicit_stream_false=True),
    Case("mistral", "text_embedding", "mistralai", call=mistral_embed, reply=mistral_embed_reply,
         answer=openai_embed_answer, settings={"api_key": KEY, "model": "m-1"}, params=EMBED, modules=("mistralai",)),
    # Groq: the SDK has no stream_options argument; the API reference (console.groq.com/docs/api-reference,
    # "stream_options") takes include_usage, so the SDK call passes it as an extra body field
    *chat_cases("groq", "groq", openai_chat("", client=_groq, stream_usage="extra_body"),
                chat_reply("groq.types.chat:ChatCompletion", "groq.types.chat:ChatCompletionChunk"),
                {"api_key": KEY, "model_id": "m-1"}),
    *chat_cases("ai21", "ai21", ai21_chat, _ai21_reply, {"api_key": KEY, "model_id": "m-1"}, chat_params=AI21_CHAT,
                explicit_stream_false=True),
    *chat_cases("fireworksai", "fireworks-ai",
                openai_chat("/inference", client=_fireworks, max_tokens_field="max_tokens", stream_usage=False),
                chat_reply("fireworks.types.chat:CompletionCreateResponse", "fireworks.types.chat:ChatCompletionChunk",
                           usage_in_last=True),
                {"api_key": KEY, "model_id": "m-1"}, modules=("fireworks",)),
    # Fireworks' SDK has no embeddings; its docs use the OpenAI client at /inference/v1 (docs.fireworks.ai)
    *[c for c in _openai_cases("fireworksai", {"api_key": KEY, "model_id": "m-1"}, "/inference/v1")
      if c.task == "text_embedding"],
    *_openai_cases("nvidia", {"api_key": KEY, "model_id": "m-1"}, "/v1", max_tokens_field="max_tokens",
                   embeddings=False),
    *_openai_cases("openshift_ai", lambda task: _at("/v1/embeddings" if task == "text_embedding"
                                                     else "/v1/chat/completions", api_key=KEY, model_id="m-1"), "/v1"),
    *_openai_cases("llama", _at("/v1/chat/completions", api_key=KEY, model_id="m-1"), "/v1", embeddings=False),
    Case("llama", "text_embedding", "llama-stack-client", call=llama_embed, reply=llama_embed_reply,
         answer=lambda r: r.embeddings, settings=_at("/v1/inference/embeddings", api_key=KEY, model_id="m-1"),
         params=EMBED, modules=("llama_stack_client",)),
    *chat_cases("anthropic", "anthropic", anthropic_chat, anthropic_reply, {"api_key": KEY, "model_id": "m-1"},
                answer=anthropic_answer, task_settings={"max_tokens": ANTHROPIC_MAX_TOKENS}, chat_params=NO_SAMPLING,
                completion_params={"input": "Say hi", "max_tokens": 32}, ignore_headers=ANTHROPIC_AUTH,
                verify=anthropic_auth),
    *chat_cases("googleaistudio", "google-genai", genai_chat(lambda u: _genai(u, api_key=KEY)), gemini_reply,
                {"api_key": KEY, "model_id": "m-1"}, answer=gemini_answer, chat_params=NO_USER,
                modules=("google.genai",), proto_json=True),
    Case("googleaistudio", "text_embedding", "google-genai", call=genai_embed(lambda u: _genai(u, api_key=KEY)),
         reply=gemini_embed_reply, answer=lambda r: r, settings={"api_key": KEY, "model_id": "m-1"}, params=EMBED,
         modules=("google.genai",), proto_json=True),
    *[c for c in chat_cases("azureaistudio", "azure-ai-inference", azure_inference_chat,
                            chat_reply("azure.ai.inference.models:ChatCompletions",
                                       "azure.ai.inference.models:StreamingChatCompletionsUpdate", usage_in_last=True),
                            _at("", "target", api_key=KEY, provider="meta", endpoint_type="token"),
                            modules=("azure.ai.inference",)) if c.task == "completion"],
    Case("azureaistudio", "completion", "azureml-api-reference", call=AZURE_REALTIME, variant="realtime",
         reply=lambda p: Reply(json.dumps({"output": "Sunny."}).encode()), answer=lambda r: {"text": r["output"],
                                                                                            "tools": []},
         settings=_at("/score", "target", api_key=KEY, provider="meta", endpoint_type="realtime"),
         params=COMPLETION, modules=("httpx",)),
    Case("azureaistudio", "rerank", "cohere", call=cohere_v1_rerank, reply=cohere_rerank_reply, answer=rerank_answer,
         settings=_at("", "target", api_key=KEY, provider="cohere", endpoint_type="token"), params=RERANK),
    Case("azureaistudio", "text_embedding", "azure-ai-inference", call=azure_inference_embed,
         reply=openai_embed_reply, answer=lambda r: r,
         settings=_at("", "target", api_key=KEY, provider="cohere", endpoint_type="token"), params=EMBED,
         modules=("azure.ai.inference",)),
    *chat_cases("cohere", "cohere", cohere_chat, cohere_chat_reply, {"api_key": KEY, "model_id": "m-1"},
                answer=cohere_chat_answer, chat_params={k: v for k, v in NO_USER.items() if k != "tool_choice"}),
    Case("cohere", "text_embedding", "cohere", call=cohere_embed, reply=cohere_embed_reply, answer=lambda r: r,
         settings={"api_key": KEY, "model_id": "m-1"}, params=EMBED),
    Case("cohere", "rerank", "cohere", call=cohere_rerank, reply=cohere_rerank_reply, answer=rerank_answer,
         settings={"api_key": KEY, "model_id": "m-1"}, params=RERANK),
    Case("voyageai", "text_embedding", "voyageai", call=voyage_embed, reply=voyage_embed_reply, answer=lambda r: r,
         settings={"api_key": KEY, "model_id": "m-1"}, params=EMBED, ignore_headers=VOYAGE_SOURCE,
         ignore_body=VOYAGE_DEFAULTS),
    Case("voyageai", "rerank", "voyageai", call=voyage_rerank, reply=voyage_rerank_reply, answer=rerank_answer,
         settings={"api_key": KEY, "model_id": "m-1"}, params=RERANK, ignore_headers=VOYAGE_SOURCE,
         ignore_body={**VOYAGE_DEFAULTS, "return_documents": "in Voyage's rerank reference "
                      "(docs.voyageai.com/reference/reranker-api); ES sends it, the SDK has no argument for it"}),
    Case("voyageai", "embedding", "voyageai", call=voyage_multimodal, reply=voyage_multimodal_reply,
         answer=lambda r: r, settings={"api_key": KEY, "model_id": "voyage-multimodal-3"}, params=CONTENTS,
         surfaces=("es",), ignore_headers=VOYAGE_SOURCE, ignore_body=VOYAGE_DEFAULTS),
    Case("cohere", "embedding", "cohere", call=cohere_multimodal, reply=cohere_multimodal_reply, answer=lambda r: r,
         settings={"api_key": KEY, "model_id": "embed-v4.0"}, params=CONTENTS, surfaces=("es",)),
    Case("contextualai", "rerank", "contextual-client", call=contextual_rerank, reply=contextual_rerank_reply,
         answer=rerank_answer, settings={"api_key": KEY, "model_id": "m-1"}, params=RERANK,
         modules=("contextual",)),
    Case("jinaai", "text_embedding", "jina-api-reference", modules=("httpx",),
         call=documented_post("/v1/embeddings", lambda p: {"model": "m-1", "input": p["input"],
                                                           "embedding_type": "float"}, JINA_HEADERS),
         reply=voyage_embed_reply, answer=lambda r: [d["embedding"] for d in r["data"]],
         settings={"api_key": KEY, "model_id": "m-1"}, params=EMBED),
    # the multimodal `embedding` task (jina-clip-v2, jina-embeddings-v4): one `{"text"}` or `{"image": <URL or
    # base64>}` object per input (jina.ai/embeddings, "Multimodal" request example)
    Case("jinaai", "embedding", "jina-api-reference", modules=("httpx",),
         call=documented_post("/v1/embeddings", lambda p: {
             "model": "m-1", "embedding_type": "float",
             "input": [{"text": t} for t in p["input"]] + [{"image": i} for i in p.get("images", [])]}, JINA_HEADERS),
         reply=lambda p: voyage_embed_reply({"input": [*p["input"], *p.get("images", [])]}),
         answer=lambda r: [d["embedding"] for d in r["data"]],
         settings={"api_key": KEY, "model_id": "m-1"}, params={"input": TEXTS[:1], "images": [PNG]}),
    Case("jinaai", "rerank", "jina-api-reference", modules=("httpx",),
         call=documented_post("/v1/rerank", lambda p: {"model": "m-1", "query": p["query"], "documents": p["documents"],
                                                       "top_n": p["top_n"], "return_documents": False}, JINA_HEADERS),
         reply=lambda p: Reply(json.dumps({"model": "m-1", "results": RANKED, "usage": {"total_tokens": 5}}).encode()),
         answer=rerank_answer, settings={"api_key": KEY, "model_id": "m-1"}, params=RERANK),
    *chat_cases("hugging_face", "huggingface-hub", hf_chat, chat_reply("huggingface_hub:ChatCompletionOutput",
                                                                      "huggingface_hub:ChatCompletionStreamOutput"),
                _at("/v1/chat/completions", api_key=KEY, model_id="m-1"), chat_params=NO_USER,
                modules=("huggingface_hub",), explicit_stream_false=True),
    Case("hugging_face", "text_embedding", "huggingface-hub", call=hf_embed, reply=hf_embed_reply, answer=lambda r: r,
         settings=_at("/embed", api_key=KEY), params=EMBED, modules=("huggingface_hub",)),
    Case("hugging_face", "rerank", "tei-api-reference", call=TEI_RERANK, modules=("httpx",),
         reply=lambda p: Reply(json.dumps(RANKED).encode()), answer=rerank_answer,
         settings=_at("/rerank", api_key=KEY), params={k: v for k, v in RERANK.items() if k != "top_n"}),
    Case("nvidia", "text_embedding", "openai", call=nim_embed, reply=openai_embed_reply, answer=openai_embed_answer,
         settings={"api_key": KEY, "model_id": "m-1"}, params=EMBED, modules=("openai",),
         ignore_body={"encoding_format": "float is the API's default; the gateway parses floats"}),
    Case("nvidia", "rerank", "nim-api-reference", call=NIM_RERANK, modules=("httpx",),
         reply=lambda p: Reply(json.dumps({"rankings": [{"index": r["index"], "logit": r["relevance_score"]}
                                                        for r in RANKED]}).encode()),
         answer=lambda r: [(x["index"], round(x["logit"], 6)) for x in r["rankings"]],
         settings={"api_key": KEY, "model_id": "m-1"}, params={k: v for k, v in RERANK.items() if k != "top_n"}),
    Case("openshift_ai", "rerank", "cohere", call=cohere_rerank, reply=cohere_rerank_reply, answer=rerank_answer,
         settings=_at("/v2/rerank", api_key=KEY, model_id="m-1"), params=RERANK,
         ignore_body={"return_documents": "ES sends it (OpenShiftAiRerankRequestEntity); the v2 SDK has no such "
                                          "argument, vLLM's Cohere-style rerank reads it"}),
    *chat_cases("amazon_sagemaker", "boto3", sagemaker_call, sagemaker_reply, SAGEMAKER, answer=sagemaker_answer,
                ignore_headers=SIGNED, verify=aws_verify("sagemaker"), modules=("boto3",)),
    Case("amazon_sagemaker", "text_embedding", "boto3", call=sagemaker_call, reply=sagemaker_reply,
         answer=sagemaker_answer, settings=SAGEMAKER, params=EMBED, ignore_headers=SIGNED,
         verify=aws_verify("sagemaker"), modules=("boto3",)),
    *[Case("amazon_sagemaker", task, "boto3", call=sagemaker_elastic_call, reply=sagemaker_elastic_reply,
           answer=sagemaker_elastic_answer, settings={**SAGEMAKER, "api": "elastic"}, params=params, surfaces=surfaces,
           ignore_headers=SIGNED, verify=aws_verify("sagemaker"), modules=("boto3",))
      for task, params, surfaces in (("rerank", RERANK, ("es", "v1")), ("sparse_embedding", EMBED, ("es",)))],
    *chat_cases("googlevertexai", "google-genai", genai_chat(_vertex_genai), gemini_reply, _vertex_settings(),
                answer=gemini_answer, chat_params=NO_USER, modules=("google.genai",), proto_json=True,
                routes=VERTEX_TOKEN_ROUTE),
    *chat_cases("googlevertexai", "anthropic", anthropic_vertex_chat, anthropic_reply,
                {**_vertex_settings(), "provider": "anthropic", "url": ANTHROPIC_VERTEX + "rawPredict",
                 "streaming_url": ANTHROPIC_VERTEX + "streamRawPredict"}, answer=anthropic_answer, variant="anthropic",
                task_settings={"max_tokens": ANTHROPIC_MAX_TOKENS}, chat_params=NO_SAMPLING,
                completion_params={"input": "Say hi", "max_tokens": 32}, routes=VERTEX_TOKEN_ROUTE,
                ignore_body={"anthropic_version": "the SDK writes its direct-API version (2026-10-21); Anthropic's "
                             "Vertex page (docs.anthropic.com/en/api/claude-on-vertex-ai) and Google's use-claude "
                             "page require vertex-2023-10-16, which the gateway sends"}),
    Case("googlevertexai", "text_embedding", "google-genai", call=vertex_embed, reply=vertex_embed_reply,
         answer=lambda r: r, settings=_vertex_settings(), params=EMBED, modules=("google.genai",), proto_json=True,
         routes=VERTEX_TOKEN_ROUTE),
    Case("googlevertexai", "embedding", "vertex-multimodal-embeddings-api-reference", call=vertex_multimodal,
         modules=("httpx",), reply=lambda p: Reply(json.dumps({"predictions": [{"imageEmbedding": VECTORS[0]}],
                                                               "deployedModelId": "d-1"}).encode()),
         answer=lambda r: r, settings={**_vertex_settings(), "model_id": "multimodalembedding@001"},
         params={"input": [{"content": TEXT_ITEM}, {"content": IMAGE_ITEM}]}, surfaces=("es",),
         routes=VERTEX_TOKEN_ROUTE),
    Case("googlevertexai", "rerank", "discoveryengine-api-reference", call=VERTEX_RANK, modules=("httpx",),
         reply=lambda p: Reply(json.dumps({"records": [{"id": str(r["index"]), "score": r["relevance_score"]}
                                                       for r in RANKED]}).encode()),
         answer=lambda r: [(int(x["id"]), round(x["score"], 6)) for x in r["records"]], settings=_vertex_settings(),
         params=RERANK, routes=VERTEX_TOKEN_ROUTE),
    *[Case("alibabacloud-ai-search", task, "alibabacloud-searchplat20240529", call=alibaba_call, reply=alibaba_reply,
           answer=alibaba_answer, settings=ALIBABA, params=params, surfaces=surfaces, ignore_headers=ACS_HEADERS,
           modules=("alibabacloud_searchplat20240529",))
      for task, params, surfaces in (("text_embedding", EMBED, ("es", "v1")),
                                     ("sparse_embedding", {**EMBED, "sparse": True}, ("es",)),
                                     ("rerank", {"query": RERANK["query"], "documents": RERANK["documents"]},
                                      ("es", "v1")),
                                     ("completion", {"input": "Say hi"}, ("es", "v1")))],
    *chat_cases("amazonbedrock", "boto3", bedrock_chat, bedrock_chat_reply,
                {**AWS, "model": CLAUDE, "provider": "anthropic"}, answer=bedrock_chat_answer,
                chat_params=NO_SEED_USER, ignore_headers=SIGNED, verify=aws_verify("bedrock"), modules=("boto3",)),
    *watsonx_cases(),
    *CUSTOM_CASES,
    Case("amazonbedrock", "text_embedding", "boto3", call=bedrock_embed,
         reply=lambda p: Reply(json.dumps({"embedding": VECTORS[0], "inputTextTokenCount": 2}).encode()),
         answer=lambda r: r, settings={**AWS, "model": TITAN, "provider": "amazontitan"}, params={"input": TEXTS[:1]},
         ignore_headers=SIGNED, verify=aws_verify("bedrock"), modules=("boto3",)),
]


# Services and tasks without a contract case yet, each with the reason; the completeness test keeps this list
# exact (nothing covered is listed, nothing unlisted is missing) and README's table shows it.
NOT_COVERED: dict[str, str] = {
    # text on ES's `embedding` task is the service's text_embedding request (proxy.catalogue._with_embedding,
    # backends: the adapter sees a text_embedding endpoint), which that task's case covers
    **{f"{name}/embedding": "text on the `embedding` task is the text_embedding request its case covers"
       for name, spec in SERVICES.items()
       if TaskType.EMBEDDING in spec.tasks and TaskType.TEXT_EMBEDDING in spec.tasks
       and name not in ("jinaai", "voyageai", "cohere", "googlevertexai") and not spec.local},
}


# Error bodies as each provider writes them (the SDK must raise on them with the message; the gateway must pass
# the status and the message on): service -> (body, content type, extra headers) for a 400 carrying `message`.
def _openai_error(message: str):
    return json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": None}}), "application/json", {}


ERROR_BODIES: dict[str, Callable[[str], tuple[str, str, dict]]] = {
    **{s: _openai_error for s in ("openai", "azureopenai", "deepseek", "groq", "fireworksai", "nvidia",
                                  "openshift_ai", "azureaistudio")},
    "mistral": lambda m: (json.dumps({"object": "error", "message": m, "type": "invalid_request_error",
                                      "param": None, "code": None}), "application/json", {}),
    "anthropic": lambda m: (json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": m}}),
                            "application/json", {}),
    "cohere": lambda m: (json.dumps({"message": m}), "application/json", {}),
    "googleaistudio": lambda m: (json.dumps({"error": {"code": 400, "message": m, "status": "INVALID_ARGUMENT"}}),
                                 "application/json", {}),
    "amazonbedrock": lambda m: (json.dumps({"message": m}), "application/json",
                                {"x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/"}),
    "voyageai": lambda m: (json.dumps({"detail": m}), "application/json", {}),
    "jinaai": lambda m: (json.dumps({"detail": m}), "application/json", {}),  # ES JinaAIErrorResponseEntity
    # cloud.ibm.com/apidocs/watsonx-ai "Error handling": errors[{code, message, more_info}], trace, status_code
    "watsonxai": lambda m: (json.dumps({"errors": [{"code": "invalid_input_argument", "message": m,
                                                    "more_info": "https://cloud.ibm.com/apidocs/watsonx-ai"}],
                                        "trace": "t-1", "status_code": 400}), "application/json", {}),
}
