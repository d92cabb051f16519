"""Local models on whatever accelerator this machine has: the engines in process, then the gateway's HTTP.

    .venv/bin/python bench/gpu.py            # under 5 minutes (on a 2-core CPU machine too)
    .venv/bin/python bench/gpu.py --quick    # about half that

What it measures (it measures, it never asserts), with the engines the gateway would pick here
(`engine: auto`: vLLM when it and a GPU are there, else the embedded engine, whose torch models go
to the GPU when torch sees one, and whose chat model runs in llama.cpp on the CPU):

* embeddings (all-MiniLM-L6-v2) per second at batch sizes 1, 8, 32, 64, 128 and 256;
* rerank pairs per second (bi-encoder cosine, one query x 64 documents per request);
* generation tokens per second (SmolLM2-135M-Instruct) for 1 stream and for 16 at once;
* the same three through the gateway's HTTP (`python -m proxy serve` in a subprocess).

With no GPU it runs on the CPU and says so in the table and the JSON. Results: a table on stdout and
JSON in bench/results/gpu.json (device name, versions, every figure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from common import free_port, until_ok  # noqa: E402  (bench/common.py)

MINILM = "sentence-transformers__all-minilm-l6-v2"
SMOLLM = "huggingfacetb__smollm2-135m-instruct"
EMB = ".all-minilm-l6-v2-elasticsearch"
RERANK = ".all-minilm-l6-v2-bi-encoder-rerank-elasticsearch"
BATCHES = (1, 8, 32, 64, 128, 256)
PROMPT = "Write a long story about a lighthouse keeper."
WORDS = ("the quick brown fox jumps over a lazy dog while search engines rank documents by meaning and "
         "vectors capture similar sentences across many different topics in science art and sport").split()


def sentences(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6 + i % 9)) + f" {i}" for i in range(n)]


def device_info() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    try:
        import vllm

        info["vllm"] = vllm.__version__
    except ImportError:
        info["vllm"] = None
    return info


# ------------------------------------------------------------------------------ engines in process


def where(engine, family: str) -> str:
    import torch

    if family == "vllm":  # vLLM puts every model on the GPU it was given
        return "cuda" if torch.cuda.is_available() else "cpu"
    return engine.health().device


async def engine_figures(data_dir: str, n: int, gen_tokens: int) -> dict:
    from engines.base import EngineOptions
    from engines.manager import EngineManager
    from proxy.settings import Settings
    from proxy.types import ChatMessage, ChatRequest, EmbedRequest, RerankRequest

    manager = EngineManager(Settings(data_dir=data_dir, local_preload=False, local_models_include=[MINILM, SMOLLM]))
    out: dict = {}
    family = manager._family({})
    out["engine_family"] = family
    texts = sentences(n)

    emb_slot = manager._slot(manager.resolve(MINILM), family)
    emb = manager._create_engine(emb_slot, EngineOptions(max_batch_items=256, max_batch_tokens=16384))
    began = time.perf_counter()
    await emb.start()
    out["embedding_load_s"] = round(time.perf_counter() - began, 1)
    out["embedding_device"] = where(emb, family)
    rates = {}
    for b in BATCHES:
        batches = [texts[i:i + b] for i in range(0, n, b)]
        await emb.embed(EmbedRequest(inputs=batches[0]))  # warm this shape
        began = time.perf_counter()
        for batch in batches:
            await emb.embed(EmbedRequest(inputs=batch))
        rates[b] = round(n / (time.perf_counter() - began), 1)
    out["embeddings_per_s"] = rates
    docs = texts[:64]
    rounds = max(2, n // 64)
    began = time.perf_counter()
    for i in range(rounds):
        await emb.rerank(RerankRequest(query=texts[i], documents=docs))
    out["rerank_pairs_per_s"] = round(rounds * len(docs) / (time.perf_counter() - began), 1)
    await emb.close()

    gen_slot = manager._slot(manager.resolve(SMOLLM), family)
    threads = max(1, (os.cpu_count() or 2) - 1)  # as the manager gives llama.cpp
    gen = manager._create_engine(gen_slot, EngineOptions(slots=16, context_len=1024, threads=threads,
                                                         gguf_f16_dir=str(Path(data_dir) / "models")))
    began = time.perf_counter()
    await gen.start()
    out["generation_load_s"] = round(time.perf_counter() - began, 1)
    out["generation_device"] = where(gen, family)

    async def stream() -> int:
        req = ChatRequest(messages=[ChatMessage(role="user", content=PROMPT)], max_tokens=gen_tokens)
        count = 0
        async for delta in gen.generate(req, "bench"):
            count += bool(delta.content)
        return count

    gen_rates = {}
    for streams in (1, 16):
        began = time.perf_counter()
        counts = await asyncio.gather(*(stream() for _ in range(streams)))
        gen_rates[streams] = round(sum(counts) / (time.perf_counter() - began), 1)
    out["generation_tokens_per_s"] = gen_rates
    await gen.close()
    return out


# ------------------------------------------------------------------------------ through HTTP


async def http_figures(base: str, n: int, gen_tokens: int) -> dict:
    import aiohttp

    texts = sentences(n)
    out: dict = {}
    async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=600)) as http:
        deadline = time.monotonic() + 600
        for ep, body in ((EMB, {"input": "warm up"}), ("completion/.smollm2-135m-instruct-completion-elasticsearch",
                                                      {"input": "Hi"})):
            await until_ok(http, "POST", f"/_inference/{ep}", deadline, "the gateway's models", body)
        chat_ep = {"service": "elasticsearch", "service_settings": {
            "model_id": SMOLLM, "num_allocations": 1, "num_threads": 1, "max_num_seqs": 16, "max_model_len": 1024}}
        async with http.put("/_inference/chat_completion/bench-chat", json=chat_ep) as resp:
            assert resp.status == 200, await resp.text()

        rates = {}
        for b in BATCHES:
            batches = [texts[i:i + b] for i in range(0, n, b)]
            began = time.perf_counter()
            for batch in batches:
                async with http.post(f"/_inference/text_embedding/{EMB}", json={"input": batch}) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
            rates[b] = round(n / (time.perf_counter() - began), 1)
        out["embeddings_per_s"] = rates
        docs = texts[:64]
        rounds = max(2, n // 64)
        began = time.perf_counter()
        for i in range(rounds):
            async with http.post(f"/_inference/rerank/{RERANK}", json={"query": texts[i], "input": docs}) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
        out["rerank_pairs_per_s"] = round(rounds * len(docs) / (time.perf_counter() - began), 1)

        body = {"messages": [{"role": "user", "content": PROMPT}], "max_completion_tokens": gen_tokens}

        async def stream() -> int:
            count = 0
            async with http.post("/_inference/chat_completion/bench-chat/_stream", json=body) as resp:
                assert resp.status == 200, await resp.text()
                async for line in resp.content:
                    count += b'"content":"' in line
            return count

        gen_rates = {}
        for streams in (1, 16):
            began = time.perf_counter()
            counts = await asyncio.gather(*(stream() for _ in range(streams)))
            gen_rates[streams] = round(sum(counts) / (time.perf_counter() - began), 1)
        out["generation_tokens_per_s"] = gen_rates
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 256 if args.quick else 512
    gen_tokens = 32 if args.quick else 64
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    info = device_info()
    results: dict = {"device": info, "sentences": n, "generation_max_tokens": gen_tokens,
                     "note": (f"GPU: {info['gpu']}" if info["cuda"] else
                              "no GPU found: every figure here is for the CPU"),
                     "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    data = tempfile.mkdtemp(prefix="bench-gpu-")
    began = time.perf_counter()
    results["engine"] = asyncio.run(engine_figures(data, n, gen_tokens))

    port = free_port()
    config = Path(data) / "config.yaml"
    config.write_text(f"local_models_include: [{MINILM}, {SMOLLM}]\n")
    log_path = Path(data) / "gateway.log"
    env = {**os.environ, "INFERENCE_PROXY_DATA_DIR": data, "PYTHONPATH": str(ROOT)}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--config", str(config)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        results["http"] = asyncio.run(http_figures(f"http://127.0.0.1:{port}", n, gen_tokens))
    finally:
        proc.terminate()
        proc.wait(30)
    results["seconds"] = round(time.perf_counter() - began, 1)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(results, indent=2))

    eng, web = results["engine"], results["http"]
    print(f"{results['note']}; engine family: {eng['engine_family']}; embeddings on {eng['embedding_device']}, "
          f"generation on {eng['generation_device']}; torch {info['torch']}, vllm {info['vllm']}")
    print(f"{'figure':<34} {'engine':>10} {'HTTP':>10}")
    for b in BATCHES:
        label = f"embeddings/s, batch {b}"
        print(f"{label:<34} {eng['embeddings_per_s'][b]:>10.1f} {web['embeddings_per_s'][b]:>10.1f}")
    print(f"{'rerank pairs/s (1 x 64)':<34} {eng['rerank_pairs_per_s']:>10.1f} {web['rerank_pairs_per_s']:>10.1f}")
    for s in (1, 16):
        print(f"{f'generation tok/s, {s} stream(s)':<34} {eng['generation_tokens_per_s'][s]:>10.1f} "
              f"{web['generation_tokens_per_s'][s]:>10.1f}")
    print(f"load: embeddings {eng['embedding_load_s']} s, generation {eng['generation_load_s']} s; "
          f"total {results['seconds']} s; load average {results['load_average_before']} -> "
          f"{results['load_average_after']}; JSON: bench/results/gpu.json")


if __name__ == "__main__":
    main()
