"""Azure AI Studio / AI Foundry deployments.

Three shapes behind one service, picked by `provider` and `endpoint_type`:
- token (serverless, pay-as-you-go) endpoints speak an OpenAI-like format at `target` + `/v1/...`,
  except provider `openai`, whose `target` is the full Azure OpenAI deployment URL;
- realtime (managed online) endpoints take `{"input_data": {"input_string": [...], "parameters": {...}}}`
  at `target` and answer `{"output": "..."}`;
- rerank (Cohere models, token endpoints) is Cohere-style.

Sources: ES `services/azureaistudio/AzureAiStudioConstants.java`, `AzureAiStudioProviderCapabilities.java`,
`AzureAiStudioService.java`, `request/AzureAiStudioRequest.java`, `AzureAiStudioEmbeddingsRequestEntity.java`,
`AzureAiStudioChatCompletionRequestEntity.java`, `AzureAiStudioRerankRequestEntity.java`,
`response/AzureAiStudioChatCompletionResponseEntity.java`, `AzureAiStudioRerankResponseEntity.java`,
`action/AzureAiStudioActionCreator.java`, `completion/AzureAiStudioChatCompletionTaskSettings.java`.

Source: https://learn.microsoft.com/azure/ai-foundry/model-inference/reference/reference-model-inference-api
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import msgspec

from proxy.errors import StatusError
from proxy.types import ChatRequest, ChatResult, EmbedRequest, InputType, RerankRequest, TaskType

from .base import decoding, host_region, map_input_type, unsupported
from .openai_compat import OpenAIRerank
from .rerank_compat import rerank_body

T = TaskType

# Token (serverless) endpoints speak the Azure AI Model Inference API, as the azure-ai-inference SDK calls it:
# `{target}/chat/completions` and `{target}/embeddings` with an api-version, top-level max_tokens/temperature/
# top_p (learn.microsoft.com/azure/ai-foundry/model-inference/reference/reference-model-inference-chat-completions).
# ES (AzureAiStudioConstants) posts /v1/... with the sampling values nested in `parameters`, which that API does
# not read. Rerank (Cohere models) stays Cohere's own /v1/rerank.
PATHS: Mapping[TaskType, str] = {T.TEXT_EMBEDDING: "/embeddings", T.COMPLETION: "/chat/completions",
                                 T.RERANK: "/v1/rerank"}
API_VERSION = "2024-05-01-preview"  # the Model Inference API version azure-ai-inference sends
# verified: AzureAiStudioChatCompletionTaskSettings.DEFAULT_MAX_NEW_TOKENS, filled in by ES at creation
# (AzureAiStudioService.updateModelWithChatCompletionDetails) when the endpoint sets none
DEFAULT_MAX_NEW_TOKENS = 64

# verified: AzureAiStudioProviderCapabilities (ES checks these at PUT time; we check them per request)
_TASK_PROVIDERS: Mapping[TaskType, frozenset[str]] = {
    T.COMPLETION: frozenset({"openai", "mistral", "meta", "microsoft_phi", "cohere", "databricks"}),
    T.TEXT_EMBEDDING: frozenset({"openai", "cohere"}),
    T.RERANK: frozenset({"cohere"}),
}
_ENDPOINT_PROVIDERS: Mapping[tuple[TaskType, str], frozenset[str]] = {
    (T.COMPLETION, "token"): frozenset({"openai", "meta", "cohere"}),
    (T.COMPLETION, "realtime"): frozenset({"mistral", "meta", "microsoft_phi", "databricks"}),
    (T.TEXT_EMBEDDING, "token"): frozenset({"openai", "cohere"}),
    (T.TEXT_EMBEDDING, "realtime"): frozenset(),
    (T.RERANK, "token"): frozenset({"cohere"}),
    (T.RERANK, "realtime"): frozenset(),
}


class _Realtime(msgspec.Struct):
    output: str


_realtime_decoder = msgspec.json.Decoder(_Realtime)


class AzureAIStudioAdapter(OpenAIRerank):
    service = "azureaistudio"

    @classmethod
    def data_location(cls, settings: Mapping[str, Any]) -> tuple[str, str] | None:
        # serverless `{deployment}.{region}.models.ai.azure.com`, managed `{endpoint}.{region}.inference.ml.azure.com`
        region = host_region(settings.get("target"), r"\.([a-z0-9]+)\.(?:models\.ai|inference\.ml)\.azure\.com$")
        return ("azure", region) if region else None
    display_name: ClassVar[str] = "Azure AI Studio"  # ES AzureAiStudioService.SERVICE_NAME
    sends_model = False
    # verified: AzureAiStudioEmbeddingsRequestEntity.convertToString; others fail ES validateInputType
    input_types = {InputType.INGEST: "document", InputType.SEARCH: "query"}
    # verified: AzureAiStudioService batches with OpenAiServiceFields.EMBEDDING_MAX_BATCH_SIZE (2048)
    embed_batch_size = 2048
    # its chat body is ES's {messages, parameters} shape, not OpenAI's: no optional parameter is passed on
    chat_params: ClassVar[frozenset[str]] = frozenset()
    extra_params: ClassVar[frozenset[str] | None] = frozenset()

    # -- endpoint shape -----------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return str(self.setting("provider") or "").lower()

    @property
    def realtime(self) -> bool:
        return str(self.setting("endpoint_type") or "").lower() == "realtime"

    def _check_capabilities(self) -> None:
        task, provider = self.task, self.provider
        endpoint_type = "realtime" if self.realtime else "token"
        if provider not in _TASK_PROVIDERS.get(task, frozenset()):
            raise StatusError(f"The [{task.value}] task type for provider [{provider}] is not available")
        if provider not in _ENDPOINT_PROVIDERS.get((task, endpoint_type), frozenset()):
            raise StatusError(f"The [{endpoint_type}] endpoint type with [{task.value}] task type for provider "
                              f"[{provider}] is not available")

    def url(self, task: TaskType) -> tuple[str, bool]:
        """`target` is the endpoint's own URL, so origin overrides never apply (explicit)."""
        target = str(self.setting("target") or "")
        if self.provider == "openai" or self.realtime:
            return target, True
        query = "" if task == T.RERANK else f"?api-version={API_VERSION}"
        return target.rstrip("/") + PATHS[task] + query, True

    def auth_headers(self) -> dict[str, str]:
        # verified: AzureAiStudioRequest.setAuthHeader
        key = str(self.setting("api_key") or "")
        if self.provider == "openai":
            return {"api-key": key}
        if self.realtime or self.task == T.RERANK:
            return {"Authorization": f"Bearer {key}"}
        # the Model Inference API: azure-ai-inference's AzureKeyCredential sends both
        return {"Authorization": f"Bearer {key}", "api-key": key}

    # -- embeddings ---------------------------------------------------------------------------
    def embed_body(self, req: EmbedRequest) -> dict[str, Any]:
        self._check_capabilities()
        # verified: AzureAiStudioEmbeddingsRequestEntity: input, user?, dimensions? (when set by the user),
        # input_type? (document | query)
        body: dict[str, Any] = {"input": req.inputs}
        user = req.user or self.task_setting(req, "user")
        if user and self.provider != "openai":
            # the Model Inference embeddings request has no `user` (input, dimensions, encoding_format,
            # input_type, model) and refuses unknown fields
            raise unsupported("user", self.display_name)
        if user:
            body["user"] = user
        dims = req.dimensions if req.dimensions is not None else self.setting("dimensions")
        if dims is not None:
            body["dimensions"] = dims
        mapped = map_input_type(req.input_type or self._stored_input_type(), self.input_types or {},
                                self.display_name)
        if mapped is not None:
            body["input_type"] = mapped
        return body

    # -- completion ---------------------------------------------------------------------------
    def chat_body(self, req: ChatRequest) -> dict[str, Any]:
        self._check_capabilities()
        for name, value in (("stop", req.stop), ("seed", req.seed), ("tools", req.tools),
                            ("tool_choice", req.tool_choice), ("response_format", req.response_format),
                            ("user", req.user)):
            if value:
                raise unsupported(name, self.service)
        messages = []
        for m in req.messages:
            if m.tool_calls or m.tool_call_id:
                raise unsupported("tool_calls", self.service)
            if m.name:
                raise unsupported("name", self.service)
            if m.content is not None and not isinstance(m.content, str):
                raise unsupported("content parts", self.service)
            # ES writes {"content", "role"} objects (AzureAiStudioChatCompletionRequestEntity)
            messages.append({"content": m.content or "", "role": m.role})
        params = self._parameters(req)
        if self.realtime:
            if req.stream:
                raise StatusError(f"Streaming is not supported for [realtime] endpoints of the [{self.service}] "
                                  f"service")
            data: dict[str, Any] = {"input_string": messages}
            if params:
                data["parameters"] = params
            return {"input_data": data}
        # top level, as both token APIs (Model Inference, Azure OpenAI) take them; neither has do_sample
        if "do_sample" in params:
            raise unsupported("do_sample", self.display_name)
        body: dict[str, Any] = {"messages": messages, "max_tokens": params.pop("max_new_tokens"), **params}
        if req.stream:
            body["stream"] = True  # verified: ES sends no stream_options here
        return body

    def _parameters(self, req: ChatRequest) -> dict[str, Any]:
        """ES's `parameters` object; canonical fields win over request task settings over stored ones."""
        temperature = req.temperature if req.temperature is not None else self.task_setting(req, "temperature")
        top_p = req.top_p if req.top_p is not None else self.task_setting(req, "top_p")
        do_sample = self.task_setting(req, "do_sample")
        max_new = req.max_tokens if req.max_tokens is not None else self.task_setting(req, "max_new_tokens")
        if max_new is None:
            max_new = DEFAULT_MAX_NEW_TOKENS
        params: dict[str, Any] = {}
        if temperature is not None:
            params["temperature"] = float(temperature)
        if top_p is not None:
            params["top_p"] = float(top_p)
        if do_sample is not None:
            # ES's task setting is a Boolean (AzureAiStudioChatCompletionTaskSettings); the SPEC (and so our
            # catalogue) says float: a number is sent as its truth value
            params["do_sample"] = bool(do_sample)
        params["max_new_tokens"] = int(max_new)
        return params

    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        if not self.realtime:
            return super().parse_chat(req, body)
        # verified: AzureAiStudioChatCompletionResponseEntity.parseRealtimeEndpointResponse reads the string
        # field `output`
        with decoding():
            resp = _realtime_decoder.decode(body)
        return ChatResult(id="", model="", content=resp.output, finish_reason="stop")

    # -- rerank -------------------------------------------------------------------------------
    def rerank_body(self, req: RerankRequest) -> dict[str, Any]:
        self._check_capabilities()
        # verified: AzureAiStudioRerankRequestEntity: documents, query, return_documents?, top_n? (root values
        # first, then task settings); no model (the deployment is the model)
        top_n = req.top_n if req.top_n is not None else self.task_setting(req, "top_n")
        return rerank_body(msgspec.structs.replace(req, top_n=top_n), model=None)
