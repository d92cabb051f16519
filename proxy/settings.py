"""Gateway settings: the only module that reads environment variables and config files.

Precedence, lowest first: built-in defaults, the config file, environment variables, CLI flags.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

import msgspec
import yaml

from .egress import parse_networks

ENV_PREFIX = "INFERENCE_PROXY_"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class StartupEndpoint(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An endpoint declared in the config file, in the shape of a PUT body plus its id."""

    inference_id: str
    service: str
    task_type: str | None = None
    service_settings: dict[str, Any] = {}
    task_settings: dict[str, Any] | None = None
    chunking_settings: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"service": self.service, "service_settings": self.service_settings}
        if self.task_type is not None:
            out["task_type"] = self.task_type
        if self.task_settings is not None:
            out["task_settings"] = self.task_settings
        if self.chunking_settings is not None:
            out["chunking_settings"] = self.chunking_settings
        return out


class Price(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an endpoint costs, per million tokens (GET /_inference/_usage reports cost with it)."""

    input: float = 0.0
    output: float = 0.0


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 9200
    data_dir: str = "./data"
    log_level: str = "INFO"
    secret_key: str | None = None  # base64 AES key; from the environment only, never from files on disk
    endpoints: list[StartupEndpoint] = []
    # service name -> origin that replaces the service's default origin, e.g. {"anthropic": "http://127.0.0.1:8081"}
    upstreams: dict[str, str] = {}
    upstream_proxy: str | None = None
    # service name -> CA bundle path used to verify that service's TLS certificates
    upstream_ca_bundles: dict[str, str] = {}
    # services whose TLS certificates are not verified: for tests only, logged loudly
    upstream_insecure: list[str] = []
    max_body_bytes: int = 32 * 1024 * 1024
    max_inputs: int = 10_000  # inputs in one embedding or rerank request
    max_input_chars: int = 1_000_000  # characters in one input
    max_in_flight: int = 2_048  # requests handled at once; more get 429
    # retries of a failed upstream call (429, 5xx, network), also bounded by the request's timeout; the
    # official OpenAI and Anthropic SDKs make 2. Per endpoint: {inference_id: retries}
    max_retries: int = 2
    endpoint_max_retries: dict[str, int] = {}
    # other model names for endpoints on the client surfaces (/v1): {"GPT-4o": "my-openai-endpoint"}
    model_aliases: dict[str, str] = {}
    client_read_timeout: float = 60.0  # seconds a client may take to send its body
    header_read_timeout: float = 10.0  # seconds from a request's first byte to the end of its headers
    keepalive_timeout: float = 75.0  # seconds an idle keep-alive connection stays open
    max_connections: int = 4_096  # open client connections; beyond it new ones are closed at once
    max_json_depth: int = 100  # nesting of arrays and objects in a request body
    # egress policy, applied to the resolved address of every upstream connection (proxy/egress.py)
    egress_deny_private: bool = False  # also deny loopback and private ranges (10/8, 172.16/12, 192.168/16, fc00::/7)
    egress_allow: list[str] = []  # CIDRs: when set, upstream connections may go only there
    # shared state for several replicas or workers: see README "Several replicas and workers"
    store: str | None = None  # postgresql://... (shared) or sqlite:///path; None: endpoints.db in data_dir
    redis: str | None = None  # redis://...: rate limits across replicas, and the embedding cache
    embedding_cache_ttl: int = 0  # seconds text_embedding results stay in Redis; 0: no cache
    workers: int = 1  # processes serving one port (SO_REUSEPORT)
    # local models (the `elasticsearch` service, engines/): see README "Local models"
    local_models: bool = True  # serve the local models that are installed; false: remote providers only
    engine: str = "auto"  # auto | cpu | vllm: auto picks vLLM when it and a GPU are there, else the CPU engine
    local_model_dirs: dict[str, str] = {}  # model id -> local folder or .gguf file, served next to the shipped ones
    local_models_include: list[str] | None = None  # serve only these shipped/configured model ids (None: all)
    local_preload: bool = True  # load every local model at startup, in the background
    local_idle_unload_s: float = 900.0  # idle time before a model whose endpoints allow 0 allocations unloads
    local_queue_size: int = 1024  # inputs (or generations) waiting per model before 429
    local_batch_tokens: int = 8192  # token budget of one forward pass of an encoder model
    local_gguf_f16: bool = True  # run a quantised GGUF as an F16 copy made once in data_dir/models; false: as shipped
    local_max_tokens: int = 256  # generation length of a local completion that sets no max_tokens
    local_max_generation_s: float = 5.0  # and its time budget (0: none), to end within clients' default timeouts
    prices: dict[str, Price] = {}  # endpoint id -> price per million input/output tokens
    usage_flush_s: float = 5.0  # how often each process adds its usage counts to the store
    responses_retention_s: float = 30 * 86400.0  # how long a stored Responses API response is kept
    # OpenTelemetry traces: "otlp" or "console", from the standard OTEL_* variables; None: off (proxy/tracing.py)
    otel_traces_exporter: str | None = None
    # --workers N: the folder where the workers' Prometheus metrics meet (set by the supervisor)
    metrics_dir: str | None = None
    # --workers N with local models: the Unix socket of the engine host that runs them (set by the supervisor)
    engine_socket: str | None = None
    # vLLM engine arguments for every model it serves; an endpoint's service_settings of the same name win
    vllm_max_num_seqs: int | None = None
    vllm_max_num_batched_tokens: int | None = None
    vllm_gpu_memory_utilization: float | None = None
    vllm_max_model_len: int | None = None
    vllm_dtype: str | None = None
    # where this gateway (and so its local models) runs, `<csp>/<region>` e.g. aws/eu-west-1: the region policy
    # allows or denies local endpoints by it; unset, no region policy allows them
    location: str | None = None
    # run a test inference when an endpoint is created, as Elasticsearch does (learns dimensions; a bad key or an
    # unreachable provider fails the PUT)
    validate_endpoints: bool = True

    def __repr__(self) -> str:
        return f"Settings(host={self.host!r}, port={self.port}, data_dir={self.data_dir!r})"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def _expand_env(value: Any, env: Mapping[str, str]) -> Any:
    """`${VAR}` in config strings reads the environment, so keys need not sit in the file."""
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: env.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [_expand_env(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _expand_env(v, env) for k, v in value.items()}
    return value


def read_config_file(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    else:
        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config file must hold a mapping at the top level")
    return _expand_env(data, env)


_ENV_FIELDS = {"host": str, "port": int, "data_dir": str, "log_level": str, "secret_key": str,
               "upstream_proxy": str, "engine": str, "max_body_bytes": int, "max_inputs": int,
               "max_input_chars": int, "max_in_flight": int, "max_retries": int, "client_read_timeout": float,
               "header_read_timeout": float, "keepalive_timeout": float, "max_connections": int,
               "max_json_depth": int,
               "store": str, "redis": str, "embedding_cache_ttl": int, "workers": int,
               "local_idle_unload_s": float, "local_queue_size": int, "local_batch_tokens": int,
               "usage_flush_s": float, "responses_retention_s": float, "location": str}


def load(cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    merged: dict[str, Any] = {}
    config_path = cli.pop("config", None) or env.get(ENV_PREFIX + "CONFIG")
    if config_path:
        merged.update(read_config_file(Path(config_path), env))
    if "secret_key" in merged:
        raise ValueError("secret_key must come from the environment (INFERENCE_PROXY_SECRET_KEY), not a file")
    for name, kind in _ENV_FIELDS.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw:
            merged[name] = kind(raw)
    if not merged.get("upstream_proxy"):
        proxy = env.get("HTTPS_PROXY") or env.get("https_proxy")
        if proxy:
            merged["upstream_proxy"] = proxy
    for prefix, key in (("UPSTREAM_", "upstreams"),):
        for name, value in env.items():
            if name.startswith(ENV_PREFIX + prefix) and value:
                service = name[len(ENV_PREFIX + prefix):].lower()
                merged.setdefault(key, {})[service] = value
    deny_private = env.get(ENV_PREFIX + "EGRESS_DENY_PRIVATE")
    if deny_private:
        merged["egress_deny_private"] = deny_private.lower() not in ("0", "false", "no")
    allow = env.get(ENV_PREFIX + "EGRESS_ALLOW")
    if allow:
        merged["egress_allow"] = [c.strip() for c in allow.split(",") if c.strip()]
    for flag in ("local_models", "validate_endpoints"):
        raw_flag = env.get(ENV_PREFIX + flag.upper())
        if raw_flag:
            merged[flag] = raw_flag.lower() not in ("0", "false", "no")
    exporter = _otel_traces_exporter(env)
    if exporter:
        merged["otel_traces_exporter"] = exporter
    merged.update(cli)
    settings = msgspec.convert(merged, Settings)
    if settings.max_retries < 0 or any(n < 0 for n in settings.endpoint_max_retries.values()):
        raise ValueError("max_retries must be 0 or more")
    if settings.workers < 1:
        raise ValueError("workers must be at least 1")
    if settings.embedding_cache_ttl < 0:
        raise ValueError("embedding_cache_ttl must be 0 (off) or a number of seconds")
    for name in ("header_read_timeout", "keepalive_timeout", "client_read_timeout"):
        if getattr(settings, name) <= 0:
            raise ValueError(f"{name} must be a positive number of seconds")
    if settings.max_connections < 1 or settings.max_json_depth < 1:
        raise ValueError("max_connections and max_json_depth must be at least 1")
    parse_networks(settings.egress_allow)  # checked here, so a typo in a CIDR stops the start
    if settings.location and not re.fullmatch(r"[^/\s]+/[^/\s]+", settings.location):
        raise ValueError(f"location [{settings.location}] must be <csp>/<region>, e.g. aws/eu-west-1")
    if settings.embedding_cache_ttl and not settings.redis:
        raise ValueError("embedding_cache_ttl needs a Redis (--redis redis://...)")
    return settings


def _otel_traces_exporter(env: Mapping[str, str]) -> str | None:
    """Traces are on when the OpenTelemetry environment names an exporter or an OTLP endpoint
    (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/); only the
    `otlp` (HTTP/protobuf) and `console` exporters are offered."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    named = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named in ("none",):
        return None
    if named:
        if named not in ("otlp", "console"):
            raise ValueError(f"OTEL_TRACES_EXPORTER={named}: only otlp and console are supported")
        return named
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return "otlp"
    return None
