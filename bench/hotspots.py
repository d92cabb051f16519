"""Where the gateway's CPU goes under load: py-spy samples one gateway process while wrk (embeddings)
or the Python stream client (chat streams) loads it, and the hottest functions are printed.

    pip install py-spy
    .venv/bin/python bench/hotspots.py                       # /v1/embeddings, as users run it
    .venv/bin/python bench/hotspots.py --target gw_es        # /_inference/text_embedding/{id}
    .venv/bin/python bench/hotspots.py --target stream_v1    # translated /v1 chat stream
    .venv/bin/python bench/hotspots.py --target stream_pt    # passed-through /v1 chat stream

Same processes, pinning and gateway configuration as `bench/overhead.py` (whose helpers it uses).
Prints two tables, the functions with the most samples on top of the stack (self) and in the stack
(total, each function counted once per sample), and writes both with the raw stacks' path to
bench/results/hotspots-<target>.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import overhead as oh  # noqa: E402  (bench/overhead.py)
import upstream as up  # noqa: E402
from common import free_port, write_results  # noqa: E402

TARGETS = ("gw_v1", "gw_es", "stream_v1", "stream_es", "stream_pt")
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`function (path/to/file.py:123)` as `function (dir/file.py)`: lines of one function merged."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    parts = Path(m["file"]).parts
    return f"{m['fn']} ({'/'.join(parts[-2:])})"


def tally(raw: Path) -> tuple[int, collections.Counter, collections.Counter]:
    """Samples, self counts and total counts from py-spy's `raw` (collapsed stacks) output."""
    total = 0
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    return total, own, inclusive


def top(counter: collections.Counter, total: int, n: int) -> list[dict]:
    return [{"function": name, "samples": c, "share": c / total} for name, c in counter.most_common(n)]


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print("| share | samples | function |\n|------:|--------:|----------|")
    for r in rows:
        print(f"| {r['share'] * 100:5.1f}% | {r['samples']:7d} | {r['function']} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", choices=TARGETS, default="gw_v1")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of load sampled (default 10)")
    p.add_argument("--rate", type=int, default=1000, help="py-spy samples per second (default 1000)")
    p.add_argument("--top", type=int, default=30, help="rows per table (default 30)")
    p.add_argument("--plain", action="store_true", help="no API key and no access log (default: as users run it)")
    p.add_argument("--gateway-root", default=str(ROOT), help="the checkout whose gateway is profiled")
    p.add_argument("--label", default="", help="a name for this run in the JSON")
    args = p.parse_args(argv)
    pyspy = shutil.which("py-spy")
    wrk = shutil.which("wrk")
    nginx = up.nginx_path()
    if not (pyspy and wrk and nginx):
        raise SystemExit("needs py-spy (pip install py-spy), wrk and nginx (apt-get install -y wrk nginx-light)")
    cores = sorted(os.sched_getaffinity(0))
    gw_core, load_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})
    python = str(ROOT / ".venv" / "bin" / "python")
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    procs: list[subprocess.Popen] = []
    try:
        py_port = free_port()
        py_up = subprocess.Popen([python, str(BENCH / "upstream.py"), "--port", str(py_port)],
                                 stdout=(tmp / "upstream.log").open("w"), stderr=subprocess.STDOUT,
                                 preexec_fn=oh._pin(load_core))
        procs.append(py_up)
        embed_port = free_port()
        procs.append(up.start_nginx(tmp / "nginx", embed_port, up.embeddings_body(1), load_core))
        oh.wait_http(py_port, oh.request_bytes(py_port, "/v1/embeddings", oh.EMBED_INPUT), py_up, "upstream", None)
        gw_port = free_port()
        config = tmp / "gateway.yaml"
        oh.gateway_config(config, f"http://127.0.0.1:{embed_port}", f"http://127.0.0.1:{py_port}")
        env = {**os.environ, "INFERENCE_PROXY_LOCAL_MODELS": "0",
               "INFERENCE_PROXY_LOG_LEVEL": "WARNING" if args.plain else "INFO"}
        gw = subprocess.Popen([python, "-m", "proxy", "serve", "--port", str(gw_port), "--data-dir",
                               str(tmp / "data"), "--config", str(config)], cwd=args.gateway_root, env=env,
                              stdout=(tmp / "gateway.log").open("w"), stderr=subprocess.STDOUT,
                              preexec_fn=oh._pin(gw_core))
        procs.append(gw)
        oh.wait_http(gw_port, oh.request_bytes(gw_port, f"/_inference/{oh.EMBED_ID}", None, "GET"), gw, "gateway",
                     tmp / "gateway.log")
        auth = oh.BENCH_AUTH
        if not args.plain:
            conn = oh.SyncConn(gw_port)
            status, _, _, body = conn.call(oh.request_bytes(gw_port, "/_security/api_key", {"name": "bench"}))
            conn.close()
            if status != 200:
                raise SystemExit(f"could not create an API key: {status} {body[:300]!r}")
            auth = "ApiKey " + json.loads(body)["encoded"]
        stream_body = {"model": oh.CHAT_ID, "messages": oh.MESSAGES, "stream": True,
                       "stream_options": {"include_usage": True}}
        if args.target == "gw_v1":
            path, body = "/v1/embeddings", {"model": oh.EMBED_ID, **oh.EMBED_INPUT}
        elif args.target == "gw_es":
            path, body = f"/_inference/text_embedding/{oh.EMBED_ID}", oh.EMBED_INPUT
        elif args.target == "stream_es":
            path, body = f"/_inference/chat_completion/{oh.CHAT_ID}/_stream", {"messages": oh.MESSAGES}
        elif args.target == "stream_v1":
            path, body = "/v1/chat/completions", {**stream_body, "functions": oh.LEGACY_FUNCTIONS}
        else:
            path, body = "/v1/chat/completions", stream_body
        raw = oh.request_bytes(gw_port, path, body, auth=auth)
        for _ in range(200):  # warm-up
            status, _, _, _ = oh.SyncConn(gw_port).call(raw)
            if status != 200:
                raise SystemExit(f"{path} answered {status}")
        out = tmp / "stacks.txt"
        spy = subprocess.Popen([pyspy, "record", "-p", str(gw.pid), "-d", str(round(args.seconds + 2)), "-r",
                                str(args.rate), "-f", "raw", "-o", str(out), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        if args.target.startswith("stream"):
            stats = oh.async_load(gw_port, raw, 16, args.seconds, count_events=True)
            load = {"events_per_s": round(stats["events"] / stats["elapsed"]), "errors": stats["errors"]}
        else:
            load = oh.run_wrk(wrk, gw_port, path, body, 32, args.seconds, load_core, tmp, auth)
            load = {k: load[k] for k in ("rps", "requests", "p50_ms", "p99_ms", "non_2xx")}
        spy.wait(timeout=args.seconds + 60)
        total, own, inclusive = tally(out)
        res = {"target": args.target, "plain": args.plain, "label": args.label, "seconds": args.seconds,
               "rate": args.rate, "samples": total, "load": load, "stacks": str(out),
               "self": top(own, total, args.top), "total": top(inclusive, total, args.top)}
        print(f"{args.target}: {total} samples; load {json.dumps(load)}")
        print_table("Self (top of stack)", res["self"])
        print_table("Total (anywhere in the stack)", res["total"])
        write_results(res, str(BENCH / "results" / f"hotspots-{args.target}{'-' + args.label if args.label else ''}"
                                                   ".json"))
    finally:
        for proc in procs:
            oh.stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
