"""How long a plain local completion takes, worst case, as the official `elasticsearch` client sends it.

    .venv/bin/python bench/completion_latency.py            # about 2 minutes on two cores
    .venv/bin/python bench/completion_latency.py --quick    # about 1 minute

A plain completion sets no `max_tokens`; the gateway then bounds it (`local_max_tokens`, 256 tokens,
and `local_max_generation_s`, 5 s), and the point of the bound is that such a request ends well inside
the clients' default timeouts (the `elasticsearch` client: 10 s). This sends questions with short
answers and prompts that invite long ones, one at a time and four at once, with the client at its
defaults, and reports each request's wall time, tokens and finish reason, and the worst case.

The gateway runs as `python -m proxy serve` in a subprocess with a fresh data folder, so the first
load includes the one-time F16 conversion of SmolLM2 (its time is reported). It measures, it never
asserts. Results: a table on stdout and JSON in bench/results/completion_latency.json, with the load
average before and after (the machine may be shared).
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

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
from common import free_port  # noqa: E402  (bench/common.py)
COMPLETION = ".smollm2-135m-instruct-completion-elasticsearch"
PROMPTS = [
    "What is the capital of France?",
    "Name three colors.",
    "What is 2 + 3?",
    "Tell me about dogs.",
    "Write a long story about a dragon who learns to bake bread.",
    "Count from 1 to 200.",
    "Explain in detail how a computer works, step by step.",
    "Repeat the word hello 500 times.",
]


async def wait_for_chat(es, timeout: float = 300) -> None:
    from elasticsearch import ApiError

    deadline = time.monotonic() + timeout
    while True:
        try:
            await es.inference.completion(inference_id=COMPLETION, input="Hi")
            return
        except (ApiError, OSError, Exception) as exc:  # 503 while loading, connection refused while starting
            if time.monotonic() > deadline:
                raise TimeoutError(f"the chat model did not load in time: {exc}") from None
            await asyncio.sleep(0.5)


async def one(es, prompt: str) -> dict:
    began = time.perf_counter()
    try:
        resp = await es.inference.completion(inference_id=COMPLETION, input=prompt)
        text = resp.body["completion"][0]["result"]
        error = None
    except Exception as exc:  # a client timeout is the failure this bench looks for
        text, error = "", f"{type(exc).__name__}: {exc}"[:200]
    took = time.perf_counter() - began
    return {"prompt": prompt, "seconds": round(took, 2), "chars": len(text), "answer": text[:80], "error": error}


async def run(base: str, rounds: int) -> dict:
    from elasticsearch import AsyncElasticsearch

    es = AsyncElasticsearch(base, max_retries=0)  # the client's defaults: request_timeout 10 s
    try:
        await wait_for_chat(es)
        sequential = []
        for _ in range(rounds):
            for p in PROMPTS:
                sequential.append(await one(es, p))
        concurrent = []
        for i in range(0, len(PROMPTS), 4):
            concurrent += await asyncio.gather(*(one(es, p) for p in PROMPTS[i:i + 4]))
    finally:
        await es.close()
    return {"sequential": sequential, "four_at_once": concurrent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    port = free_port()
    data = tempfile.mkdtemp(prefix="bench-completion-")
    log_path = Path(data) / "gateway.log"
    env = {**os.environ, "INFERENCE_PROXY_DATA_DIR": data, "INFERENCE_PROXY_LOCAL_MODELS": "1",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    config = Path(data) / "config.yaml"
    config.write_text("local_models_include: [huggingfacetb__smollm2-135m-instruct]\n")
    load_before = os.getloadavg()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--config", str(config)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        results = asyncio.run(run(f"http://127.0.0.1:{port}", 1 if args.quick else 2))
    finally:
        proc.terminate()
        proc.wait(30)
    loaded = re.findall(r"local model \[huggingfacetb__smollm2-135m-instruct\] ready in ([0-9.]+) s",
                        log_path.read_text())
    every = results["sequential"] + results["four_at_once"]
    worst = max(every, key=lambda r: r["seconds"])
    summary = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "first_load_with_f16_conversion_s": float(loaded[0]) if loaded else None,
        "client": "elasticsearch AsyncElasticsearch, default request_timeout (10 s), max_retries=0",
        "worst_seconds": worst["seconds"], "worst_prompt": worst["prompt"],
        "errors": sum(1 for r in every if r["error"]), **results,
    }
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / "completion_latency.json").write_text(json.dumps(summary, indent=2))
    print(f"first load (with the one-time F16 conversion): {summary['first_load_with_f16_conversion_s']} s; "
          f"load average before {summary['load_average_before']}, after {summary['load_average_after']}")
    print(f"{'mode':<13} {'seconds':>8} {'chars':>6}  prompt")
    for mode in ("sequential", "four_at_once"):
        for r in results[mode]:
            print(f"{mode:<13} {r['seconds']:>8.2f} {r['chars']:>6}  {r['prompt'][:50]}"
                  + (f"  ERROR {r['error']}" if r["error"] else ""))
    print(f"worst case: {summary['worst_seconds']:.2f} s ({summary['worst_prompt']!r}); "
          f"errors: {summary['errors']} of {len(every)}")


if __name__ == "__main__":
    main()
