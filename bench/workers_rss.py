"""Memory of `inference-proxy serve --workers N` with every local model loaded: the whole process tree.

    .venv/bin/python bench/workers_rss.py                     # --workers 1 and 2, about 3 minutes on two cores
    .venv/bin/python bench/workers_rss.py --workers 1 2 4
    .venv/bin/python bench/workers_rss.py --source ../other   # another checkout (e.g. before the engine host)

For each N: start the gateway with local models on a fresh port (one data folder for all runs, so the
chat model's F16 copy is made once), wait for `/_ready`, send one request to every preconfigured
local endpoint (so every model has run, not only loaded), then read each process of the tree
(supervisor, workers, engine host, multiprocessing's resource tracker) from /proc: RSS, and PSS
(`smaps_rollup`), which splits the pages processes share (libraries) between them instead of
counting them once per process. It measures, it never asserts.
Results: a table on stdout and JSON in bench/results/workers_rss.json. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
from common import free_port, until_ok  # noqa: E402  (bench/common.py)
CALLS = {  # one request per preconfigured local endpoint
    ".all-minilm-l6-v2-elasticsearch": ("/_inference/{}", {"input": ["hello world"]}),
    ".multilingual-e5-small-elasticsearch": ("/_inference/{}", {"input": ["hello world"]}),
    ".splade-tiny-elasticsearch": ("/_inference/{}", {"input": ["hello world"]}),
    ".all-minilm-l6-v2-bi-encoder-rerank-elasticsearch": ("/_inference/{}", {"query": "hi", "input": ["a", "b"]}),
    ".smollm2-135m-instruct-chat-elasticsearch": (
        "/_inference/chat_completion/{}/_stream",
        {"messages": [{"role": "user", "content": "Say hello."}], "max_completion_tokens": 8}),
}


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return out


def memory_kb(pid: int) -> tuple[int, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    pss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
               if line.startswith("Pss:"))
    return rss, pss


def role(pid: int, root: int, workers: set[int]) -> str:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    if pid == root:
        return "gateway" if not workers else "supervisor"
    if b"resource_tracker" in cmdline:
        return "resource tracker"
    return "worker" if pid in workers else "engine host"


async def exercise(base: str, timeout: float) -> set[int]:
    """Wait for /_ready, run every local endpoint once per connection; the worker pids that answered."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(base) as http:
        await until_ok(http, "GET", "/_ready", deadline, "the gateway's local models")
    pids = set()
    for _ in range(8):  # new connections, which the kernel spreads over the workers
        async with aiohttp.ClientSession(base) as http:
            for ep, (path, body) in CALLS.items():
                async with http.post(path.format(ep), json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{ep}: {resp.status}")
            async with http.get("/metrics") as resp:
                text = await resp.text()
            pids.update(int(line.split('"')[1]) for line in text.splitlines()
                        if line.startswith("inference_proxy_process{pid="))
    return pids


def run(n: int, source: Path, data: Path, log_dir: Path) -> dict:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_PROXY_")}
    env.update({"INFERENCE_PROXY_LOCAL_MODELS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(source)})
    args = [sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)]
    if n > 1:
        args += ["--workers", str(n)]
    with open(log_dir / f"workers-{n}.log", "w") as log:
        proc = subprocess.Popen(args, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        began = time.perf_counter()
        answered = asyncio.run(exercise(f"http://127.0.0.1:{port}", 600))
        ready_s = time.perf_counter() - began
        time.sleep(1.0)
        workers = answered if n > 1 else set()
        processes = []
        for pid in tree(proc.pid):
            rss, pss = memory_kb(pid)
            processes.append({"pid": pid, "role": role(pid, proc.pid, workers), "rss_mb": round(rss / 1024),
                              "pss_mb": round(pss / 1024)})
    finally:
        proc.terminate()
        proc.wait(60)
    return {"workers": n, "ready_and_exercised_s": round(ready_s, 1), "processes": processes,
            "total_rss_mb": sum(p["rss_mb"] for p in processes), "total_pss_mb": sum(p["pss_mb"] for p in processes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout whose gateway runs (default: this)")
    args = parser.parse_args()
    source = args.source.resolve()
    data = Path(tempfile.mkdtemp(prefix="bench-workers-rss-"))
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    try:
        runs = [run(n, source, data / "data", out) for n in args.workers]
    finally:
        shutil.rmtree(data, ignore_errors=True)
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "source": str(source), "commit": commit, "runs": runs}
    (out / "workers_rss.json").write_text(json.dumps(results, indent=2))
    print(f"source {source} ({commit}), {os.cpu_count()} CPUs; every local model loaded and run once")
    print(f"{'workers':>7}  {'processes (RSS MB)':<80} {'total RSS':>9} {'total PSS':>9}")
    for r in runs:
        parts = ", ".join(f"{p['role']} {p['rss_mb']}" for p in r["processes"])
        print(f"{r['workers']:>7}  {parts:<80} {r['total_rss_mb']:>6} MB {r['total_pss_mb']:>6} MB")
    print(f"JSON: {out / 'workers_rss.json'}")


if __name__ == "__main__":
    main()
