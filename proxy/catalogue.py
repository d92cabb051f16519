"""The service catalogue as data: for each ES `service`, its task types, settings and defaults.

PUT and `_update` validate against these declarations (see `validation.py`); nothing here runs
I/O. Field order in each list is the order GET prints them in, after the ES settings classes
(e.g. OpenAI embeddings: model_id, url, organization_id, similarity, dimensions, max_input_tokens,
rate_limit). Sources: the Elasticsearch specification (`specification/inference/_types/CommonTypes.ts`, `TaskType.ts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from .types import TaskType

T = TaskType
EMBED = frozenset({T.TEXT_EMBEDDING})
SIMILARITIES = ("cosine", "dot_product", "l2_norm")


@dataclass(frozen=True)
class Setting:
    """One key of `service_settings` or `task_settings`.

    kind: str | int | float | bool | map | list | object (with `fields`) | str_or_object
    """

    name: str
    kind: str = "str"
    required: bool = False
    secret: bool = False
    choices: tuple[str, ...] | None = None
    positive: bool = False
    tasks: frozenset[TaskType] | None = None  # None: every task of the service
    fields: tuple["Setting", ...] | None = None
    default: Any = None
    updatable: bool = False  # secrets are always updatable

    def applies_to(self, task: TaskType) -> bool:
        return self.tasks is None or task in self.tasks or (task == T.EMBEDDING and T.TEXT_EMBEDDING in self.tasks)


@dataclass(frozen=True)
class OneOf:
    """Exactly one of `names` must be present (e.g. `api_key` or `entra_id`)."""

    names: tuple[str, ...]
    scope: str = "secret_settings"
    missing: str | None = None  # message override when none is present


@dataclass(frozen=True)
class Service:
    name: str
    tasks: frozenset[TaskType]
    service_settings: tuple[Setting, ...]
    task_settings: tuple[Setting, ...] = ()
    rate_limit: Mapping[TaskType, int] | int | None = None
    one_of: tuple[OneOf, ...] = ()
    streaming: frozenset[TaskType] | None = None  # None: completion and chat_completion if served
    local: bool = False  # served by a local engine, not a remote provider
    composite: bool = False  # performs by calling other endpoints (the router; see routing.py)
    deprecation: str | None = None
    defaults: Mapping[TaskType, Mapping[str, Any]] = field(default_factory=dict)
    # rules across several settings, run on valid settings: may normalise them in place, returns messages
    cross_check: Callable[[TaskType, dict[str, Any]], list[str]] | None = None

    def stream_tasks(self) -> frozenset[TaskType]:
        if self.streaming is not None:
            return self.streaming
        return self.tasks & {T.COMPLETION, T.CHAT_COMPLETION}

    def default_rpm(self, task: TaskType) -> int | None:
        if isinstance(self.rate_limit, Mapping):
            return self.rate_limit.get(task, self.rate_limit.get(T.TEXT_EMBEDDING) if task == T.EMBEDDING else None)
        return self.rate_limit

    def defaults_for(self, task: TaskType) -> Mapping[str, Any]:
        if task == T.EMBEDDING and task not in self.defaults:
            return self.defaults.get(T.TEXT_EMBEDDING, {})
        return self.defaults.get(task, {})

    def secret_names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.service_settings if s.secret)


# ------------------------------------------------------------------------- building blocks

def _s(name: str, kind: str = "str", **kw: Any) -> Setting:
    return Setting(name, kind, **kw)


API_KEY = _s("api_key", required=True, secret=True)
OPTIONAL_API_KEY = _s("api_key", secret=True)
MODEL_ID = _s("model_id", required=True)
URL = _s("url")
RATE_LIMIT = _s("rate_limit", "object", updatable=True,
                fields=(_s("requests_per_minute", "int", positive=True),))
SIMILARITY = _s("similarity", choices=SIMILARITIES, tasks=EMBED)
DIMENSIONS = _s("dimensions", "int", positive=True, tasks=EMBED)
MAX_INPUT_TOKENS = _s("max_input_tokens", "int", positive=True, tasks=EMBED)
RERANK_ONLY = frozenset({T.RERANK})
RERANK_TASK_SETTINGS = (
    _s("return_documents", "bool", tasks=RERANK_ONLY),
    _s("top_n", "int", positive=True, tasks=RERANK_ONLY),
)
ALL_GENERATION = frozenset({T.COMPLETION, T.CHAT_COMPLETION})
ADAPTIVE_ALLOCATIONS = _s("adaptive_allocations", "object", updatable=True, fields=(
    _s("enabled", "bool"),
    _s("min_number_of_allocations", "int"),
    _s("max_number_of_allocations", "int", positive=True),
))
INPUT_TYPE_INGEST_SEARCH = _s("input_type", choices=("ingest", "search"), tasks=EMBED)
INPUT_TYPE_ALL = _s("input_type", choices=("classification", "clustering", "ingest", "search"), tasks=EMBED)


def _tasks(*names: TaskType) -> frozenset[TaskType]:
    return frozenset(names)


def _dimensions_set_by_user(task: TaskType, ss: dict[str, Any]) -> list[str]:
    """OpenShiftAiEmbeddingsServiceSettings prints `dimensions_set_by_user` always."""
    if task in (T.TEXT_EMBEDDING, T.EMBEDDING):
        ss["dimensions_set_by_user"] = ss.get("dimensions") is not None
    return []


def _local_deployment(task: TaskType, ss: dict[str, Any]) -> list[str]:
    """The `elasticsearch` service: with `deployment_id` the model, threads and allocations come from that
    deployment (ES `ElasticsearchInternalService.validateAgainstDeployment`; the local engine fills them in);
    without it `num_threads`, `model_id` and one allocation style are required
    (`ElasticsearchInternalServiceSettings.validateRequiredFields`)."""
    if ss.get("num_allocations") is not None and ss.get("adaptive_allocations") is not None:
        return ["[service_settings] must have only one of the [num_allocations] or the [adaptive_allocations] key set"]
    if ss.get("deployment_id") is not None:
        return []
    errors = [f"[service_settings] does not contain the required setting [{name}]"
              for name in ("num_threads", "model_id") if ss.get(name) is None]
    if ss.get("num_allocations") is None and ss.get("adaptive_allocations") is None:
        errors.append("[service_settings] does not contain one of the required settings "
                      "[num_allocations, adaptive_allocations]")
    return errors


def _vertex_generation(task: TaskType, ss: dict[str, Any]) -> list[str]:
    """ES `GoogleVertexAiChatCompletionServiceSettings.validateServiceSettings` (completion, chat_completion):
    a Model Garden provider needs `url` or `streaming_url` (Vertex fields allowed, not needed); Google (the
    default) takes no URL and needs location, project_id and model_id. GET prints the provider as the enum's
    name (`provider.name()`), GOOGLE when none was given."""
    if task not in (T.COMPLETION, T.CHAT_COMPLETION):
        return []
    provider = str(ss.get("provider") or "google").lower()
    ss["provider"] = provider.upper()
    url, streaming = ss.get("url"), ss.get("streaming_url")
    java = lambda v: "null" if v is None else str(v)  # noqa: E731 - Java's %s of a null
    if provider != "google":
        if url is None and streaming is None:
            return [f"Google Model Garden provider={provider} selected. Either 'uri' or 'streaming_uri' must be "
                    f"provided"]
        return []
    if url is not None or streaming is not None:
        return [f"'provider' is either GOOGLE or null. For Google Vertex AI models 'uri' and 'streaming_uri' must "
                f"not be provided. Remove 'url' and 'streaming_url' fields. Provided values: uri={java(url)}, "
                f"streaming_uri={java(streaming)}"]
    missing = [ss.get(k) for k in ("location", "project_id", "model_id")]
    if any(v is None for v in missing):
        return ["For Google Vertex AI models, you must provide 'location', 'project_id', and 'model_id'. "
                "Provided values: location={}, project_id={}, model_id={}".format(*map(java, missing))]
    return []


# ------------------------------------------------------------------------- the services

_SERVICES: tuple[Service, ...] = (
    Service("ai21", _tasks(T.COMPLETION, T.CHAT_COMPLETION),
            (MODEL_ID, API_KEY, RATE_LIMIT), rate_limit=200),
    Service("alibabacloud-ai-search", _tasks(T.COMPLETION, T.RERANK, T.SPARSE_EMBEDDING, T.TEXT_EMBEDDING),
            (_s("service_id", required=True), _s("host", required=True), _s("workspace", required=True),
             _s("http_schema", choices=("https", "http")), API_KEY, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS,
             RATE_LIMIT),
            (_s("input_type", choices=("ingest", "search"), tasks=_tasks(T.TEXT_EMBEDDING, T.SPARSE_EMBEDDING)),
             _s("return_token", "bool", tasks=_tasks(T.SPARSE_EMBEDDING))),
            rate_limit=1000, streaming=frozenset()),
    Service("amazonbedrock", _tasks(T.CHAT_COMPLETION, T.COMPLETION, T.TEXT_EMBEDDING),
            (_s("region", required=True), _s("model", required=True),
             _s("provider", required=True, choices=("amazontitan", "anthropic", "ai21labs", "cohere", "meta", "mistral")),
             _s("access_key", required=True, secret=True), _s("secret_key", required=True, secret=True),
             _s("session_token", secret=True),  # gateway extension: temporary STS credentials
             SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS, RATE_LIMIT),
            (_s("max_new_tokens", "int", positive=True, tasks=ALL_GENERATION),
             _s("temperature", "float", tasks=ALL_GENERATION), _s("top_k", "float", tasks=ALL_GENERATION),
             _s("top_p", "float", tasks=ALL_GENERATION)),
            rate_limit=240),
    Service("amazon_sagemaker", _tasks(T.TEXT_EMBEDDING, T.COMPLETION, T.CHAT_COMPLETION, T.SPARSE_EMBEDDING, T.RERANK),
            (_s("endpoint_name", required=True), _s("api", required=True, choices=("openai", "elastic")),
             _s("region", required=True), _s("access_key", required=True, secret=True),
             _s("secret_key", required=True, secret=True),
             _s("session_token", secret=True),  # gateway extension: temporary STS credentials
             _s("target_model"), _s("target_container_hostname"),
             _s("inference_component_name"), _s("batch_size", "int", positive=True),
             _s("dimensions", "int", positive=True, tasks=EMBED), SIMILARITY,
             _s("element_type", choices=("byte", "float", "bit"), tasks=EMBED)),
            (_s("custom_attributes"), _s("enable_explanations"), _s("inference_id"), _s("session_id"),
             _s("target_variant"), _s("user"))),
    Service("anthropic", _tasks(T.COMPLETION, T.CHAT_COMPLETION),
            (MODEL_ID, API_KEY, RATE_LIMIT),
            (_s("max_tokens", "int", required=True, positive=True), _s("temperature", "float"),
             _s("top_k", "int", positive=True), _s("top_p", "float")),
            rate_limit=50),
    Service("azureaistudio", _tasks(T.TEXT_EMBEDDING, T.COMPLETION, T.RERANK),
            (_s("target", required=True),
             _s("provider", required=True, choices=("cohere", "databricks", "meta", "microsoft_phi", "mistral", "openai")),
             _s("endpoint_type", required=True, choices=("token", "realtime")), API_KEY,
             SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS, RATE_LIMIT),
            (_s("user", tasks=EMBED),
             _s("do_sample", "bool", tasks=_tasks(T.COMPLETION)),
             _s("max_new_tokens", "int", positive=True, tasks=_tasks(T.COMPLETION)),
             _s("temperature", "float", tasks=_tasks(T.COMPLETION)),
             _s("top_p", "float", tasks=_tasks(T.COMPLETION)), *RERANK_TASK_SETTINGS),
            rate_limit=240),
    Service("azureopenai", _tasks(T.TEXT_EMBEDDING, T.COMPLETION, T.CHAT_COMPLETION),
            (_s("resource_name", required=True), _s("deployment_id", required=True),
             _s("api_version", required=True), _s("api_key", secret=True), _s("entra_id", secret=True),
             _s("client_secret", secret=True), _s("client_id"), _s("tenant_id"), _s("scopes", "list"),
             DIMENSIONS, MAX_INPUT_TOKENS, SIMILARITY, RATE_LIMIT),
            (_s("user"), _s("headers", "map")),
            rate_limit={T.TEXT_EMBEDDING: 1440, T.COMPLETION: 120, T.CHAT_COMPLETION: 120},
            one_of=(OneOf(("api_key", "entra_id", "client_secret")),)),
    Service("cohere", _tasks(T.TEXT_EMBEDDING, T.RERANK, T.COMPLETION, T.CHAT_COMPLETION),
            (MODEL_ID, API_KEY, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS,
             _s("embedding_type", choices=("binary", "bit", "byte", "float", "int8"), tasks=EMBED), RATE_LIMIT),
            (INPUT_TYPE_ALL, _s("truncate", choices=("END", "NONE", "START"), tasks=EMBED), *RERANK_TASK_SETTINGS),
            rate_limit=10000),
    Service("contextualai", _tasks(T.RERANK),
            (MODEL_ID, API_KEY, RATE_LIMIT),
            # ES ContextualAiRerankTaskSettings reads top_n; top_k is the SPEC's name: both accepted
            (_s("instruction"), _s("top_n", "int", positive=True), _s("top_k", "int", positive=True),
             _s("return_documents", "bool")),
            rate_limit=1000),
    Service("custom", _tasks(T.TEXT_EMBEDDING, T.SPARSE_EMBEDDING, T.RERANK, T.COMPLETION),
            (_s("url", required=True), _s("headers", "map"), _s("query_parameters", "list"),
             _s("request", "str_or_object", required=True), _s("response", "object", required=True,
                                                                   fields=(_s("json_parser", "map", required=True),)),
             _s("input_type", "object", fields=(_s("translation", "map"), _s("default"))),
             _s("secret_parameters", "map", required=True, secret=True),
             _s("batch_size", "int", positive=True), SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS,
             _s("element_type", choices=("byte", "float", "bit"), tasks=EMBED), RATE_LIMIT),
            (_s("parameters", "map"),),
            rate_limit=10000, streaming=frozenset()),
    Service("deepseek", _tasks(T.COMPLETION, T.CHAT_COMPLETION),
            (MODEL_ID, API_KEY, URL)),
    Service("elasticsearch", _tasks(T.SPARSE_EMBEDDING, T.TEXT_EMBEDDING, T.RERANK, T.COMPLETION, T.CHAT_COMPLETION),
            (_s("num_allocations", "int", positive=True, updatable=True), ADAPTIVE_ALLOCATIONS,
             _s("num_threads", "int", positive=True), _s("model_id"), _s("deployment_id"),
             _s("long_document_strategy", choices=("truncate", "chunk"), tasks=RERANK_ONLY),
             _s("max_chunks_per_doc", "int", positive=True, tasks=RERANK_ONLY),
             # gateway extension: how the local model reranks (filled in at PUT; GET shows it)
             _s("rerank_method", choices=("bi_encoder_cosine", "cross_encoder"), tasks=RERANK_ONLY),
             # gateway extension: vLLM engine arguments for local models
             _s("engine", choices=("auto", "cpu", "vllm")),
             _s("max_num_seqs", "int", positive=True), _s("max_num_batched_tokens", "int", positive=True),
             _s("gpu_memory_utilization", "float"), _s("max_model_len", "int", positive=True), _s("dtype")),
            (_s("return_documents", "bool", tasks=RERANK_ONLY),),
            streaming=_tasks(T.COMPLETION, T.CHAT_COMPLETION), local=True, cross_check=_local_deployment),
    Service("elser", _tasks(T.SPARSE_EMBEDDING),
            (_s("num_allocations", "int", positive=True, updatable=True), ADAPTIVE_ALLOCATIONS,
             _s("num_threads", "int", required=True, positive=True), _s("model_id")),
            one_of=(OneOf(("num_allocations", "adaptive_allocations"), scope="service_settings",
                          missing="[service_settings] does not contain one of the required settings "
                                  "[num_allocations, adaptive_allocations]"),),
            local=True, defaults={T.SPARSE_EMBEDDING: {"model_id": ".elser_model_2"}},
            deprecation="The [elser] service is deprecated and will be removed in a future release. Use the "
                        "[elasticsearch] service instead, with [model_id] set to [.elser_model_2] in the "
                        "[service_settings]"),
    # fireworksai (ES 9.4+): rate limit 6000; the embeddings settings show `url` always, DEFAULT_URL when none is
    # given (FireworksAiEmbeddingsServiceSettings.toXContentFragmentOfExposedFields, and SPEC put_fireworksai
    # PutFireworksAiResponseExample1), the chat ones only when given (FireworksAiChatCompletionServiceSettings)
    Service("fireworksai", _tasks(T.TEXT_EMBEDDING, T.COMPLETION, T.CHAT_COMPLETION),
            (MODEL_ID, API_KEY, URL, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS, RATE_LIMIT),
            (_s("user"), _s("headers", "map")),
            rate_limit=6000, defaults={T.TEXT_EMBEDDING: {"url": "https://api.fireworks.ai/inference/v1/embeddings"}}),
    Service("googleaistudio", _tasks(T.COMPLETION, T.TEXT_EMBEDDING, T.CHAT_COMPLETION),
            (MODEL_ID, API_KEY, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS, RATE_LIMIT),
            rate_limit=360),
    Service("googlevertexai", _tasks(T.CHAT_COMPLETION, T.COMPLETION, T.TEXT_EMBEDDING, T.RERANK),
            # model_id is required for embeddings only, project_id for embeddings and rerank
            # (GoogleVertexAiEmbeddingsServiceSettings, GoogleVertexAiRerankServiceSettings: model_id optional);
            # generation follows `_vertex_generation`
            (_s("service_account_json", required=True, secret=True), _s("model_id", required=True, tasks=EMBED),
             _s("model_id", tasks=_tasks(T.RERANK, T.COMPLETION, T.CHAT_COMPLETION)),
             _s("project_id", required=True, tasks=_tasks(T.TEXT_EMBEDDING, T.RERANK)),
             _s("project_id", tasks=ALL_GENERATION), _s("location"),
             _s("provider", choices=("google", "anthropic", "meta", "hugging_face", "mistral", "ai21",
                                     "GOOGLE", "ANTHROPIC", "META", "HUGGING_FACE", "MISTRAL", "AI21")),
             URL, _s("streaming_url"), SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS,
             _s("max_batch_size", "int", positive=True, tasks=EMBED), RATE_LIMIT),
            (_s("auto_truncate", "bool", tasks=EMBED), _s("top_n", "int", positive=True, tasks=RERANK_ONLY),
             _s("thinking_config", "object", tasks=ALL_GENERATION, fields=(_s("thinking_budget", "int"),)),
             _s("max_tokens", "int", positive=True, tasks=ALL_GENERATION)),
            rate_limit=30000, cross_check=_vertex_generation),
    Service("groq", _tasks(T.CHAT_COMPLETION, T.COMPLETION),
            (MODEL_ID, API_KEY, URL, RATE_LIMIT), rate_limit=1000),
    Service("hugging_face", _tasks(T.CHAT_COMPLETION, T.COMPLETION, T.RERANK, T.TEXT_EMBEDDING),
            (_s("url", required=True), _s("model_id", tasks=_tasks(T.CHAT_COMPLETION, T.COMPLETION, T.RERANK)),
             API_KEY, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS, RATE_LIMIT),
            RERANK_TASK_SETTINGS,
            rate_limit=3000),
    Service("jinaai", _tasks(T.EMBEDDING, T.RERANK, T.TEXT_EMBEDDING),
            (MODEL_ID, API_KEY, _s("similarity", choices=SIMILARITIES, tasks=_tasks(T.TEXT_EMBEDDING, T.EMBEDDING)),
             _s("dimensions", "int", positive=True, tasks=_tasks(T.TEXT_EMBEDDING, T.EMBEDDING)),
             _s("embedding_type", choices=("binary", "bit", "float"), tasks=_tasks(T.TEXT_EMBEDDING, T.EMBEDDING)),
             _s("multimodal_model", "bool", tasks=_tasks(T.EMBEDDING)), RATE_LIMIT),
            (_s("input_type", choices=("classification", "clustering", "ingest", "search"),
                tasks=_tasks(T.TEXT_EMBEDDING, T.EMBEDDING)),
             _s("late_chunking", "bool", tasks=_tasks(T.TEXT_EMBEDDING, T.EMBEDDING)), *RERANK_TASK_SETTINGS),
            rate_limit=2000,
            # JinaAIEmbeddingServiceSettings prints embedding_type always (FLOAT unless given), and on the
            # `embedding` task multimodal_model (true unless given; SPEC PutJinaAiResponseExample3)
            defaults={T.TEXT_EMBEDDING: {"embedding_type": "float"},
                      T.EMBEDDING: {"embedding_type": "float", "multimodal_model": True}}),
    Service("llama", _tasks(T.TEXT_EMBEDDING, T.CHAT_COMPLETION, T.COMPLETION),
            (_s("url", required=True), MODEL_ID, OPTIONAL_API_KEY, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS,
             RATE_LIMIT),
            rate_limit=3000),
    Service("mistral", _tasks(T.TEXT_EMBEDDING, T.COMPLETION, T.CHAT_COMPLETION),
            (_s("model", required=True), API_KEY, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS, RATE_LIMIT),
            rate_limit=240),
    Service("nvidia", _tasks(T.CHAT_COMPLETION, T.COMPLETION, T.RERANK, T.TEXT_EMBEDDING),
            (MODEL_ID, URL, API_KEY, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS, RATE_LIMIT),
            # GET shows `truncate` in lower case (SPEC put_nvidia PutNvidiaResponseExample2); NIM takes upper case
            (INPUT_TYPE_INGEST_SEARCH, _s("truncate", choices=("none", "start", "end"), tasks=EMBED)),
            rate_limit=3000),
    Service("openai", _tasks(T.TEXT_EMBEDDING, T.COMPLETION, T.CHAT_COMPLETION),
            (MODEL_ID, URL, _s("organization_id"), SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS,
             _s("api_key", secret=True), _s("client_secret", secret=True), _s("client_id"),
             _s("scopes", "list"), _s("token_url"), RATE_LIMIT),
            (_s("user"), _s("headers", "map")),
            rate_limit={T.TEXT_EMBEDDING: 3000, T.COMPLETION: 500, T.CHAT_COMPLETION: 500},
            one_of=(OneOf(("api_key", "client_secret")),),
            defaults={T.TEXT_EMBEDDING: {"similarity": "dot_product"}}),
    Service("openshift_ai", _tasks(T.TEXT_EMBEDDING, T.COMPLETION, T.CHAT_COMPLETION, T.RERANK),
            (_s("url", required=True), _s("model_id"), API_KEY, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS,
             RATE_LIMIT),
            RERANK_TASK_SETTINGS,
            rate_limit=3000,
            defaults={T.TEXT_EMBEDDING: {"similarity": "dot_product"}}, cross_check=_dimensions_set_by_user),
    # the gateway's own service: an endpoint that routes each request to one of its targets (routing.py)
    Service("router", _tasks(T.TEXT_EMBEDDING, T.SPARSE_EMBEDDING, T.RERANK, T.COMPLETION, T.CHAT_COMPLETION),
            (_s("strategy", choices=("fallback", "round_robin", "weighted", "least_latency", "least_busy"),
                updatable=True),
             _s("targets", "list", required=True, updatable=True), _s("failover_on", "list", updatable=True),
             _s("retries", "int", updatable=True),
             _s("circuit_breaker", "object", updatable=True,
                fields=(_s("failure_threshold", "int", positive=True), _s("cooldown"))),
             SIMILARITY, DIMENSIONS),
            composite=True),
    Service("voyageai", _tasks(T.TEXT_EMBEDDING, T.RERANK),
            (MODEL_ID, API_KEY, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS,
             _s("embedding_type", choices=("float", "int8", "byte", "bit", "binary"), tasks=EMBED),
             _s("multimodal_model", "bool", tasks=_tasks(T.EMBEDDING)), RATE_LIMIT),
            (INPUT_TYPE_INGEST_SEARCH, _s("truncation", "bool"), _s("return_documents", "bool", tasks=RERANK_ONLY),
             _s("top_k", "int", positive=True, tasks=RERANK_ONLY)),
            rate_limit=2000,
            # VoyageAIEmbeddingServiceSettings (the `embedding` task) prints multimodal_model, true unless given
            defaults={T.EMBEDDING: {"multimodal_model": True}}),
    Service("watsonxai", _tasks(T.TEXT_EMBEDDING, T.CHAT_COMPLETION, T.COMPLETION, T.RERANK),
            (MODEL_ID, _s("project_id", required=True), _s("url", required=True),
             _s("api_version", required=True), API_KEY, SIMILARITY, DIMENSIONS, MAX_INPUT_TOKENS, RATE_LIMIT),
            (_s("truncate_input_tokens", "int", positive=True, tasks=RERANK_ONLY), *RERANK_TASK_SETTINGS),
            rate_limit=120),
)

def _with_embedding(spec: Service) -> Service:
    """The `embedding` task (ES 9.4, `EmbeddingAction`) is served for text wherever `text_embedding` is, with
    the same settings; which models also take images is each adapter's `embeds_images`."""
    if T.TEXT_EMBEDDING in spec.tasks and T.EMBEDDING not in spec.tasks and not spec.composite:
        return replace(spec, tasks=spec.tasks | {T.EMBEDDING})
    return spec


SERVICES: Mapping[str, Service] = {s.name: _with_embedding(s) for s in _SERVICES}
ALIASES: Mapping[str, str] = {"sagemaker": "amazon_sagemaker", "amazonsagemaker": "amazon_sagemaker"}

DEFAULT_CHUNKING: Mapping[str, Any] = {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}


def lookup(name: str) -> Service | None:
    return SERVICES.get(ALIASES.get(name, name))


# `gen_ai.provider.name` of the OpenTelemetry GenAI conventions, where they list the service
# (https://opentelemetry.io/docs/specs/semconv/registry/attributes/gen-ai/); other services go by their own name.
_OTEL_PROVIDER_NAMES: Mapping[str, str] = {
    "openai": "openai", "azureopenai": "azure.ai.openai", "azureaistudio": "azure.ai.inference",
    "anthropic": "anthropic", "amazonbedrock": "aws.bedrock", "cohere": "cohere", "deepseek": "deepseek",
    "googleaistudio": "gcp.gemini", "googlevertexai": "gcp.vertex_ai", "groq": "groq", "mistral": "mistral_ai",
    "watsonxai": "ibm.watsonx.ai",
}


def otel_provider_name(service: str) -> str:
    name = ALIASES.get(service, service)
    return _OTEL_PROVIDER_NAMES.get(name, name)
