"""IBM watsonx.ai (`watsonxai`): text embeddings, rerank, and chat (completion and chat_completion,
streamed or not), behind an IBM Cloud IAM token exchange.

`authorize` trades the endpoint's API key for a bearer token at IBM Cloud IAM and caches it per API
key (keyed by a SHA-256 of the key, never the key itself) until shortly before it expires. Every
URL carries the API version as `?version=<api_version>`. Sources: https://cloud.ibm.com/apidocs/watsonx-ai; ES
`services/ibmwatsonx/*`; IBM's own Java SDK (`IBM/watsonx-ai-java-sdk`) for the wire details ES
does not show.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, ClassVar, Mapping
from urllib.parse import quote, urlencode

import aiohttp
import msgspec

from proxy.errors import StatusError, StreamReportedError, UpstreamError
from proxy.types import (ChatDelta, ChatRequest, ChatResult, EmbedRequest, EmbedResult, RankedDoc, RerankRequest,
                         RerankResult, TaskType, Usage)

from .base import (Adapter, Framing, ProviderError, SSEEvent, StreamCut, StreamParser, UpstreamRequest, decoding,
                   generic_error, host_region, malformed, reject_input_type, unsupported)
from .openai_compat import OpenAIStreamParser, openai_messages, parse_chat_completion
from .tokens import ExpiringTokens

T = TaskType
_encoder = msgspec.json.Encoder()

# verified: ES IbmWatsonxRequest.decorateWithBearerToken (URL, form body, Content-Type) and IBM's Java SDK
# IAMAuthenticator (same URL and grant type; reply {access_token, expires_in, expiration, ...}).
IAM_URL = "https://iam.cloud.ibm.com/identity/token"
IAM_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
DEFAULT_TOKEN_LIFETIME = 3600.0
# verified: ES IbmWatsonxServiceFields EMBEDDING_MAX_BATCH_SIZE = 1000
EMBED_BATCH = 1000
# verified: ES IbmWatsonxUtils (ml/v1/text/embeddings, ml/v1/text/chat). Rerank: ES's constant is `reranks`, but
# IBM's API and SDKs use /ml/v1/text/rerank (IBM Java SDK, quarkus-langchain4j WireMockUtil); we use IBM's path.
# Streaming: ES posts to /ml/v1/text/chat; IBM's SDKs stream from /ml/v1/text/chat_stream, which we use.
PATHS = {"embeddings": "/ml/v1/text/embeddings", "rerank": "/ml/v1/text/rerank", "chat": "/ml/v1/text/chat",
         "chat_stream": "/ml/v1/text/chat_stream"}



def key_id(api_key: str) -> str:
    """A stable, non-reversible name for an API key: what the token cache and logs may hold."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ IAM tokens


class _IamToken(msgspec.Struct):
    access_token: str = ""
    expires_in: float | None = None
    expiration: float | None = None  # epoch seconds


class _IamError(msgspec.Struct):
    errorMessage: str | None = None  # noqa: N815 (IAM's field name)
    errorCode: str | None = None  # noqa: N815


_iam_token = msgspec.json.Decoder(_IamToken)
_iam_error = msgspec.json.Decoder(_IamError)

# ES BaseResponseHandler prefixes, as ES IbmWatsonxRequest.validateResponse words IAM failures
_IAM_PREFIXES = {401: "Received an authentication error status code", 403: "Received a permission denied error "
                 "status code", 400: "Received a bad request status code", 429: "Received a rate limit status code"}


class IamTokenCache(ExpiringTokens):
    """Bearer tokens per (API key digest, IAM URL)."""

    def __init__(self) -> None:
        # refresh a little early: 5 minutes before a 1 h token expires, a fifth of shorter lifetimes
        super().__init__(lambda lifetime: min(300.0, lifetime * 0.2))

    def forget(self, api_key: str, url: str) -> None:
        self.drop((key_id(api_key), url))

    async def token(self, api_key: str, url: str, session: aiohttp.ClientSession, inference_id: str) -> str:
        return await self.get((key_id(api_key), url), lambda: self._exchange(api_key, url, session, inference_id))

    async def _exchange(self, api_key: str, url: str, session: aiohttp.ClientSession,
                        inference_id: str) -> tuple[str, float]:
        who = f"for request to generate Bearer Token from inference entity id [{inference_id}]"
        form = urlencode({"grant_type": IAM_GRANT, "apikey": api_key})
        try:
            async with session.post(url, data=form.encode(), timeout=aiohttp.ClientTimeout(total=30),
                                    headers={"Content-Type": "application/x-www-form-urlencoded",
                                             "Accept": "application/json"}) as resp:
                status, reason, body = resp.status, resp.reason, await resp.read()
        except asyncio.TimeoutError:
            raise UpstreamError(f"The IBM Cloud IAM token endpoint did not answer in time {who}",
                                upstream_status=408, retryable=True) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"Failed to reach the IBM Cloud IAM token endpoint {who}: {type(exc).__name__}",
                                upstream_status=502, status=502, retryable=True) from None
        if status >= 300:
            raise _iam_failure(status, reason, body, who, api_key)
        try:
            token = _iam_token.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise malformed("IAM token response") from None
        if not token.access_token:
            raise malformed("IAM token response (no access_token)")
        if token.expiration:
            lifetime = token.expiration - time.time()
        else:
            lifetime = token.expires_in if token.expires_in is not None else DEFAULT_TOKEN_LIFETIME
        return token.access_token, max(0.0, float(lifetime))


def _iam_failure(status: int, reason: str | None, body: bytes, who: str, api_key: str) -> UpstreamError:
    """ES's wording (IbmWatsonxRequest.buildError); IAM's own `errorMessage` when it sent one (ES shows the
    HTTP reason phrase)."""
    if status == 404:
        prefix = f"Resource not found at [{IAM_URL}]"
    elif status >= 500:
        prefix = "Received a server error status code"
    elif 300 <= status < 400:
        prefix = "Unhandled redirection"
    else:
        prefix = _IAM_PREFIXES.get(status, "Received an unsuccessful status code")
    message = reason
    code = None
    try:
        info = _iam_error.decode(body)
        message, code = info.errorMessage or reason, info.errorCode
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    text = f"{prefix} {who} status [{status}]"
    if message:
        text += f". Error message: [{message.replace(api_key, '***') if api_key else message}]"
    return UpstreamError(text, upstream_status=status, retryable=status == 429 or status >= 500, provider_code=code)


# ------------------------------------------------------------------------------ response Structs


class _Embedding(msgspec.Struct):
    embedding: msgspec.Raw


class _EmbeddingResponse(msgspec.Struct):
    results: list[_Embedding]
    input_token_count: int | None = None


class _RerankInput(msgspec.Struct):
    text: str | None = None


class _RerankItem(msgspec.Struct):
    index: int
    score: float
    input: _RerankInput | None = None


class _RerankResponse(msgspec.Struct):
    results: list[_RerankItem]
    input_token_count: int | None = None


class _Error(msgspec.Struct):
    message: str | None = None
    code: str | None = None


class _ErrorBody(msgspec.Struct):
    errors: list[_Error] | None = None
    error: Any = None


_embeddings = msgspec.json.Decoder(_EmbeddingResponse)
_rerank = msgspec.json.Decoder(_RerankResponse)
_error_body = msgspec.json.Decoder(_ErrorBody)


def watsonx_error(body: bytes) -> ProviderError | None:
    """`{"errors":[{"code","message","more_info"}],"trace","status_code"}` (verified: IBM Java SDK
    WatsonxErrorTest); ES's IbmWatsonxErrorResponseEntity reads `error.message`, also accepted."""
    try:
        data = _error_body.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return generic_error(body)
    if data.errors:
        first = data.errors[0]
        messages = "; ".join(e.message for e in data.errors if e.message)
        return ProviderError(message=messages or None, code=first.code, type=first.code)
    return generic_error(body)


class WatsonxStreamParser(OpenAIStreamParser):
    """OpenAI-shaped chunks in `id:`/`event: message`/`data:` events, with no `data: [DONE]`.

    verified: IBM Java SDK ChatServiceTest recorded chat_stream bodies: the last event is a chunk with
    `"choices": []` and `usage`, after the one carrying `finish_reason`; SseEventProcessor ignores
    `event: close`, treats `event: error` as an error, and notes that some models end a tool call without a
    finish_reason (so the final usage chunk also counts as the end). A stream that stops before either a
    finish_reason or that usage chunk is cut.
    """

    def __init__(self) -> None:
        super().__init__(requires_done=False)
        self.ended = False

    def feed(self, event: SSEEvent) -> list[ChatDelta]:
        if event.event == "close":
            self.ended = True
            return []
        if event.event == "error":
            info = watsonx_error(event.data.encode())
            raise StreamReportedError(info.message if info and info.message else event.data[:300],
                                      provider_code=info.code if info else None)
        deltas = super().feed(event)
        for d in deltas:
            if d.usage is not None:
                self.ended = True
            if d.tool_calls:
                # continuation fragments say `"name": ""`; clients concatenate names, so drop the empty ones
                for call in d.tool_calls:
                    if call.function is not None and call.function.name == "":
                        call.function.name = None
        return deltas

    def finish(self) -> list[ChatDelta]:
        if self.done or self.finished or self.ended:
            return []
        raise StreamCut()


# ------------------------------------------------------------------------------ the adapter


class WatsonxAIAdapter(Adapter):
    service = "watsonxai"
    framing = Framing.SSE
    embed_batch_size: ClassVar[int | None] = EMBED_BATCH
    tokens: ClassVar[IamTokenCache] = IamTokenCache()
    # The IAM token URL; the `client` given to authorize() applies the gateway's `upstreams` override to it.
    iam_url: ClassVar[str] = IAM_URL

    @classmethod
    def data_location(cls, settings: Mapping[str, Any]) -> tuple[str, str] | None:
        # watsonx.ai runtime hosts are regional: `{region}.ml.cloud.ibm.com` (us-south, eu-de, jp-tok, ...)
        region = host_region(settings.get("url"), r"^([a-z]+-[a-z]+)\.ml\.cloud\.ibm\.com$")
        return ("ibm", region) if region else None

    # -- URLs ---------------------------------------------------------------------------------
    def _url(self, kind: str) -> str:
        base = str(self.setting("url") or "").strip().rstrip("/")
        if not base:
            raise StatusError("The [watsonxai] service needs a [url]")
        # ES treats `url` as a host (URIBuilder().setScheme("https").setHost(url)); a full URL is accepted too
        if "://" not in base:
            base = f"https://{base}"
        return f"{base}{PATHS[kind]}?version={quote(str(self.setting('api_version') or ''), safe='')}"

    # -- requests -----------------------------------------------------------------------------
    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        return self._request("embeddings", self.embed_body(req))

    def rerank_request(self, req: RerankRequest) -> UpstreamRequest:
        return self._request("rerank", self.rerank_body(req))

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        return self._request("chat_stream" if req.stream else "chat", self.chat_body(req))

    def _request(self, kind: str, body: dict[str, Any]) -> UpstreamRequest:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if kind == "chat_stream"
                   else "application/json"}
        # the endpoint's `url` is its own setting: gateway-wide origin overrides do not apply
        return UpstreamRequest(url=self._url(kind), body=_encoder.encode(body), headers=headers, explicit_url=True)

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        # ES IbmWatsonxService.validateInputType: validateInputTypeIsUnspecifiedOrInternal
        reject_input_type(req.input_type)
        if req.dimensions is not None:
            raise unsupported("dimensions", self.service)
        if req.user is not None:
            raise unsupported("user", self.service)
        # verified: ES IbmWatsonxEmbeddingsRequestEntity
        return {"inputs": req.inputs, "model_id": self.setting("model_id"), "project_id": self.setting("project_id")}

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        # verified: ES IbmWatsonxRerankRequestEntity (field order and the always-present parameters object)
        parameters: dict[str, Any] = {}
        truncate = self.task_setting(req, "truncate_input_tokens")
        if truncate is not None:
            parameters["truncate_input_tokens"] = truncate
        options: dict[str, Any] = {}
        if req.return_documents is not None:
            options["inputs"] = req.return_documents
        if req.top_n is not None:
            options["top_n"] = req.top_n
        parameters["return_options"] = options
        return {"model_id": self.setting("model_id"), "query": req.query,
                "inputs": [{"text": d} for d in req.documents], "project_id": self.setting("project_id"),
                "parameters": parameters}

    def chat_body(self, req: ChatRequest) -> dict[str, Any]:
        if req.user is not None:
            raise unsupported("user", self.service)
        # ES IbmWatsonxChatCompletionRequestEntity: project_id + the unified (OpenAI) body with `max_tokens` and no
        # stream_options; the model comes from the request when it names one (IbmWatsonxChatCompletionModel.of)
        body: dict[str, Any] = {"project_id": self.setting("project_id"),
                                "model_id": req.model or self.setting("model_id"),
                                "messages": openai_messages(req.messages)}
        optional = {"max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p,
                    "stop": req.stop or None, "seed": req.seed, "tools": req.tools or None,
                    "response_format": req.response_format}
        body.update({k: v for k, v in optional.items() if v is not None})
        if isinstance(req.tool_choice, str):
            # verified: IBM Java SDK TextChatRequest: string choices go in `tool_choice_option`
            body["tool_choice_option"] = req.tool_choice
        elif req.tool_choice is not None:
            body["tool_choice"] = req.tool_choice
        return body

    async def authorize(self, up: UpstreamRequest, client: Any) -> UpstreamRequest:
        api_key = self.setting("api_key")
        if not api_key:
            raise StatusError("The [watsonxai] service needs an [api_key]")
        token = await self.tokens.token(str(api_key), self.iam_url, client, self.endpoint.inference_id)
        return msgspec.structs.replace(up, headers={**up.headers, "Authorization": f"Bearer {token}"})

    # -- responses ----------------------------------------------------------------------------
    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            resp = _embeddings.decode(body)
        return EmbedResult(vectors=[r.embedding for r in resp.results], usage=_input_usage(resp.input_token_count))

    def parse_rerank(self, req: RerankRequest, body: bytes) -> RerankResult:
        with decoding():
            ranked = _rerank.decode(body)
        return RerankResult(ranked=[RankedDoc(index=r.index, relevance_score=r.score,
                                              text=r.input.text if r.input else None)
                                    for r in ranked.results], usage=_input_usage(ranked.input_token_count))

    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        with decoding():
            return parse_chat_completion(body)

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return WatsonxStreamParser()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        if status == 401:
            # an expired or revoked token: the next call exchanges the key again
            api_key = self.setting("api_key")
            if api_key:
                self.tokens.forget(str(api_key), self.iam_url)
        return watsonx_error(body)


def _input_usage(tokens: int | None) -> Usage | None:
    return None if tokens is None else Usage(prompt_tokens=tokens, total_tokens=tokens)
