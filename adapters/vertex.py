"""Google Vertex AI (`googlevertexai`): predict embeddings, Discovery Engine rank, Gemini
generateContent, and Model Garden partners (Anthropic `rawPredict`, OpenAI-shaped others).

Authentication is a service account: `authorize` signs an RS256 JWT with the account's key,
exchanges it at the account's `token_uri` for an OAuth2 access token, and caches that token per
account until five minutes before it expires. On the `embedding` task a `multimodalembedding` model embeds
one text or one image per instance (`{"text"}` / `{"image": {"bytesBase64Encoded", "mimeType"}}`, answers
`textEmbedding` / `imageEmbedding`: cloud.google.com/vertex-ai/generative-ai/docs/model-reference/
multimodal-embeddings); ES's Vertex service embeds text only. Sources:
https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference,
https://developers.google.com/identity/protocols/oauth2/service-account; ES `GoogleVertexAi*`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, ClassVar, Mapping
from urllib.parse import quote

import aiohttp
import msgspec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from proxy.chat_params import check as check_chat_params
from proxy.errors import RequestValidationError, StatusError, UpstreamError
from proxy.types import (CanonicalRequest, ChatRequest, ChatResult, EmbedPart, EmbedRequest, EmbedResult,
                         RankedDoc, RerankRequest, RerankResult, TaskType, Usage)

from .base import (Adapter, ProviderError, StreamParser, UpstreamRequest, decoding, generic_error, host_region,
                   map_input_type, unsupported)
from .google import (GEMINI_CHAT_PARAMS, GOOGLE_INPUT_TYPES, GeminiStreamParser, check_embed_user, gemini_chat_body,
                     google_error, malformed, parse_gemini_chat)
from .tokens import ExpiringTokens

T = TaskType
_encoder = msgspec.json.Encoder()

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3600
REFRESH_MARGIN = 300.0  # refresh this many seconds before the token expires
# verified: ES GoogleModelGardenAnthropicChatCompletionRequestEntity (VERTEX_2023_10_16, DEFAULT_MAX_TOKENS). The
# anthropic SDK's AnthropicVertex writes its direct-API version (2026-10-21) here; Anthropic's Vertex page
# (docs.anthropic.com/en/api/claude-on-vertex-ai) and Google's use-claude page say it must be vertex-2023-10-16.
ANTHROPIC_VERSION = "vertex-2023-10-16"
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024
# verified: ES GoogleVertexAiServiceFields EMBEDDING_MAX_BATCH_SIZE = 250 (cloud.google.com/vertex-ai/docs/quotas)
DEFAULT_EMBED_BATCH = 250
OPENAI_SHAPED = frozenset({"meta", "hugging_face", "mistral", "ai21"})
MULTIMODAL_MODEL = "multimodalembedding"  # multimodalembedding, multimodalembedding@001


# ------------------------------------------------------------------------------ service account


class ServiceAccount(msgspec.Struct, frozen=True):
    client_email: str
    private_key: str
    token_uri: str = DEFAULT_TOKEN_URI
    private_key_id: str | None = None
    project_id: str | None = None


_account_decoder = msgspec.json.Decoder(ServiceAccount)


def load_service_account(raw: Any) -> ServiceAccount:
    """The `service_account_json` secret (a JSON string, or already an object)."""
    try:
        if isinstance(raw, dict):
            return msgspec.convert(raw, ServiceAccount)
        return _account_decoder.decode(str(raw or ""))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # never echo the secret; msgspec's message names the field only
        raise StatusError(f"The [service_account_json] of this endpoint is not a valid Google service account key: "
                          f"{str(exc).split(' - at')[0]}", status=400) from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_jwt(account: ServiceAccount, now: int) -> str:
    """RS256 JWT for Google's OAuth2 service-account flow.

    verified: vercel/ai packages/google-vertex/src/edge/google-vertex-auth-edge.ts (header alg/typ/kid,
    claims iss/scope/aud/iat/exp = now + 3600, RSASSA-PKCS1-v1_5 SHA-256, form POST with
    grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=...).
    """
    try:
        key = serialization.load_pem_private_key(account.private_key.encode(), password=None)
    except (ValueError, TypeError):
        raise StatusError("The private key in [service_account_json] could not be read (expected an unencrypted "
                          "PEM RSA key)", status=400) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise StatusError("The private key in [service_account_json] is not an RSA key", status=400)
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if account.private_key_id:
        header["kid"] = account.private_key_id
    claims = {"iss": account.client_email, "scope": SCOPE, "aud": account.token_uri, "iat": now,
              "exp": now + TOKEN_LIFETIME}
    signing_input = f"{_b64url(_encoder.encode(header))}.{_b64url(_encoder.encode(claims))}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


class _Token(msgspec.Struct):
    access_token: str = ""
    expires_in: float = TOKEN_LIFETIME
    token_type: str = "Bearer"


_token_decoder = msgspec.json.Decoder(_Token)


class TokenCache(ExpiringTokens):
    """Access tokens per (client_email, token_uri)."""

    def __init__(self) -> None:
        super().__init__(lambda _lifetime: REFRESH_MARGIN)

    def forget(self, account: ServiceAccount) -> None:
        self.drop((account.client_email, account.token_uri))

    async def token(self, account: ServiceAccount, session: aiohttp.ClientSession, inference_id: str = "") -> str:
        return await self.get((account.client_email, account.token_uri),
                              lambda: self._exchange(account, session, inference_id))

    async def _exchange(self, account: ServiceAccount, session: aiohttp.ClientSession,
                        inference_id: str) -> tuple[str, float]:
        assertion = signed_jwt(account, int(time.time()))
        who = f"for service account [{account.client_email}]"
        if inference_id:
            who += f" for request from inference entity id [{inference_id}]"
        try:
            async with session.post(account.token_uri, data={"grant_type": JWT_BEARER, "assertion": assertion},
                                    headers={"Accept": "application/json"},
                                    timeout=aiohttp.ClientTimeout(total=30)) as resp:
                status, body = resp.status, await resp.read()
        except asyncio.TimeoutError:
            raise UpstreamError(f"The Google OAuth2 token endpoint did not answer in time {who}",
                                upstream_status=408, retryable=True) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"Failed to reach the Google OAuth2 token endpoint {who}: "
                                f"{type(exc).__name__}", upstream_status=502, status=502, retryable=True) from None
        if status >= 300:
            info = google_error(body)
            reason = f"Failed to obtain a Google OAuth2 access token {who} status [{status}]"
            if info is not None and info.message:
                reason += f". Error message: [{info.message}]"
            # an invalid grant (bad key, unknown account, clock skew) is an authentication failure
            upstream = 401 if status in (400, 401, 403) else status
            raise UpstreamError(reason, upstream_status=upstream, retryable=status == 429 or status >= 500,
                                provider_type=info.type if info else None)
        try:
            token = _token_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise malformed("token response") from None
        if not token.access_token:
            raise malformed("token response (no access_token)")
        return token.access_token, float(token.expires_in)


# ------------------------------------------------------------------------------ response Structs


class _Statistics(msgspec.Struct):
    token_count: float = 0
    truncated: bool = False


class _Embeddings(msgspec.Struct):
    values: msgspec.Raw
    statistics: _Statistics | None = None


class _Prediction(msgspec.Struct):
    embeddings: _Embeddings


class _PredictResponse(msgspec.Struct):
    predictions: list[_Prediction]


class _Record(msgspec.Struct):
    id: str
    score: float = 0.0
    content: str | None = None


class _RankResponse(msgspec.Struct):
    records: list[_Record] = []


class _MultimodalPrediction(msgspec.Struct, rename="camel"):
    text_embedding: msgspec.Raw = msgspec.Raw()  # empty when absent
    image_embedding: msgspec.Raw = msgspec.Raw()


class _MultimodalResponse(msgspec.Struct):
    predictions: list[_MultimodalPrediction]


_predict_decoder = msgspec.json.Decoder(_PredictResponse)
_multimodal_decoder = msgspec.json.Decoder(_MultimodalResponse)
_rank_decoder = msgspec.json.Decoder(_RankResponse)


# ------------------------------------------------------------------------------ the adapter


class GoogleVertexAiAdapter(Adapter):
    service = "googlevertexai"
    # ES GoogleVertexAiResponseHandler retries 500, 503 and 429 (as AI Studio's handler does)
    retry_statuses: ClassVar[frozenset[int]] = frozenset({429, 500, 503})
    tokens: ClassVar[TokenCache] = TokenCache()
    maps_reasoning = True  # Gemini thinkingConfig or Anthropic thinking; refused for the OpenAI-shaped partners

    @classmethod
    def data_location(cls, settings: Mapping[str, Any]) -> tuple[str, str] | None:
        # `location` names the regional host (ES GoogleVertexAiUtils.resolveHost); Model Garden endpoints
        # carry it in their URL: `{location}-aiplatform.googleapis.com` or a dedicated
        # `{id}.{location}-{project}.prediction.vertexai.goog`
        loc = settings.get("location")
        if isinstance(loc, str) and loc:
            return ("gcp", loc)
        for url in (settings.get("url"), settings.get("streaming_url")):
            found = (host_region(url, r"^([a-z]+-[a-z]+\d+)-aiplatform\.googleapis\.com$")
                     or host_region(url, r"\.([a-z]+-[a-z]+\d+)-[^.]+\.prediction\.vertexai\.goog$"))
            if found:
                return ("gcp", found)
        return None

    handles_embedding_task: ClassVar[bool] = True

    @classmethod
    def embeds_images(cls, settings: Mapping[str, Any]) -> bool:
        return str(settings.get("model_id") or "").lower().startswith(MULTIMODAL_MODEL)

    def multimodal(self) -> bool:
        return self.task == T.EMBEDDING and self.embeds_images(self.endpoint.service_settings)

    def __init__(self, endpoint: Any) -> None:
        super().__init__(endpoint)
        self.embed_batch_size = int(self.setting("max_batch_size") or DEFAULT_EMBED_BATCH)  # type: ignore[misc]
        if self.multimodal():
            # the Vertex SDK's MultiModalEmbeddingModel.get_embeddings sends one instance per call
            self.embed_batch_size = 1  # type: ignore[misc]
        self.provider = (self.setting("provider") or "google").lower()
        self._partner: Any = None

    # -- URLs ---------------------------------------------------------------------------------
    def _location(self) -> str | None:
        return self.setting("location") or None

    def _host(self) -> str:
        # verified: ES GoogleVertexAiUtils.resolveHost: no location -> global host, else "{location}-" prefix
        loc = self._location()
        return f"{loc}-aiplatform.googleapis.com" if loc and loc != "global" else "aiplatform.googleapis.com"

    def _project(self) -> str:
        project = self.setting("project_id")
        if not project:
            raise StatusError(f"The [{self.service}] service needs [project_id] in the service settings")
        return quote(str(project), safe="")

    def _model_url(self, publisher: str, model: str, action: str) -> str:
        # ES builds chat URLs with the `global` path segment whatever the location (GoogleVertexAiChatCompletionModel);
        # Google's documented form uses the endpoint's own location, which we follow (as ES does for predict).
        loc = quote(self._location() or "global", safe="")
        return (f"https://{self._host()}/v1/projects/{self._project()}/locations/{loc}/publishers/{publisher}"
                f"/models/{quote(model, safe='@')}:{action}")

    def _generation_url(self, req: ChatRequest, publisher: str, plain: str, streaming: str) -> tuple[str, bool]:
        own, own_stream = self.setting("url"), self.setting("streaming_url")
        if own or own_stream:
            # ES resolveUris: when only one is given it serves both kinds of call
            return (own_stream or own, True) if req.stream else (own or own_stream, True)
        model = self._model(req)
        return self._model_url(publisher, model, streaming if req.stream else plain), False

    def _model(self, req: CanonicalRequest) -> str:
        model = getattr(req, "model", None) or self.setting("model_id")
        if not model:
            raise StatusError(f"The [{self.service}] service needs [model_id] in the service settings")
        return str(model)

    # -- requests -----------------------------------------------------------------------------
    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        own = self.setting("url")
        url = own or self._model_url("google", self._model(req), "predict")
        return UpstreamRequest(url=url, body=_encoder.encode(self.embed_body(req)),
                               headers={"Content-Type": "application/json"}, explicit_url=bool(own))

    def rerank_request(self, req: RerankRequest) -> UpstreamRequest:
        own = self.setting("url")
        url = own or (f"https://discoveryengine.googleapis.com/v1/projects/{self._project()}/locations/global"
                      f"/rankingConfigs/default_ranking_config:rank")
        return UpstreamRequest(url=url, body=_encoder.encode(self.rerank_body(req)),
                               headers={"Content-Type": "application/json"}, explicit_url=bool(own))

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        headers = {"Content-Type": "application/json"}
        if self.provider == "google":
            url, explicit = self._generation_url(req, "google", "generateContent", "streamGenerateContent?alt=sse")
            thinking = self.task_setting(req, "thinking_config") or {}
            body = gemini_chat_body(req, self.service, max_tokens=self.task_setting(req, "max_tokens"),
                                    thinking_budget=thinking.get("thinking_budget"))
            return UpstreamRequest(url=url, body=_encoder.encode(body), headers=headers, explicit_url=explicit)
        if self.provider == "anthropic":
            url, explicit = self._generation_url(req, "anthropic", "rawPredict", "streamRawPredict")
            return UpstreamRequest(url=url, body=_encoder.encode(self.anthropic_body(req)), headers=headers,
                                   explicit_url=explicit)
        if self.provider in OPENAI_SHAPED:
            own, own_stream = self.setting("url"), self.setting("streaming_url")
            if not (own or own_stream):
                raise StatusError(f"The [{self.service}] service needs [url] or [streaming_url] for provider "
                                  f"[{self.provider}]")
            url, _ = self._generation_url(req, self.provider, "", "")
            return UpstreamRequest(url=url, body=_encoder.encode(self.partner().chat_body(req)), headers=headers,
                                   explicit_url=True)
        raise StatusError(f"The [{self.service}] service does not support provider [{self.provider}]")

    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        check_embed_user(req, self.service)
        if self.multimodal():
            return self.multimodal_body(req)
        task_type = map_input_type(req.input_type, GOOGLE_INPUT_TYPES, self.service)
        instances = []
        for text in req.inputs:
            item: dict[str, Any] = {"content": text}
            if task_type:
                item["task_type"] = task_type
            instances.append(item)
        body: dict[str, Any] = {"instances": instances}
        parameters: dict[str, Any] = {}
        auto_truncate = self.task_setting(req, "auto_truncate")
        if auto_truncate is not None:
            parameters["autoTruncate"] = auto_truncate
        dims = req.dimensions if req.dimensions is not None else self.endpoint.service_settings.get("dimensions")
        if dims is not None:
            # verified: vercel/ai packages/google-vertex/src/google-vertex-embedding-model.ts sends
            # parameters.outputDimensionality to :predict
            parameters["outputDimensionality"] = dims
        if parameters:
            body["parameters"] = parameters
        return body

    def multimodal_body(self, req: EmbedRequest) -> dict[str, Any]:
        if req.input_type is not None:  # the multimodal model has no task type (its API reference above)
            raise RequestValidationError(f"The [{self.service}] model [{self.setting('model_id')}] does not support "
                                         f"the [input_type] parameter", param="input_type")
        groups = req.contents if req.contents is not None else [[EmbedPart(type="text", value=t)] for t in req.inputs]
        body: dict[str, Any] = {"instances": [_multimodal_instance(g, self.service) for g in groups]}
        dims = req.dimensions if req.dimensions is not None else self.endpoint.service_settings.get("dimensions")
        if dims is not None:
            body["parameters"] = {"dimension": dims}
        return body

    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        # verified: ES GoogleVertexAiRerankRequestEntity (ids are the input positions as strings,
        # ignoreRecordDetailsInResponse = !return_documents, only when given)
        body: dict[str, Any] = {}
        model = self.setting("model_id")
        if model:
            body["model"] = model
        body["query"] = req.query
        body["records"] = [{"id": str(i), "content": doc} for i, doc in enumerate(req.documents)]
        if req.top_n is not None:
            body["topN"] = req.top_n
        if req.return_documents is not None:
            body["ignoreRecordDetailsInResponse"] = not req.return_documents
        return body

    def check_chat(self, req: ChatRequest) -> None:
        if self.provider == "google":
            check_chat_params(req, self.service, GEMINI_CHAT_PARAMS, ("top_k",))
        elif self.provider == "anthropic" or self.provider in OPENAI_SHAPED:
            if self.provider in OPENAI_SHAPED and req.reasoning is not None:
                # these partners take no reasoning, which the OpenAI body builder would map
                raise unsupported("reasoning", self.service)
            self.partner().check_chat(req)  # the partner's body builder is the one that maps them
        else:
            super().check_chat(req)

    def anthropic_body(self, req: ChatRequest) -> dict[str, Any]:
        if req.max_tokens is None and self.task_setting(req, "max_tokens") is None:
            req = msgspec.structs.replace(req, max_tokens=ANTHROPIC_DEFAULT_MAX_TOKENS)
        body = self.partner().body(req, sampling=True)  # vertex-2023-10-16 still takes them
        body.pop("model", None)  # the model is in the URL
        # `stream: true` only when streaming (the partner body's rule), as anthropic's AnthropicVertex client and
        # the rawPredict examples (cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude)
        # send it
        return {"anthropic_version": ANTHROPIC_VERSION, **body}

    def partner(self) -> Any:
        """The adapter that speaks a Model Garden partner's body (same endpoint settings)."""
        if self._partner is None:
            if self.provider == "anthropic":
                from .anthropic import AnthropicAdapter
                self._partner = AnthropicAdapter(self.endpoint)
            else:
                from .openai_compat import OpenAICompatible
                self._partner = OpenAICompatible(self.endpoint)
                if self.provider in ("mistral", "ai21", "meta"):
                    self._partner.max_tokens_field = "max_tokens"
        return self._partner

    async def authorize(self, up: UpstreamRequest, client: Any) -> UpstreamRequest:
        account = load_service_account(self.setting("service_account_json"))
        token = await self.tokens.token(account, client, self.endpoint.inference_id)
        return msgspec.structs.replace(up, headers={**up.headers, "Authorization": f"Bearer {token}"})

    # -- responses ----------------------------------------------------------------------------
    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        if self.provider == "google":
            return parse_gemini_chat(body, self._model(req))
        result: ChatResult = self.partner().parse_chat(req, body)
        return result

    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        with decoding():
            if self.multimodal():
                multi = _multimodal_decoder.decode(body)
                vectors = [p.text_embedding or p.image_embedding for p in multi.predictions]
                if len(vectors) != len(req.inputs) or not all(vectors):
                    raise malformed("response (wrong number of embeddings)")
                return EmbedResult(vectors=vectors)  # type: ignore[arg-type]
            resp = _predict_decoder.decode(body)
        if len(resp.predictions) != len(req.inputs):
            raise malformed("response (wrong number of embeddings)")
        tokens = int(sum(p.embeddings.statistics.token_count for p in resp.predictions if p.embeddings.statistics))
        usage = Usage(prompt_tokens=tokens, total_tokens=tokens) if tokens else None
        return EmbedResult(vectors=[p.embeddings.values for p in resp.predictions], usage=usage)

    def parse_rerank(self, req: RerankRequest, body: bytes) -> RerankResult:
        # verified: ES GoogleVertexAiRerankResponseEntity: records[].{id (the input index), score, content?}
        with decoding(also=(ValueError,)):  # an id that is not an index
            resp = _rank_decoder.decode(body)
            return RerankResult(ranked=[RankedDoc(index=int(r.id), relevance_score=r.score, text=r.content)
                                        for r in resp.records])

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        if self.provider == "google":
            return GeminiStreamParser(self._model(req))
        return self.partner().stream_parser(req)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        if status == 401:
            # a token revoked or expired early: the next call exchanges a new one
            try:
                self.tokens.forget(load_service_account(self.setting("service_account_json")))
            except StatusError:
                pass
        if self.provider in ("google",) or self.task in (T.TEXT_EMBEDDING, T.EMBEDDING, T.RERANK):
            return google_error(body)
        return generic_error(body)


__all__ = ["GoogleVertexAiAdapter", "ServiceAccount", "TokenCache", "load_service_account", "signed_jwt"]


def _multimodal_instance(group: list[EmbedPart], service: str) -> dict[str, Any]:
    """One text or one image: an instance holding both is answered with two separate embeddings."""
    if len(group) != 1:
        raise StatusError(f"The [{service}] service embeds one item per input; several items in one content "
                          f"object are not supported")
    part = group[0]
    if part.type == "text":
        return {"text": part.value}
    image: dict[str, str] = {"bytesBase64Encoded": part.value}
    if part.value.startswith("data:") and "," in part.value:
        head, image["bytesBase64Encoded"] = part.value.split(",", 1)
        mime = head[5:].split(";", 1)[0]
        if mime:
            image["mimeType"] = mime
    return {"image": image}
