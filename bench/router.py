"""Router overhead: what a `router` endpoint adds over calling its target directly, and what one failover costs.

    .venv/bin/python bench/router.py --quick      # about 30 seconds
    .venv/bin/python bench/router.py [--redis redis://127.0.0.1:6379/0]

One gateway (`python -m proxy serve`, endpoints from a YAML config) in front of the Python upstream of
`bench/upstream.py` (canned OpenAI answers; `/refuse/v1/embeddings` answers 503 at once). Sequential
keep-alive requests at concurrency 1, the targets taking turns in blocks of 50, to:

* `direct`: an `openai` text_embedding endpoint on the upstream;
* `router`: a `fallback` router whose only target is that endpoint;
* `failover 503`: a router whose first target answers 503 at once, then that endpoint (breaker threshold
  high enough never to open, so every request fails over);
* `failover refused`: the same with a first target whose port refuses the connection;
* `breaker open`: a router whose first target's breaker is open (skipped without a call);

and the time to the first event of a 200-event chat stream, direct endpoint against a router over it.
With `--redis`, breakers live in Redis (one round trip per attempt). It measures, it never asserts: a
table on stdout, JSON in bench/results/router.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import overhead as oh  # noqa: E402  (bench/overhead.py: client, process and statistics helpers)
import upstream as up  # noqa: E402
from common import write_results  # noqa: E402  (bench/common.py)

EMBED = {"input": "one short sentence"}
ROWS = {
    "direct": ("direct endpoint", "bench-embed"),
    "router": ("router → endpoint", "r-one"),
    "failover_503": ("failover: first target answers 503", "r-503"),
    "failover_refused": ("failover: first target refuses the connection", "r-refused"),
    "breaker_open": ("first target's breaker open (skipped)", "r-open"),
}


def config(path: Path, origin: str, refused_port: int) -> None:
    import yaml

    limit = {"requests_per_minute": 10_000_000}

    def openai(inference_id: str, task: str, url: str) -> dict:
        return {"inference_id": inference_id, "task_type": task, "service": "openai",
                "service_settings": {"api_key": "sk-bench", "model_id": "bench", "url": url, "rate_limit": limit}}

    def router(inference_id: str, task: str, targets: list[str], threshold: int = 1_000_000_000) -> dict:
        return {"inference_id": inference_id, "task_type": task, "service": "router",
                "service_settings": {"targets": targets,
                                     "circuit_breaker": {"failure_threshold": threshold, "cooldown": "1h"}}}

    path.write_text(yaml.safe_dump({"endpoints": [
        openai("bench-embed", "text_embedding", f"{origin}/v1/embeddings"),
        openai("bench-503", "text_embedding", f"{origin}/refuse/v1/embeddings"),
        openai("bench-503-b", "text_embedding", f"{origin}/refuse/v1/embeddings"),
        openai("bench-refused", "text_embedding", f"http://127.0.0.1:{refused_port}/v1/embeddings"),
        openai("bench-chat", "chat_completion", f"{origin}/v1/chat/completions"),
        router("r-one", "text_embedding", ["bench-embed"]),
        router("r-503", "text_embedding", ["bench-503", "bench-embed"]),
        router("r-refused", "text_embedding", ["bench-refused", "bench-embed"]),
        router("r-open", "text_embedding", ["bench-503-b", "bench-embed"], threshold=1),
        router("r-chat", "chat_completion", ["bench-chat"]),
    ]}, sort_keys=False))


def latencies(port: int, requests: dict[str, bytes], n: int, block: int = 50) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in requests}
    conns = {k: oh.SyncConn(port) for k in requests}
    try:
        for name, raw in requests.items():  # warm-up
            for _ in range(20):
                conns[name].call(raw)
        done = 0
        while done < n:
            for name, raw in requests.items():
                for _ in range(min(block, n - done)):
                    status, seconds, first, _ = conns[name].call(raw)
                    if status != 200:
                        raise SystemExit(f"{name}: status {status}")
                    out[name].append(first if first is not None else seconds)
            done += block
    finally:
        for c in conns.values():
            c.close()
    return out


def run(args: argparse.Namespace) -> dict:
    info = oh.machine_info()
    python = args.python or (str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists()
                             else sys.executable)
    tmp = Path(tempfile.mkdtemp(prefix="bench-router-"))
    procs: list[subprocess.Popen] = []
    started = time.monotonic()
    try:
        up_port = oh.free_port()
        up_log = tmp / "upstream.log"
        upstream = subprocess.Popen([python, str(BENCH / "upstream.py"), "--port", str(up_port)],
                                    stdout=up_log.open("w"), stderr=subprocess.STDOUT)
        procs.append(upstream)
        oh.wait_http(up_port, oh.request_bytes(up_port, "/v1/embeddings", EMBED), upstream, "upstream", up_log)
        gw_port = oh.free_port()
        cfg = tmp / "gateway.yaml"
        config(cfg, f"http://127.0.0.1:{up_port}", oh.free_port())
        env = {**os.environ, "INFERENCE_PROXY_LOCAL_MODELS": "0", "INFERENCE_PROXY_LOG_LEVEL": "WARNING"}
        for name in ("HTTPS_PROXY", "https_proxy", "INFERENCE_PROXY_UPSTREAM_PROXY", "INFERENCE_PROXY_REDIS"):
            env.pop(name, None)
        cmd = [python, "-m", "proxy", "serve", "--port", str(gw_port), "--data-dir", str(tmp / "data"),
               "--config", str(cfg)]
        if args.redis:
            cmd += ["--redis", args.redis]
        gw_log = tmp / "gateway.log"
        gw = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=gw_log.open("w"), stderr=subprocess.STDOUT)
        procs.append(gw)
        oh.wait_http(gw_port, oh.request_bytes(gw_port, "/_inference/bench-embed", None, "GET"), gw, "gateway", gw_log)
        embed = {k: oh.request_bytes(gw_port, f"/_inference/text_embedding/{ep}", EMBED) for k, (_, ep) in ROWS.items()}
        # the first request opens r-open's first breaker for an hour; the warm-up sends it
        lat = latencies(gw_port, embed, args.requests)
        messages = {"messages": [{"role": "user", "content": "Count."}]}
        streams = {k: oh.request_bytes(gw_port, f"/_inference/chat_completion/{ep}/_stream", messages)
                   for k, ep in (("direct", "bench-chat"), ("router", "r-chat"))}
        ttfe = latencies(gw_port, streams, args.streams, block=10)
        base = oh.summary_ms(lat["direct"])
        embeddings = {}
        for name, values in lat.items():
            s = oh.summary_ms(values)
            s["added_p50_ms"] = s["p50_ms"] - base["p50_ms"]
            s["added_p99_ms"] = s["p99_ms"] - base["p99_ms"]
            embeddings[name] = s
        embeddings["failover_503"]["added_over_router_p50_ms"] = (embeddings["failover_503"]["p50_ms"]
                                                                  - embeddings["router"]["p50_ms"])
        embeddings["failover_refused"]["added_over_router_p50_ms"] = (embeddings["failover_refused"]["p50_ms"]
                                                                      - embeddings["router"]["p50_ms"])
        sbase = oh.summary_ms(ttfe["direct"])
        stream = {name: {**oh.summary_ms(v), "added_p50_ms": oh.summary_ms(v)["p50_ms"] - sbase["p50_ms"]}
                  for name, v in ttfe.items()}
        info["loadavg_end"] = list(os.getloadavg())
        return {"machine": info, "params": {"quick": args.quick, "requests": args.requests, "streams": args.streams,
                                            "redis": bool(args.redis), "body": EMBED, "stream_events": up.EVENTS},
                "embeddings_c1": embeddings, "stream_ttfe_c1": stream,
                "elapsed_s": round(time.monotonic() - started, 1)}
    finally:
        for p in procs:
            oh.stop(p)


def report(res: dict) -> str:
    rows = []
    for name, (label, ep) in ROWS.items():
        s = res["embeddings_c1"][name]
        rows.append([label, ep, oh._f(s["p50_ms"], 3), oh._f(s["p99_ms"], 3), oh._f(s["added_p50_ms"], 3),
                     oh._f(s.get("added_over_router_p50_ms"), 3)])
    out = [f"POST /_inference/text_embedding/{{id}}, concurrency 1, n={res['params']['requests']} per row"
           f"{', breakers in Redis' if res['params']['redis'] else ''}",
           oh.table(rows, ["row", "endpoint", "p50 ms", "p99 ms", "added p50 ms (vs direct)",
                           "added p50 ms (vs router)"])]
    rows = [[label, oh._f(s["p50_ms"], 3), oh._f(s["p99_ms"], 3), oh._f(s["added_p50_ms"], 3)]
            for label, s in (("direct endpoint", res["stream_ttfe_c1"]["direct"]),
                             ("router → endpoint", res["stream_ttfe_c1"]["router"]))]
    out.append(f"\nChat stream ({res['params']['stream_events']} events), time to first event, "
               f"n={res['params']['streams']} per row")
    out.append(oh.table(rows, ["row", "TTFE p50 ms", "TTFE p99 ms", "added p50 ms"]))
    m = res["machine"]
    out.append(f"\nMachine: {m['nproc']} cores, {m['cpu_model']}; load average {m['loadavg_start'][0]:.2f} at start, "
               f"{m['loadavg_end'][0]:.2f} at end; run took {res['elapsed_s']} s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples (about 30 s)")
    p.add_argument("--requests", type=int, help="sequential requests per row (default 2000, quick 300)")
    p.add_argument("--streams", type=int, help="sequential streams per row (default 200, quick 40)")
    p.add_argument("--redis", help="keep breakers in this Redis (redis://host:port/db)")
    p.add_argument("--python", help="interpreter for the gateway (default .venv/bin/python)")
    p.add_argument("--output", default=str(BENCH / "results" / "router.json"))
    args = p.parse_args(argv)
    args.requests = args.requests or (300 if args.quick else 2000)
    args.streams = args.streams or (40 if args.quick else 200)
    res = run(args)
    print(report(res))
    write_results(res, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
