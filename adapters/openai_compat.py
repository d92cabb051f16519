"""The OpenAI wire family: OpenAI itself and the services that speak its format.

`OpenAICompatible` holds the family's chat translation, `OpenAIEmbeddings` adds embeddings and
`OpenAIRerank` rerank; each provider is a short subclass of the one that serves its tasks, saying where
its URLs are, how it authenticates and which quirks it has. The shape is OpenAI's
(https://platform.openai.com/docs/api-reference); provider-specific shapes that are not OpenAI's
(NVIDIA rerank, TEI embeddings and rerank, Llama Stack embeddings) live in the subclass that needs them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping
from urllib.parse import quote

import msgspec

from proxy.chat_params import OPTIONAL as OPTIONAL_CHAT_PARAMS
from proxy.errors import StatusError, StreamReportedError
from proxy.sse import whole_events
from proxy.types import (CanonicalRequest, ChatDelta, ChatMessage, ChatRequest, ChatResult,
                         EmbedRequest, EmbedResult, FunctionCall, InputType, RerankRequest, RerankResult, TaskType,
                         ToolCall, ToolCallDelta, Usage)

from .base import (Adapter, FramedReader, ProviderError, SSEDecoder, SSEEvent, StreamCut, StreamParser, StreamReader,
                   StreamWire, UpstreamRequest, decoding, generic_error, malformed, map_input_type, reject_input_type,
                   unsupported)
from .oauth2 import TOKENS, ClientCredentials
from .rerank_compat import parse_rerank, rerank_body

T = TaskType
_encoder = msgspec.json.Encoder()


# ------------------------------------------------------------------------------ response Structs


class _EmbeddingItem(msgspec.Struct):
    embedding: msgspec.Raw  # spliced into our answer unparsed
    index: int = 0


class _EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class _EmbeddingResponse(msgspec.Struct):
    data: list[_EmbeddingItem]
    usage: _EmbeddingUsage | None = None


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None

    def canonical(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                     total_tokens=self.total_tokens,
                     cached_tokens=self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else None,
                     reasoning_tokens=(self.completion_tokens_details.reasoning_tokens
                                       if self.completion_tokens_details else None))


def _raw(value: msgspec.Raw) -> msgspec.Raw | None:
    return value if value and bytes(value) != b"null" else None


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    function: _Function
    id: str | None = None
    type: str = "function"


class _Message(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None
    index: int = 0
    logprobs: msgspec.Raw = msgspec.Raw(b"")  # msgspec.Raw cannot sit in a union: empty means absent


class _ChatResponse(msgspec.Struct):
    choices: list[_Choice]
    id: str = ""
    model: str = ""
    model_id: str = ""  # watsonx names the model here
    created: int = 0
    usage: _Usage | None = None


# Stream chunks are decoded by the thousand: untracked by the garbage collector (JSON makes no cycles),
# they cost no collection passes
class _DeltaToolCall(msgspec.Struct, gc=False):
    index: int = 0
    id: str | None = None
    type: str | None = None
    function: _Function | None = None


class _Delta(msgspec.Struct, gc=False):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[_DeltaToolCall] | None = None
    # reasoning as OpenAI-compatible reasoners stream it: DeepSeek `reasoning_content`
    # (api-docs.deepseek.com/guides/reasoning_model), vLLM/OpenRouter `reasoning`
    reasoning_content: str | None = None
    reasoning: str | None = None


class _ChunkChoice(msgspec.Struct, gc=False):
    delta: _Delta | None = None
    finish_reason: str | None = None
    index: int = 0
    logprobs: msgspec.Raw = msgspec.Raw(b"")


class _Chunk(msgspec.Struct, gc=False):
    id: str | None = None
    model: str | None = None
    choices: list[_ChunkChoice] = []
    usage: _Usage | None = None
    error: Any = None


_embedding_decoder = msgspec.json.Decoder(_EmbeddingResponse)
_chat_decoder = msgspec.json.Decoder(_ChatResponse)
_chunk_decoder = msgspec.json.Decoder(_Chunk)
_vectors_decoder = msgspec.json.Decoder(list[msgspec.Raw])



def openai_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Canonical messages as OpenAI's: the same shape, but a tool call's `type` (a default, which the
    canonical Structs omit) is required by OpenAI's `ChatCompletionMessageToolCallParam`."""
    out = []
    for m in messages:
        item = msgspec.to_builtins(m)
        for call in item.get("tool_calls") or ():
            call.setdefault("type", "function")
        out.append(item)
    return out


def parse_chat_completion(body: bytes) -> ChatResult:
    """An OpenAI `chat.completion` object (also watsonx's `/text/chat` answer) to a canonical result."""
    resp = _chat_decoder.decode(body)
    if not resp.choices:
        raise malformed("response (no choices)")
    choice = resp.choices[0]
    calls = None
    if choice.message.tool_calls:
        calls = [ToolCall(id=c.id, type=c.type, function=FunctionCall(name=c.function.name,
                                                                      arguments=c.function.arguments))
                 for c in choice.message.tool_calls]
    msg = choice.message
    return ChatResult(id=resp.id, model=resp.model or resp.model_id, content=msg.content,
                      reasoning=msg.reasoning_content or msg.reasoning, tool_calls=calls,
                      finish_reason=choice.finish_reason, usage=resp.usage.canonical() if resp.usage else None,
                      created=resp.created, logprobs=_raw(choice.logprobs))


def parse_embedding_list(body: bytes, element_type: str = "float") -> EmbedResult:
    """OpenAI's `{"data": [{"index", "embedding"}], "usage"}`, which Jina and Voyage answer too:
    vectors in input order, and usage from whichever count the provider gives."""
    resp = _embedding_decoder.decode(body)
    items = resp.data
    if any(item.index != i for i, item in enumerate(items)):
        items = sorted(items, key=lambda item: item.index)
        if [item.index for item in items] != list(range(len(items))):
            raise malformed("response (embedding indexes are not 0..n-1)")
    usage = None
    if resp.usage is not None:
        total = resp.usage.total_tokens or resp.usage.prompt_tokens
        usage = Usage(prompt_tokens=resp.usage.prompt_tokens or total, total_tokens=total)
    return EmbedResult(vectors=[item.embedding for item in items], element_type=element_type, usage=usage)


class OpenAIStreamParser:
    """OpenAI chat chunks to canonical deltas; the stream must end with `data: [DONE]`."""

    def __init__(self, requires_done: bool = True) -> None:
        self.requires_done = requires_done
        self.done = False
        self.finished = False

    def feed(self, event: SSEEvent) -> list[ChatDelta]:
        data = event.data
        if event.event == "error":
            data = data.strip()
            info = generic_error(data.encode())
            raise StreamReportedError(info.message if info and info.message else data[:300])
        if len(data) < 16 and data.strip().upper() == "[DONE]":  # a chunk is longer: no copy on the common path
            self.done = True
            return []
        try:
            chunk = _chunk_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise malformed("stream event") from None
        out: list[ChatDelta] = []
        self.read(chunk, out)
        return out

    def read(self, chunk: _Chunk, out: list[ChatDelta]) -> None:
        """One decoded chunk's deltas, appended to `out`."""
        if chunk.error is not None:
            info = generic_error(_encoder.encode({"error": chunk.error}))
            raise StreamReportedError(info.message if info and info.message else str(chunk.error))
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            d = choice.delta or _Delta()
            calls = None
            if d.tool_calls:
                calls = [ToolCallDelta(index=c.index, id=c.id, type=c.type,
                                       function=FunctionCall(name=c.function.name, arguments=c.function.arguments)
                                       if c.function else None) for c in d.tool_calls]
            if choice.finish_reason:
                self.finished = True
            out.append(ChatDelta(content=d.content, role=d.role, refusal=d.refusal, tool_calls=calls,
                                 reasoning=d.reasoning_content or d.reasoning,
                                 finish_reason=choice.finish_reason, id=chunk.id, model=chunk.model,
                                 logprobs=_raw(choice.logprobs) if choice.logprobs else None))
        if chunk.usage is not None:
            out.append(ChatDelta(usage=chunk.usage.canonical(), id=chunk.id, model=chunk.model))

    def finish(self) -> list[ChatDelta]:
        if self.done or (not self.requires_done and self.finished):
            return []
        raise StreamCut()


_DONE_EVENT = b"data: [DONE]\n\n"


class OpenAIStreamReader:
    """`OpenAIStreamParser` and the SSE decoder in one pass, for OpenAI's own framing: the whole events of a
    read, when each is one `data: {...}` line, are decoded by one msgspec call (`decode_lines`), with no
    SSE event or string made for each. Every other block of whole events (comments, named events, data
    that is not an object) goes through the SSE decoder and the parser, event by event; from a CR line
    end or an over-long event on, every read does. The deltas and errors are the general path's: a block
    that does not decode, or decodes to another number of chunks than it has events, is read again by it.

    Why the count check suffices: each event starts with `{` and each but the last ends with `}` (checked),
    so no JSON value can run from one event into the next (in a container, `}` and whitespace are followed
    by `,`, `]` or `}`, never by the next event's `{`, and a string cannot hold a raw line feed); an event
    holding two values then makes more chunks than events."""

    __slots__ = ("parser", "decoder", "_rest", "_framed")

    def __init__(self, parser: OpenAIStreamParser, decoder: SSEDecoder) -> None:
        self.parser = parser
        self.decoder = decoder
        self._rest = bytearray()  # the start of an event whose end has not arrived
        self._framed = False  # the decoder reads everything from here on

    def feed(self, chunk: bytes, out: list[ChatDelta]) -> None:
        rest = self._rest
        if self._framed or b"\r" in chunk:
            self._by_event(self._take(chunk), out)
            return
        whole = whole_events(rest, chunk)
        if len(rest) > self.decoder.limit:  # the decoder raises for it, or reads the rest
            self._by_event(whole + self._take(b""), out)
        elif whole:
            self._block(whole, out)

    def close(self, out: list[ChatDelta]) -> None:
        parse = self.parser.feed
        for event in self.decoder.feed(self._take(b"")) + self.decoder.close():
            out.extend(parse(event))
        out.extend(self.parser.finish())

    def _take(self, chunk: bytes) -> bytes:
        """`chunk` after what is held back, for the decoder, which reads every event from now on."""
        self._framed = True
        if self._rest:
            chunk = bytes(self._rest) + chunk
            self._rest.clear()
        return chunk

    def _block(self, whole: bytes, out: list[ChatDelta]) -> None:
        """Whole events, the last one's blank line included."""
        body = whole[:-len(_DONE_EVENT)] if whole.endswith(_DONE_EVENT) else whole
        if body and not body.endswith(b"\n\n"):  # `[DONE]` was not an event of its own
            body = whole
        if body.startswith(b"data: {") and len(body) <= self.decoder.limit:
            lines = body[6:].replace(b"}\n\ndata: {", b"}\n{")
            # each of the n events one `data: {` line and all but the last ending with `}`: then n - 1 of
            # those were replaced (7 bytes shorter each), and the only line feeds left are theirs and the last two
            n = (len(body) - 6 - len(lines)) // 7 + 1
            if lines.count(b"\n") == n + 1:
                try:
                    chunks = _chunk_decoder.decode_lines(lines)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    chunks = None
                if chunks is not None and len(chunks) == n:
                    read = self.parser.read
                    for chunk in chunks:
                        read(chunk, out)
                    if body is not whole:
                        self.parser.done = True
                    return
        self._by_event(whole, out)

    def _by_event(self, data: bytes, out: list[ChatDelta]) -> None:
        parse = self.parser.feed
        for event in self.decoder.feed(data):
            out.extend(parse(event))


# ------------------------------------------------------------------------------ the family


class OpenAICompatible(Adapter):
    """OpenAI's wire format. Subclasses override the class attributes and a few hooks."""

    service = "openai"
    embed_batch_size: ClassVar[int | None] = 2048
    default_urls: ClassVar[Mapping[TaskType, str]] = {}
    model_setting: ClassVar[str] = "model_id"
    sends_model: ClassVar[bool] = True
    sends_dimensions: ClassVar[bool] = True
    # None: input_type is rejected; otherwise ES InputType -> the provider's value
    input_types: ClassVar[Mapping[InputType, str] | None] = None
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    stream_requires_done: ClassVar[bool] = True
    # the family streams OpenAI's `chat.completion.chunk` events, ending with [DONE]
    stream_wire = StreamWire.OPENAI_CHAT
    # `stream_options.include_usage` on streams, for providers whose API takes it (usage then comes last)
    stream_usage_option: ClassVar[bool] = True
    # chat parameters the provider's API does not take (refused, never dropped) and those it names otherwise
    chat_unsupported: ClassVar[frozenset[str]] = frozenset()
    chat_renamed: ClassVar[Mapping[str, str]] = {}
    # the optional parameters all pass (those in chat_unsupported are refused when the body is built), and
    # so do fields the gateway does not define: an upstream that lacks one says so itself
    chat_params: ClassVar[frozenset[str]] = frozenset(OPTIONAL_CHAT_PARAMS)
    extra_params: ClassVar[frozenset[str] | None] = None

    # -- hooks --------------------------------------------------------------------------------
    def url(self, task: TaskType) -> tuple[str, bool]:
        """(URL, whether it came from the endpoint's own settings)."""
        own = self.setting("url")
        if own:
            return own, True
        kind = T.TEXT_EMBEDDING if task in (T.TEXT_EMBEDDING, T.SPARSE_EMBEDDING) else task
        kind = T.CHAT_COMPLETION if kind == T.COMPLETION else kind
        try:
            return self.default_urls[kind], False
        except KeyError:
            raise StatusError(f"The [{self.service}] service needs a [url] for task type [{task.value}]") from None

    def auth_headers(self) -> dict[str, str]:
        key = self.setting("api_key")
        return {"Authorization": f"Bearer {key}"} if key else {}

    def model(self, req: CanonicalRequest) -> str | None:
        requested = getattr(req, "model", None)
        return requested or self.setting(self.model_setting)

    # -- requests -----------------------------------------------------------------------------
    def _request(self, payload: dict[str, Any]) -> UpstreamRequest:
        url, explicit = self.url(self.task)
        headers = {"Content-Type": "application/json", **self.auth_headers()}
        extra = self.endpoint.task_settings.get("headers")
        if isinstance(extra, dict):
            headers.update({str(k): str(v) for k, v in extra.items()})
        return UpstreamRequest(url=url, body=_encoder.encode(payload), headers=headers, explicit_url=explicit)

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        return self._request(self.chat_body(req))

    def chat_body(self, req: ChatRequest) -> dict[str, Any]:
        # an earlier turn's reasoning is not sent back: DeepSeek refuses `reasoning_content` in input messages
        # (api-docs.deepseek.com/guides/reasoning_model) and OpenAI's messages have no field for it
        body: dict[str, Any] = {"messages": openai_messages(
            [msgspec.structs.replace(m, reasoning=None, reasoning_details=None) for m in req.messages])}
        model = self.model(req)
        if self.sends_model and model:
            body["model"] = model
        optional = {self.max_tokens_field: req.max_tokens, "temperature": req.temperature, "top_p": req.top_p,
                    "stop": req.stop or None, "seed": req.seed, "tools": req.tools or None,
                    "tool_choice": req.tool_choice, "response_format": req.response_format,
                    "user": req.user or self.task_setting(req, "user"),
                    **{name: getattr(req, name) for name in self.chat_params}}
        for name, value in optional.items():
            if value is None:
                continue
            if name in self.chat_unsupported:
                raise unsupported(name, self.service)
            body[self.chat_renamed.get(name, name)] = value
        if req.reasoning is not None:
            body["reasoning_effort"] = self.reasoning_effort(req.reasoning)
        for name, value in req.extra.items():  # a client's extra_body, as OpenAI's own SDK would send it
            body.setdefault(name, value)
        # no `n`: 1 is every provider's default, and not every provider takes the field
        if req.stream:
            body["stream"] = True
            if self.stream_usage_option:
                body["stream_options"] = {"include_usage": True}
        return body

    def reasoning_effort(self, reasoning: dict[str, Any]) -> str:
        """Chat Completions takes reasoning as `reasoning_effort` only (platform.openai.com/docs/api-reference/chat
        /create): ES's `max_tokens`, `summary`, `exclude` and `enabled` have no place in it."""
        for name in ("max_tokens", "summary", "exclude", "enabled"):
            if reasoning.get(name) is not None:
                raise unsupported(f"reasoning.{name}", self.service)
        return str(reasoning["effort"])

    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        with decoding():
            return parse_chat_completion(body)

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return OpenAIStreamParser(requires_done=self.stream_requires_done)

    def stream_reader(self, req: ChatRequest) -> StreamReader:
        parser, decoder = self.stream_parser(req), self.stream_decoder()
        if type(parser) is OpenAIStreamParser and type(decoder) is SSEDecoder:  # a subclass's own reads its own way
            return OpenAIStreamReader(parser, decoder)
        return FramedReader(decoder, parser)


class OpenAIEmbeddings(OpenAICompatible):
    """The family members that embed too: OpenAI's `/embeddings`, or a subclass's own body."""

    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        return self._request(self.embed_body(req))

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        ids = req.token_ids if self.takes_token_ids else None
        body: dict[str, Any] = {"input": req.inputs if ids is None else ids}
        if self.sends_model:
            body["model"] = self.model(req)
        if self.input_types is None:
            reject_input_type(req.input_type)
        else:
            mapped = map_input_type(req.input_type or self._stored_input_type(), self.input_types, self.service)
            if mapped is not None:
                body["input_type"] = mapped
        dims = req.dimensions if req.dimensions is not None else self.endpoint.service_settings.get("dimensions")
        if dims is not None:
            if not self.sends_dimensions:
                if req.dimensions is not None:
                    raise unsupported("dimensions", self.service)
            else:
                body["dimensions"] = dims
        user = req.user or self.task_setting(req, "user")
        if user:
            body["user"] = user
        return body

    def _stored_input_type(self) -> InputType | None:
        raw = self.endpoint.task_settings.get("input_type")
        return InputType(raw) if raw else None

    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            return parse_embedding_list(body)


class OpenAIRerank(OpenAIEmbeddings):
    """The family members that rerank too, each with its own body; the answer is Cohere-style."""

    def rerank_request(self, req: RerankRequest) -> UpstreamRequest:
        return self._request(self.rerank_body(req))

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        raise NotImplementedError

    def parse_rerank(self, req: RerankRequest, body: bytes) -> RerankResult:
        with decoding():
            return parse_rerank(body)


class _OAuth2Mixin:
    """Client-credentials tokens in `authorize` when the endpoint has a `client_secret` and no API key."""

    def oauth2(self) -> ClientCredentials | None:
        raise NotImplementedError

    async def authorize(self, up: UpstreamRequest, client: Any) -> UpstreamRequest:
        creds = self.oauth2()
        if creds is None:
            return up
        token = await TOKENS.token(creds, client, self.endpoint.inference_id)  # type: ignore[attr-defined]
        return msgspec.structs.replace(up, headers={**up.headers, "Authorization": f"Bearer {token}"})

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        creds = self.oauth2()
        if status == 401 and creds is not None:
            TOKENS.forget(creds)  # revoked or expired early: the next call fetches a new one
        return generic_error(body)


class OpenAIAdapter(_OAuth2Mixin, OpenAIEmbeddings):
    service = "openai"
    maps_reasoning = True
    takes_token_ids = True  # `input`: "a string or array of tokens" (openai's EmbeddingCreateParams)
    default_urls = {T.TEXT_EMBEDDING: "https://api.openai.com/v1/embeddings",
                    T.CHAT_COMPLETION: "https://api.openai.com/v1/chat/completions"}

    def oauth2(self) -> ClientCredentials | None:
        secret = self.setting("client_secret")
        if self.setting("api_key") is not None or not secret:
            return None
        token_url, client_id = self.setting("token_url"), self.setting("client_id")
        if not token_url or not client_id:
            raise StatusError("The [openai] service needs [token_url] and [client_id] with [client_secret]")
        return ClientCredentials(str(token_url), str(client_id), str(secret), tuple(self.setting("scopes") or ()))

    def auth_headers(self) -> dict[str, str]:
        headers = {} if self.oauth2() is not None else super().auth_headers()
        org = self.setting("organization_id")
        if org:
            headers["OpenAI-Organization"] = org
        return headers


class AzureOpenAIAdapter(_OAuth2Mixin, OpenAIEmbeddings):
    """URL from resource, deployment and API version; `api-key` or Entra bearer; no model in bodies."""

    service = "azureopenai"
    maps_reasoning = True  # Azure OpenAI's chat completions take reasoning_effort as OpenAI's do
    sends_model = False
    # ES writes its own InputType value as is (AzureOpenAiEmbeddingsRequestEntity)
    input_types = {t: t.value for t in InputType}

    def url(self, task: TaskType) -> tuple[str, bool]:
        path = "embeddings" if task == T.TEXT_EMBEDDING else "chat/completions"
        return (f"https://{self.setting('resource_name')}.openai.azure.com/openai/deployments/"
                f"{self.setting('deployment_id')}/{path}?api-version={self.setting('api_version')}", False)

    def oauth2(self) -> ClientCredentials | None:
        secret = self.setting("client_secret")
        if self.setting("api_key") or self.setting("entra_id") or not secret:
            return None
        tenant, client_id, scopes = self.setting("tenant_id"), self.setting("client_id"), self.setting("scopes")
        if not tenant or not client_id or not scopes:
            raise StatusError("The [azureopenai] service needs [tenant_id], [client_id] and [scopes] with "
                              "[client_secret]")
        # the Microsoft identity platform's v2.0 token endpoint of the tenant (learn.microsoft.com/entra/
        # identity-platform/v2-oauth2-client-creds-grant-flow); credentials in the form, as Azure Identity sends them
        return ClientCredentials(f"https://login.microsoftonline.com/{quote(str(tenant), safe='')}/oauth2/v2.0/token",
                                 str(client_id), str(secret), tuple(scopes), basic_auth=False)

    def auth_headers(self) -> dict[str, str]:
        entra = self.setting("entra_id")
        if entra:
            return {"Authorization": f"Bearer {entra}"}
        key = self.setting("api_key")
        if key is None:
            self.oauth2()  # the settings a token needs are there: authorize() adds it
            return {}
        return {"api-key": key}


class MistralAdapter(OpenAIEmbeddings):
    service = "mistral"
    model_setting = "model"
    sends_dimensions = False
    max_tokens_field = "max_tokens"
    # Mistral's chat schema forbids unknown fields (422 extra_forbidden): no stream_options (usage comes in
    # the last chunk anyway), `random_seed` for the seed, no `user` (docs.mistral.ai/api, chat completion)
    stream_usage_option = False
    chat_renamed = {"seed": "random_seed"}
    chat_unsupported = frozenset({"user"})
    default_urls = {T.TEXT_EMBEDDING: "https://api.mistral.ai/v1/embeddings",
                    T.CHAT_COMPLETION: "https://api.mistral.ai/v1/chat/completions"}

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        return {**super().embed_body(req), "encoding_format": "float"}


class DeepSeekAdapter(OpenAICompatible):
    service = "deepseek"
    max_tokens_field = "max_tokens"
    default_urls = {T.CHAT_COMPLETION: "https://api.deepseek.com/chat/completions"}


class GroqAdapter(OpenAICompatible):
    service = "groq"
    default_urls = {T.CHAT_COMPLETION: "https://api.groq.com/openai/v1/chat/completions"}


class AI21Adapter(OpenAICompatible):
    service = "ai21"
    max_tokens_field = "max_tokens"
    # Jamba chat takes model, messages, tools, documents, response_format, max_tokens, temperature, top_p,
    # stop, n and stream, nothing else (docs.ai21.com/reference/jamba-1-6-api-ref; the ai21 SDK agrees)
    stream_usage_option = False
    chat_unsupported = frozenset({"seed", "user", "tool_choice"})
    default_urls = {T.CHAT_COMPLETION: "https://api.ai21.com/studio/v1/chat/completions"}


class FireworksAIAdapter(OpenAIEmbeddings):
    service = "fireworksai"
    max_tokens_field = "max_tokens"
    # the fireworks-ai SDK has no stream_options: usage comes in the last chunk (its ChatCompletionChunk.usage)
    stream_usage_option = False
    default_urls = {T.TEXT_EMBEDDING: "https://api.fireworks.ai/inference/v1/embeddings",
                    T.CHAT_COMPLETION: "https://api.fireworks.ai/inference/v1/chat/completions"}

    def url(self, task: TaskType) -> tuple[str, bool]:
        # an embeddings endpoint stores ES's DEFAULT_URL when none was given (proxy.catalogue): that is the
        # service's own URL, routed like any default, not one the user chose
        url, own = super().url(task)
        return url, own and url not in self.default_urls.values()


class NvidiaAdapter(OpenAIRerank):
    """NIM: `input_type` passage/query (query when unset, as ES does), and its own rerank shape."""

    service = "nvidia"
    sends_dimensions = False
    max_tokens_field = "max_tokens"
    input_types = {InputType.INGEST: "passage", InputType.SEARCH: "query"}
    default_urls = {T.TEXT_EMBEDDING: "https://integrate.api.nvidia.com/v1/embeddings",
                    T.CHAT_COMPLETION: "https://integrate.api.nvidia.com/v1/chat/completions",
                    T.RERANK: "https://ai.api.nvidia.com/v1/retrieval/nvidia/reranking"}

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        body = super().embed_body(req)
        body.setdefault("input_type", "query")
        truncate = self.task_setting(req, "truncate")
        if truncate:
            # build.nvidia.com embedding API reference: `truncate` is NONE, START or END
            body["truncate"] = str(truncate).upper()
        return body

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        # NIM has no top_n: the gateway cuts the ranking after sorting (pipeline.finish_rerank)
        return {"model": self.setting("model_id"), "query": {"text": req.query},
                "passages": [{"text": d} for d in req.documents]}


class OpenShiftAIAdapter(OpenAIRerank):
    """vLLM / KServe behind the user's URL: OpenAI embeddings and chat, Cohere-style rerank."""

    service = "openshift_ai"

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        return rerank_body(req, model=self.setting("model_id"))


class LlamaAdapter(OpenAIEmbeddings):
    """Llama Stack: OpenAI chat at the user's URL; embeddings as `{model_id, contents}`."""

    service = "llama"
    sends_dimensions = False

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        _reject_embed_extras(req, self.service)
        return {"model_id": self.model(req), "contents": req.inputs}

    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            return parse_bare_embeddings(body)


class HuggingFaceAdapter(OpenAIRerank):
    """Inference Endpoints / TEI at the user's URL: OpenAI chat, TEI `{inputs}` embeddings and TEI rerank."""

    service = "hugging_face"
    sends_model = True
    # TGI's chat API as huggingface_hub's InferenceClient.chat_completion sends it: max_tokens, no `user`
    max_tokens_field = "max_tokens"
    chat_unsupported = frozenset({"user"})

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        _reject_embed_extras(req, self.service)
        return {"inputs": req.inputs}

    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            return parse_bare_embeddings(body)

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        # TEI's native /rerank; top_n is applied by the gateway after ranking
        return {"query": req.query, "texts": req.documents, "return_text": bool(req.return_documents)}


def _reject_embed_extras(req: EmbedRequest, service: str) -> None:
    """Bodies with nothing but the texts: every other embedding parameter is refused."""
    reject_input_type(req.input_type)
    for name in ("dimensions", "user"):
        if getattr(req, name) is not None:
            raise unsupported(name, service)


class _WrappedVectors(msgspec.Struct):
    embeddings: list[msgspec.Raw]


_wrapped_decoder = msgspec.json.Decoder(_WrappedVectors)


def parse_bare_embeddings(body: bytes) -> EmbedResult:
    """`[[...], ...]` (TEI) or `{"embeddings": [[...], ...]}` (Llama Stack, HF endpoints)."""
    if body.lstrip()[:1] == b"[":
        return EmbedResult(vectors=_vectors_decoder.decode(body))
    return EmbedResult(vectors=_wrapped_decoder.decode(body).embeddings)
