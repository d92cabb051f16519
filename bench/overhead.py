"""Gateway overhead: the same simulated upstream called directly and through the gateway, in one run.

    .venv/bin/python bench/overhead.py            # about 2 minutes
    .venv/bin/python bench/overhead.py --quick    # about 30 seconds
    make bench

What it measures (design.md §11; it measures, it never asserts):

* non-streaming embeddings, `POST /_inference/text_embedding/{id}` (`{"input": "one short sentence"}`) and
  `POST /v1/embeddings` through the gateway, against `POST /v1/embeddings` on the upstream directly:
  p50/p99 latency at concurrency 1 (sequential keep-alive requests after a warm-up) and the added
  latency; requests per second at a fixed number of connections (wrk when installed, else a Python
  client), with the gateway's CPU time per request;
* a 200-event chat stream (plus a usage chunk and `[DONE]`), through
  `POST /_inference/chat_completion/{id}/_stream` and `POST /v1/chat/completions` (`stream: true`), the
  latter translated (a request with the legacy `functions`, which is never passed through) and passed
  through (`proxy.wire.openai_relay`, the upstream speaking OpenAI's format), against the upstream directly: added time to first event and added delay per event
  ((total through the gateway − total direct) / 200) at concurrency 1, with the upstream writing the
  events back to back and again with a fixed gap before each event; relayed events per second with
  concurrent streams, and streams that lost or gained a frame;
* the gateway's resident memory (VmRSS): idle after start, the peak sampled under load, and after.

Every figure is also taken for a bare 30-line aiohttp relay (`bench/relay.py`), the floor a Python
gateway is judged against; the gateway is quoted as a ratio to it.

Processes: the simulated upstream (`bench/upstream.py`: nginx for the canned embeddings answer when
installed, an aiohttp/uvloop server for the streams and as the fallback), the gateway
(`python -m proxy serve`, endpoints from a YAML config pointing at the upstream through each endpoint's
`url`, rate limit 10,000,000 requests per minute so that rate limiting is not measured) and the relay.
On a machine with two or more cores the gateway and the relay are pinned to the first core and the
upstream and the load generators to the second.

Tools, none installed by this script: `apt-get install -y wrk nginx-light` (Debian/Ubuntu). Without
them the script falls back to Python for both, and says so in its output; the Python fallbacks make the
direct figures (and the RPS figures) much lower, so compare ratios only within one run.

Results: a table on stdout and JSON in bench/results/overhead.json (machine, tools, parameters).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import upstream as up  # noqa: E402  (bench/upstream.py)
from common import free_port, write_results  # noqa: E402  (bench/common.py)

EMBED_ID = "bench-embed"
CHAT_ID = "bench-chat"
PACED_ID = "bench-chat-paced"
EMBED_INPUT = {"input": "one short sentence"}
MESSAGES = [{"role": "user", "content": "Count to two hundred."}]

TARGET_NAMES = {
    "direct": "direct (client → upstream)",
    "relay": "bare aiohttp relay",
    "gw_es": "gateway /_inference",
    "gw_v1": "gateway /v1",
    "gw_pt": "gateway /v1 pass-through",
}
STREAM_TARGETS = ("direct", "relay", "gw_es", "gw_v1", "gw_pt")
# A `/v1` chat stream from an OpenAI-format upstream is passed through (`proxy.wire.openai_relay`); a client that
# sends the legacy `functions` is always translated, so the translated `/v1` stream is measured with one (the
# simulated upstream ignores it and streams text)
LEGACY_FUNCTIONS = [{"name": "unused", "parameters": {"type": "object", "properties": {}}}]


# ---------------------------------------------------------------------------------------------- HTTP


BENCH_AUTH = "Bearer sk-bench"  # what the relay and the upstream get (they ignore it)


def request_bytes(port: int, path: str, body: Any, method: str = "POST", auth: str = BENCH_AUTH) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: {auth}\r\nContent-Length: {len(data)}\r\n\r\n")
    return head.encode() + data


class Parser:
    """An incremental HTTP/1.1 response parser (Content-Length or chunked) that notes when the first
    SSE `data:` line of the body arrived."""

    __slots__ = ("buf", "body", "head", "status", "mode", "left", "done", "first_data", "clock")

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.buf = bytearray()
        self.body = bytearray()
        self.head = True
        self.status = 0
        self.mode = ""
        self.left = 0
        self.done = False
        self.first_data: float | None = None
        self.clock = clock

    def feed(self, data: bytes) -> bool:
        if not data:
            if self.mode == "eof":
                self.done = True
                return True
            raise ConnectionError("connection closed mid-response")
        self.buf += data
        if self.head:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            del self.buf[:end + 4]
            self.status = int(lines[0].split(" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.head = False
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.mode = "chunked"
            elif "content-length" in headers:
                self.mode = "length"
                self.left = int(headers["content-length"])
            else:
                self.mode = "eof"
        if self.mode == "length":
            take = min(self.left, len(self.buf))
            self.body += self.buf[:take]
            del self.buf[:take]
            self.left -= take
            self.done = self.left == 0
        elif self.mode == "chunked":
            self._chunks()
        else:
            self.body += self.buf
            self.buf.clear()
        if self.first_data is None and b"data:" in self.body:
            self.first_data = self.clock()
        return self.done

    def _chunks(self) -> None:
        buf = self.buf
        while True:
            if self.left:
                take = min(self.left, len(buf))
                self.body += buf[:take]
                del buf[:take]
                self.left -= take
                if self.left:
                    return
                continue
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return
            if line_end == 0:  # the CRLF that closes a chunk
                del buf[:2]
                continue
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            if size == 0:
                if buf.find(b"\r\n\r\n", line_end) >= 0 or len(buf) >= line_end + 4:
                    del buf[:line_end + 4]
                    self.done = True
                return
            del buf[:line_end + 2]
            self.left = size


class SyncConn:
    """One keep-alive connection used sequentially (concurrency 1): the least client-side jitter."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, raw: bytes, trace: list | None = None) -> tuple[int, float, float | None, bytes]:
        """(status, seconds to the whole response, seconds to the first `data:` line, body).

        With `trace`, appends (time.monotonic_ns(), decoded body length) after every read."""
        clock = time.perf_counter
        parser = Parser(clock)
        recv = self.sock.recv
        t0 = clock()
        self.sock.sendall(raw)
        if trace is None:
            while not parser.feed(recv(262144)):
                pass
        else:
            body, now = parser.body, time.monotonic_ns
            while True:
                done = parser.feed(recv(262144))
                trace.append((now(), len(body)))
                if done:
                    break
        t1 = clock()
        first = None if parser.first_data is None else parser.first_data - t0
        return parser.status, t1 - t0, first, bytes(parser.body)

    def close(self) -> None:
        self.sock.close()


async def _async_worker(port: int, raw: bytes, deadline: float, stats: dict, count_events: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    clock = time.perf_counter
    try:
        while clock() < deadline:
            parser = Parser(clock)
            t0 = clock()
            writer.write(raw)
            while not parser.feed(await reader.read(262144)):
                pass
            t1 = clock()
            if t1 > deadline:  # only whole responses inside the window count
                break
            stats["latencies"].append(t1 - t0)
            if parser.status != 200:
                stats["errors"] += 1
            if count_events:
                events = parser.body.count(b"data:")
                stats["events"] += events
                stats["per_stream"][events] = stats["per_stream"].get(events, 0) + 1
    finally:
        writer.close()


def async_load(port: int, raw: bytes, connections: int, seconds: float, count_events: bool = False) -> dict:
    """`connections` keep-alive connections sending `raw` back to back for `seconds` (Python client)."""
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    stats: dict = {"latencies": [], "errors": 0, "events": 0, "per_stream": {}}

    async def main() -> float:
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(_async_worker(port, raw, deadline, stats, count_events) for _ in range(connections)))
        return time.perf_counter() - start

    elapsed = runner(main())
    stats["elapsed"] = min(elapsed, seconds)
    return stats


_STAMP = re.compile(rb"@(\d+) ")


def event_delays(body: bytes, trace: list[tuple[int, int]]) -> list[float]:
    """Seconds from the upstream's send time stamped in each content token to the read that brought it."""
    lengths = [n for _, n in trace]
    out = []
    for m in _STAMP.finditer(body):
        k = bisect.bisect_left(lengths, m.end())
        out.append((trace[k][0] - int(m.group(1))) / 1e9)
    return out


# ---------------------------------------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def run_wrk(wrk: str, port: int, path: str, body: Any, connections: int, seconds: float, core: int | None,
            workdir: Path, auth: str = BENCH_AUTH) -> dict:
    script = workdir / "post.lua"
    data = json.dumps(body, separators=(",", ":"))
    script.write_text(f'wrk.method = "POST"\nwrk.body = [==[{data}]==]\n'
                      f'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "{auth}"\n')
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script),
           f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                         preexec_fn=_pin(core)).stdout
    result: dict = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    result["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = m.group(1).strip() if m else ""
    return result


# ---------------------------------------------------------------------------------------------- processes


def _pin(core: int | None):
    return (lambda: os.sched_setaffinity(0, {core})) if core is not None else None


def wait_http(port: int, raw: bytes, proc: subprocess.Popen, what: str, log: Path | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            conn = SyncConn(port)
            try:
                status, *_ = conn.call(raw)
            finally:
                conn.close()
            if status == 200:
                return
            last = RuntimeError(f"status {status}")
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise SystemExit(f"{what} did not become ready ({last}; exit code {proc.poll()}):\n{tail}")


def proc_status(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User+system time of the process and of its live children (the workers of `--workers N`)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            if p == pid:
                return float("nan")
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class RSSSampler:
    """Samples a process's VmRSS every 50 ms while load runs; `peak` is the largest value seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, proc_status(self.pid, "VmRSS"))
            self._stop.wait(0.05)

    def __enter__(self) -> "RSSSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------------------- stats


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": pct(values, 50) * 1e3, "p99_ms": pct(values, 99) * 1e3,
            "mean_ms": statistics.fmean(values) * 1e3 if values else float("nan"),
            "min_ms": min(values) * 1e3 if values else float("nan")}


def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    except (OSError, AttributeError):
        pass
    versions = {}
    for mod in ("aiohttp", "uvloop", "msgspec"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = None
    return {"nproc": os.cpu_count(), "cpus_allowed": sorted(os.sched_getaffinity(0)), "cpu_model": model,
            "mem_total_kb": mem, "kernel": platform.release(), "python": platform.python_version(), **versions,
            "loadavg_start": os.getloadavg()}


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return ""


# ---------------------------------------------------------------------------------------------- the run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~30 s run with fewer samples")
    p.add_argument("--latency-requests", type=int, help="sequential requests per target (default 2000, quick 300)")
    p.add_argument("--rps-seconds", type=float, help="seconds of RPS load per target (default 8, quick 2)")
    p.add_argument("--connections", type=int, default=32, help="connections for the RPS runs (default 32)")
    p.add_argument("--streams", type=int, help="sequential fast streams per target (default 50, quick 10)")
    p.add_argument("--paced-streams", type=int, help="sequential paced streams per target (default 15, quick 4)")
    p.add_argument("--gap-ms", type=float, default=1.0, help="gap before each event of the paced stream (1 ms)")
    p.add_argument("--stream-concurrency", type=int, default=16, help="concurrent streams (default 16)")
    p.add_argument("--stream-seconds", type=float, help="seconds of concurrent streams per target (default 8, quick 2)")
    p.add_argument("--rounds", type=int, help="turns the targets take in the RPS and concurrent-stream runs "
                                               "(default 2, quick 1)")
    p.add_argument("--events", type=int, default=up.EVENTS, help="content events per stream (default 200)")
    p.add_argument("--no-nginx", action="store_true", help="serve the embeddings from the Python upstream")
    p.add_argument("--no-wrk", action="store_true", help="use the Python load generator for RPS")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--python", default=None, help="interpreter for the gateway (default .venv/bin/python)")
    p.add_argument("--users", action="store_true",
                   help="the gateway as users run it: an API key on every request, the access log (INFO) on; "
                        "metrics, request ids, usage accounting and the rate limit are on in every run")
    p.add_argument("--workers", type=int, default=1, help="gateway worker processes (default 1); with more than "
                                                          "one the gateway is not pinned to a core")
    p.add_argument("--gateway-root", default=str(ROOT), help="the checkout whose gateway is measured (a baseline)")
    p.add_argument("--label", default="", help="a name for this run in the JSON (bench/perf_readme.py)")
    p.add_argument("--output", default=str(BENCH / "results" / "overhead.json"))
    args = p.parse_args(argv)
    quick = args.quick
    args.latency_requests = args.latency_requests or (300 if quick else 2000)
    args.rps_seconds = args.rps_seconds or (2.0 if quick else 8.0)
    args.streams = args.streams or (10 if quick else 50)
    args.paced_streams = args.paced_streams or (4 if quick else 15)
    args.stream_seconds = args.stream_seconds or (2.0 if quick else 8.0)
    args.rounds = args.rounds or (1 if quick else 2)
    return args


def gateway_config(path: Path, embed_origin: str, stream_origin: str) -> None:
    limit = {"requests_per_minute": 10_000_000}

    def ep(inference_id: str, task: str, url: str, model: str) -> dict:
        return {"inference_id": inference_id, "task_type": task, "service": "openai",
                "service_settings": {"api_key": "sk-bench", "model_id": model, "url": url, "rate_limit": limit}}

    import yaml  # the gateway's own dependency
    path.write_text(yaml.safe_dump({"endpoints": [
        ep(EMBED_ID, "text_embedding", f"{embed_origin}/v1/embeddings", up.MODEL),
        ep(CHAT_ID, "chat_completion", f"{stream_origin}/v1/chat/completions", "bench-chat"),
        ep(PACED_ID, "chat_completion", f"{stream_origin}/paced/v1/chat/completions", "bench-chat"),
    ]}, sort_keys=False))


def run(args: argparse.Namespace) -> dict:
    t_start = time.monotonic()
    info = machine_info()
    nginx = None if args.no_nginx else up.nginx_path()
    wrk = None if args.no_wrk else shutil.which("wrk")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2 and not args.no_pin:
        gw_core, load_core = cores[0], cores[1]
        pinned = "relay" if args.workers > 1 else "gateway and relay"
        pinning = (f"{pinned} on core {gw_core}; upstream ({'nginx, ' if nginx else ''}aiohttp), load "
                   f"generators ({'wrk, ' if wrk else ''}Python client) and this script on core {load_core}")
        os.sched_setaffinity(0, {load_core})
        if args.workers > 1:
            pinning += f"; the gateway's {args.workers} workers on any core"
    else:
        gw_core = load_core = None
        pinning = "none (fewer than 2 cores available)" if not args.no_pin else "none (--no-pin)"
    python = args.python or (str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists()
                             else sys.executable)
    tools = {
        "embeddings_upstream": f"nginx ({tool_version([nginx, '-v'])})" if nginx else "python aiohttp/uvloop",
        "stream_upstream": "python aiohttp/uvloop (bench/upstream.py)",
        "rps_load": f"wrk ({tool_version([wrk, '-v'])})" if wrk else "python asyncio client",
        "latency_client": "python blocking socket, one keep-alive connection",
        "stream_load": "python asyncio client",
        "gateway_python": python,
    }
    params = {k: getattr(args, k) for k in ("quick", "latency_requests", "rps_seconds", "connections", "streams",
                                            "paced_streams", "gap_ms", "stream_concurrency", "stream_seconds",
                                            "rounds", "events", "users", "workers", "label")}
    params["command"] = " ".join(["bench/overhead.py", *(sys.argv[1:] if __name__ == "__main__" else [])])
    params.update({"embedding_dims": up.DIMS, "embed_body": EMBED_INPUT, "warmup_requests": 200 if not args.quick
                   else 50, "rate_limit_rpm": 10_000_000, "pinning": pinning})
    print(f"machine: {info['nproc']} cores ({info['cpu_model']}), load average {info['loadavg_start'][0]:.2f}")
    print(f"tools: embeddings upstream = {tools['embeddings_upstream']}; streams upstream = "
          f"{tools['stream_upstream']}; RPS load = {tools['rps_load']}")
    print(f"pinning: {pinning}")

    tmp = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    procs: list[subprocess.Popen] = []
    results: dict = {"machine": info, "tools": tools, "params": params}
    try:
        # ---- upstreams
        py_port = free_port()
        py_log = tmp / "upstream.log"
        py_up = subprocess.Popen([python, str(BENCH / "upstream.py"), "--port", str(py_port), "--events",
                                  str(args.events), "--gap-ms", str(args.gap_ms)],
                                 stdout=py_log.open("w"), stderr=subprocess.STDOUT, preexec_fn=_pin(load_core))
        procs.append(py_up)
        embed_port = py_port
        if nginx:
            embed_port = free_port()
            ngx = up.start_nginx(tmp / "nginx", embed_port, up.embeddings_body(1), load_core)
            procs.append(ngx)
            wait_http(embed_port, request_bytes(embed_port, "/v1/embeddings", EMBED_INPUT), ngx, "nginx",
                      tmp / "nginx" / "error.log")
        wait_http(py_port, request_bytes(py_port, "/v1/embeddings", EMBED_INPUT), py_up, "python upstream", py_log)

        # ---- relay and gateway
        relay_port = free_port()
        relay_log = tmp / "relay.log"
        relay = subprocess.Popen([python, str(BENCH / "relay.py"), "--port", str(relay_port), "--embed-upstream",
                                  f"http://127.0.0.1:{embed_port}", "--stream-upstream",
                                  f"http://127.0.0.1:{py_port}"],
                                 stdout=relay_log.open("w"), stderr=subprocess.STDOUT, preexec_fn=_pin(gw_core))
        procs.append(relay)
        gw_port = free_port()
        config = tmp / "gateway.yaml"
        gateway_config(config, f"http://127.0.0.1:{embed_port}", f"http://127.0.0.1:{py_port}")
        gw_log = tmp / "gateway.log"
        env = {**os.environ, "INFERENCE_PROXY_LOCAL_MODELS": "0",
               "INFERENCE_PROXY_LOG_LEVEL": "INFO" if args.users else "WARNING"}
        for name in ("HTTPS_PROXY", "https_proxy", "INFERENCE_PROXY_UPSTREAM_PROXY"):
            env.pop(name, None)
        gw = subprocess.Popen([python, "-m", "proxy", "serve", "--port", str(gw_port), "--data-dir",
                               str(tmp / "data"), "--config", str(config), "--workers", str(args.workers)],
                              cwd=args.gateway_root, env=env, stdout=gw_log.open("w"), stderr=subprocess.STDOUT,
                              preexec_fn=_pin(gw_core if args.workers == 1 else None))
        procs.append(gw)
        wait_http(relay_port, request_bytes(relay_port, "/v1/embeddings", EMBED_INPUT), relay, "relay", relay_log)
        wait_http(gw_port, request_bytes(gw_port, f"/_inference/{EMBED_ID}", None, "GET"), gw, "gateway", gw_log)
        gw_auth = BENCH_AUTH
        if args.users:  # the first key turns access control on (proxy/auth.py)
            conn = SyncConn(gw_port)
            status, _, _, body = conn.call(request_bytes(gw_port, "/_security/api_key", {"name": "bench"}))
            conn.close()
            if status != 200:
                raise SystemExit(f"could not create an API key: {status} {body[:300]!r}")
            gw_auth = "ApiKey " + json.loads(body)["encoded"]
            # every worker must know the key before load starts (they follow the store)
            probe = request_bytes(gw_port, f"/_inference/{EMBED_ID}", None, "GET", auth=gw_auth)
            for _ in range(20):
                wait_http(gw_port, probe, gw, "gateway with the API key", gw_log)
        auth = {"gw_es": gw_auth, "gw_v1": gw_auth}
        time.sleep(0.5)
        rss = {"gateway_idle_kb": proc_status(gw.pid, "VmRSS"), "relay_idle_kb": proc_status(relay.pid, "VmRSS")}

        # ---- targets
        embed_reqs = {
            "direct": (embed_port, request_bytes(embed_port, "/v1/embeddings", {"model": up.MODEL, **EMBED_INPUT})),
            "relay": (relay_port, request_bytes(relay_port, "/v1/embeddings", {"model": up.MODEL, **EMBED_INPUT})),
            "gw_es": (gw_port, request_bytes(gw_port, f"/_inference/text_embedding/{EMBED_ID}", EMBED_INPUT,
                                             auth=gw_auth)),
            "gw_v1": (gw_port, request_bytes(gw_port, "/v1/embeddings", {"model": EMBED_ID, **EMBED_INPUT},
                                             auth=gw_auth)),
        }
        embed_paths = {"direct": "/v1/embeddings", "relay": "/v1/embeddings",
                       "gw_es": f"/_inference/text_embedding/{EMBED_ID}", "gw_v1": "/v1/embeddings"}
        embed_bodies = {"direct": {"model": up.MODEL, **EMBED_INPUT}, "relay": {"model": up.MODEL, **EMBED_INPUT},
                        "gw_es": EMBED_INPUT, "gw_v1": {"model": EMBED_ID, **EMBED_INPUT}}
        stream_body = {"model": "bench-chat", "messages": MESSAGES, "stream": True,
                       "stream_options": {"include_usage": True}}

        def stream_reqs(paced: bool) -> dict[str, tuple[int, bytes]]:
            prefix = "/paced" if paced else ""
            ep = PACED_ID if paced else CHAT_ID
            return {
                "direct": (py_port, request_bytes(py_port, f"{prefix}/v1/chat/completions", stream_body)),
                "relay": (relay_port, request_bytes(relay_port, f"{prefix}/v1/chat/completions", stream_body)),
                "gw_es": (gw_port, request_bytes(gw_port, f"/_inference/chat_completion/{ep}/_stream",
                                                 {"messages": MESSAGES}, auth=gw_auth)),
                "gw_v1": (gw_port, request_bytes(gw_port, "/v1/chat/completions",
                                                 {**stream_body, "model": ep, "functions": LEGACY_FUNCTIONS},
                                                 auth=gw_auth)),
                "gw_pt": (gw_port, request_bytes(gw_port, "/v1/chat/completions", {**stream_body, "model": ep},
                                                 auth=gw_auth)),
            }

        sampler = RSSSampler(gw.pid)
        sampler.__enter__()
        cpu = lambda: {"gw": cpu_seconds(gw.pid), "relay": cpu_seconds(relay.pid)}  # noqa: E731
        proc_of = {"gw_es": "gw", "gw_v1": "gw", "gw_pt": "gw", "relay": "relay"}

        # ---- 1. embeddings latency at concurrency 1 (targets interleaved in blocks, so drifting background
        # load hits them alike)
        print(f"\n[1/5] embeddings, concurrency 1: {args.latency_requests} requests per target ...", flush=True)
        conns = {name: SyncConn(port) for name, (port, _) in embed_reqs.items()}
        samples: dict[str, list[float]] = {name: [] for name in embed_reqs}
        errors = {name: 0 for name in embed_reqs}
        check = {}
        for name, (_, raw) in embed_reqs.items():
            for _ in range(params["warmup_requests"]):
                status, _, _, body = conns[name].call(raw)
            check[name] = {"status": status, "bytes": len(body)}
        block = 50
        done = 0
        while done < args.latency_requests:
            n = min(block, args.latency_requests - done)
            for name, (_, raw) in embed_reqs.items():
                conn, out = conns[name], samples[name]
                for _ in range(n):
                    status, total, _, _ = conn.call(raw)
                    out.append(total)
                    if status != 200:
                        errors[name] += 1
            done += n
        for conn in conns.values():
            conn.close()
        lat = {name: {**summary_ms(v), "errors": errors[name], **check[name]} for name, v in samples.items()}
        for name in ("relay", "gw_es", "gw_v1"):
            lat[name]["added_p50_ms"] = lat[name]["p50_ms"] - lat["direct"]["p50_ms"]
            lat[name]["added_p99_ms"] = lat[name]["p99_ms"] - lat["direct"]["p99_ms"]
            lat[name]["added_min_ms"] = lat[name]["min_ms"] - lat["direct"]["min_ms"]
        results["embeddings_latency_c1"] = lat

        # ---- 2. streams at concurrency 1
        def stream_c1(paced: bool, count: int) -> dict:
            reqs = stream_reqs(paced)
            conns = {name: SyncConn(port) for name, (port, _) in reqs.items()}
            firsts: dict[str, list[float]] = {n: [] for n in reqs}
            totals: dict[str, list[float]] = {n: [] for n in reqs}
            events: dict[str, set[int]] = {n: set() for n in reqs}
            delays: dict[str, list[float]] = {n: [] for n in reqs}
            bad = {n: 0 for n in reqs}
            for name, (_, raw) in reqs.items():  # warm-up
                for _ in range(2 if paced else 5):
                    conns[name].call(raw)
            for _ in range(count):
                for name, (_, raw) in reqs.items():
                    trace: list | None = [] if paced else None
                    status, total, first, body = conns[name].call(raw, trace)
                    if trace is not None:
                        delays[name].extend(event_delays(body, trace))
                    if status != 200 or first is None or b"[DONE]" not in body:
                        bad[name] += 1
                    totals[name].append(total)
                    firsts[name].append(first if first is not None else total)
                    events[name].add(body.count(b"data:"))
            for conn in conns.values():
                conn.close()
            out: dict = {}
            for name in reqs:
                out[name] = {"n": count, "ttfe_p50_ms": pct(firsts[name], 50) * 1e3,
                             "ttfe_p99_ms": pct(firsts[name], 99) * 1e3,
                             "total_p50_ms": pct(totals[name], 50) * 1e3, "total_p99_ms": pct(totals[name], 99) * 1e3,
                             "data_frames_per_stream": sorted(events[name]), "bad_streams": bad[name]}
                if paced:
                    out[name].update({"event_delay_p50_us": pct(delays[name], 50) * 1e6,
                                      "event_delay_p99_us": pct(delays[name], 99) * 1e6,
                                      "stamped_events": len(delays[name])})
            for name in STREAM_TARGETS[1:]:
                o, d = out[name], out["direct"]
                o["added_ttfe_p50_ms"] = o["ttfe_p50_ms"] - d["ttfe_p50_ms"]
                o["added_total_p50_ms"] = o["total_p50_ms"] - d["total_p50_ms"]
                o["added_per_event_us"] = o["added_total_p50_ms"] * 1e3 / args.events
                if paced:
                    o["added_event_delay_p50_us"] = o["event_delay_p50_us"] - d["event_delay_p50_us"]
                    o["added_event_delay_p99_us"] = o["event_delay_p99_us"] - d["event_delay_p99_us"]
            return out

        print(f"[2/5] 200-event streams, concurrency 1: {args.streams} back-to-back and {args.paced_streams} "
              f"paced ({args.gap_ms:g} ms gap) per target ...", flush=True)
        results["stream_c1_fast"] = stream_c1(False, args.streams)
        results["stream_c1_paced"] = stream_c1(True, args.paced_streams)

        # ---- 3. embeddings RPS at fixed concurrency; the targets take turns over `rounds` rounds so that
        # drifting background load hits them alike. Totals: requests and server CPU summed over the rounds.
        rounds = args.rounds
        slice_s = max(1, round(args.rps_seconds / rounds)) if wrk else args.rps_seconds / rounds
        print(f"[3/5] embeddings RPS, {args.connections} connections, {rounds} x {slice_s:g} s per target "
              f"({'wrk' if wrk else 'python client'}) ...", flush=True)
        per_round: dict[str, list[dict]] = {name: [] for name in embed_reqs}
        for rnd in range(rounds):
            for name, (port, raw) in embed_reqs.items():
                if wrk:
                    if rnd == 0:
                        run_wrk(wrk, port, embed_paths[name], embed_bodies[name], args.connections, 1, load_core,
                                tmp, auth.get(name, BENCH_AUTH))
                    c0 = cpu()
                    r = run_wrk(wrk, port, embed_paths[name], embed_bodies[name], args.connections, slice_s,
                                load_core, tmp, auth.get(name, BENCH_AUTH))
                    c1 = cpu()
                    r.pop("raw")
                    r["seconds"] = slice_s
                else:
                    if rnd == 0:
                        async_load(port, raw, args.connections, 1.0)
                    c0 = cpu()
                    st = async_load(port, raw, args.connections, slice_s)
                    c1 = cpu()
                    lats = st["latencies"]
                    r = {"rps": len(lats) / st["elapsed"], "requests": len(lats), "seconds": st["elapsed"],
                         "p50_ms": pct(lats, 50) * 1e3, "p90_ms": pct(lats, 90) * 1e3, "p99_ms": pct(lats, 99) * 1e3,
                         "non_2xx": st["errors"]}
                if name in proc_of:
                    r["server_cpu_s"] = c1[proc_of[name]] - c0[proc_of[name]]
                per_round[name].append(r)
        rps: dict = {}
        for name, rs in per_round.items():
            requests = sum(r["requests"] for r in rs)
            seconds = sum(r["seconds"] for r in rs)
            agg = {"rps": requests / seconds if seconds else float("nan"), "requests": requests, "seconds": seconds,
                   "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                   "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                   "non_2xx": sum(r["non_2xx"] for r in rs), "rounds": rs}
            if name in proc_of and requests:
                cpu_s = sum(r["server_cpu_s"] for r in rs)
                agg["server_cpu_us_per_request"] = cpu_s / requests * 1e6
                agg["server_cpu_share"] = cpu_s / seconds
            rps[name] = agg
        for name in ("gw_es", "gw_v1"):
            rps[name]["ratio_to_relay"] = rps[name]["rps"] / rps["relay"]["rps"] if rps["relay"]["rps"] else None
        results["embeddings_rps"] = rps

        # ---- 4. concurrent streams, the same way
        sslice = args.stream_seconds / rounds
        print(f"[4/5] {args.stream_concurrency} concurrent 200-event streams, {rounds} x {sslice:g} s per "
              f"target ...", flush=True)
        expected = {n: v["data_frames_per_stream"] for n, v in results["stream_c1_fast"].items()}
        sreqs = stream_reqs(False)
        acc: dict[str, dict] = {n: {"streams": 0, "events": 0, "seconds": 0.0, "errors": 0, "cpu": 0.0,
                                    "latencies": [], "per_stream": {}} for n in sreqs}
        for rnd in range(rounds):
            for name, (port, raw) in sreqs.items():
                if rnd == 0:
                    async_load(port, raw, args.stream_concurrency, 0.5, count_events=True)
                c0 = cpu()
                st = async_load(port, raw, args.stream_concurrency, sslice, count_events=True)
                c1 = cpu()
                a = acc[name]
                a["streams"] += len(st["latencies"])
                a["events"] += st["events"]
                a["seconds"] += st["elapsed"]
                a["errors"] += st["errors"]
                a["latencies"] += st["latencies"]
                for ev, c in st["per_stream"].items():
                    a["per_stream"][ev] = a["per_stream"].get(ev, 0) + c
                if name in proc_of:
                    a["cpu"] += c1[proc_of[name]] - c0[proc_of[name]]
        conc: dict = {}
        for name, a in acc.items():
            want = expected[name][0] if len(expected[name]) == 1 else None
            lost = sum(c for ev, c in a["per_stream"].items() if want is not None and ev != want)
            r = {"streams": a["streams"], "seconds": a["seconds"], "streams_per_s": a["streams"] / a["seconds"],
                 "events_per_s": a["events"] / a["seconds"],
                 "content_events_per_s": a["streams"] * args.events / a["seconds"],
                 "stream_p50_ms": pct(a["latencies"], 50) * 1e3, "stream_p99_ms": pct(a["latencies"], 99) * 1e3,
                 "errors": a["errors"], "streams_with_wrong_frame_count": lost,
                 "frames_per_stream_seen": sorted(a["per_stream"])}
            if name in proc_of and a["streams"]:
                r["server_cpu_us_per_event"] = a["cpu"] / (a["streams"] * args.events) * 1e6
                r["server_cpu_share"] = a["cpu"] / a["seconds"]
            conc[name] = r
        for name in STREAM_TARGETS[2:]:
            base = conc["relay"]["events_per_s"]
            conc[name]["ratio_to_relay"] = conc[name]["events_per_s"] / base if base else None
        results["stream_concurrent"] = conc

        sampler.__exit__(None, None, None)
        print("[5/5] memory after load ...", flush=True)
        time.sleep(1.0)
        rss.update({"gateway_peak_under_load_kb": sampler.peak, "gateway_after_kb": proc_status(gw.pid, "VmRSS"),
                    "gateway_hwm_kb": proc_status(gw.pid, "VmHWM"), "relay_after_kb": proc_status(relay.pid, "VmRSS")})
        results["rss"] = rss
        lines = gw_log.read_text().splitlines()
        results["access_log_lines"] = sum(" proxy.access " in line for line in lines)
        tail = "\n".join(line for line in lines if " proxy.access " not in line)[-2000:]
        if tail.strip():
            results["gateway_log_tail"] = tail
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()
    results["elapsed_s"] = round(time.monotonic() - t_start, 1)
    return results


# ---------------------------------------------------------------------------------------------- output


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def report(res: dict) -> str:
    out = []
    lat, rps = res["embeddings_latency_c1"], res["embeddings_rps"]
    conn = res["params"]["connections"]
    rows = []
    for name in ("direct", "relay", "gw_es", "gw_v1"):
        a, r = lat[name], rps[name]
        rows.append([TARGET_NAMES[name], _f(a["p50_ms"], 3), _f(a["p99_ms"], 3), _f(a.get("added_p50_ms"), 3),
                     _f(a.get("added_p99_ms"), 3), _f(r["rps"], 0), _f(r.get("p99_ms"), 2),
                     _f(r.get("server_cpu_us_per_request"), 0), _f(r.get("ratio_to_relay"), 2)])
    out.append(f"Embeddings, one short input, 384-float answer ({res['tools']['embeddings_upstream']} upstream)")
    out.append(table(rows, ["target", "c=1 p50 ms", "c=1 p99 ms", "added p50 ms", "added p99 ms",
                            f"RPS @{conn}", f"p99 ms @{conn}", "server CPU µs/req", "RPS / relay"]))
    s = res["stream_c1_fast"]
    rows = []
    for name in STREAM_TARGETS:
        a = s[name]
        rows.append([TARGET_NAMES[name], _f(a["ttfe_p50_ms"], 3), _f(a.get("added_ttfe_p50_ms"), 3),
                     _f(a["total_p50_ms"], 2), _f(a.get("added_total_p50_ms"), 2), _f(a.get("added_per_event_us"), 1),
                     "/".join(map(str, a["data_frames_per_stream"])), _f(a["bad_streams"])])
    out.append(f"\nChat stream, {res['params']['events']} events + usage + [DONE] in one upstream write, concurrency 1 "
               f"(n={s['direct']['n']} per target)")
    out.append(table(rows, ["target", "TTFE p50 ms", "added TTFE ms", "total p50 ms", "added total ms",
                            "added µs/event", "data frames", "bad"]))
    s = res["stream_c1_paced"]
    rows = []
    for name in STREAM_TARGETS:
        a = s[name]
        rows.append([TARGET_NAMES[name], _f(a["ttfe_p50_ms"], 3), _f(a.get("added_ttfe_p50_ms"), 3),
                     _f(a["event_delay_p50_us"], 0), _f(a["event_delay_p99_us"], 0),
                     _f(a.get("added_event_delay_p50_us"), 0), _f(a.get("added_event_delay_p99_us"), 0),
                     "/".join(map(str, a["data_frames_per_stream"])), _f(a["bad_streams"])])
    out.append(f"\nChat stream, one event per upstream write, {res['params']['gap_ms']:g} ms gap before each, "
               f"concurrency 1 (n={s['direct']['n']} per target; event delay = upstream send → client read)")
    out.append(table(rows, ["target", "TTFE p50 ms", "added TTFE ms", "event delay p50 µs", "p99 µs",
                            "added p50 µs", "added p99 µs", "data frames", "bad"]))
    c = res["stream_concurrent"]
    rows = []
    for name in STREAM_TARGETS:
        a = c[name]
        rows.append([TARGET_NAMES[name], _f(a["events_per_s"], 0), _f(a["streams_per_s"], 1),
                     _f(a["stream_p99_ms"], 1), _f(a.get("server_cpu_us_per_event"), 1),
                     _f(a["streams_with_wrong_frame_count"]), _f(a.get("ratio_to_relay"), 2)])
    out.append(f"\nConcurrent streams: {res['params']['stream_concurrency']} at a time, "
               f"{res['params']['stream_seconds']:g} s")
    out.append(table(rows, ["target", "relayed frames/s", "streams/s", "stream p99 ms", "server CPU µs/event",
                            "lost/extra", "frames/s / relay"]))
    m = res["rss"]
    out.append(f"\nGateway RSS: idle {m['gateway_idle_kb'] / 1024:.1f} MiB, peak under load "
               f"{m['gateway_peak_under_load_kb'] / 1024:.1f} MiB, after {m['gateway_after_kb'] / 1024:.1f} MiB "
               f"(bare relay: idle {m['relay_idle_kb'] / 1024:.1f} MiB, after {m['relay_after_kb'] / 1024:.1f} MiB)")
    mi = res["machine"]
    pr = res["params"]
    out.append(f"Gateway: {pr.get('workers', 1)} worker(s); "
               + ("as users run it (API key, access log)" if pr.get("users") else "no API key, access log off")
               + f"; {res.get('access_log_lines', 0)} access log lines")
    out.append(f"Machine: {mi['nproc']} cores, {mi['cpu_model']}; load average {mi['loadavg_start'][0]:.2f} at "
               f"start, {mi['loadavg_end'][0]:.2f} at end; {res['params']['pinning']}; run took {res['elapsed_s']} s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    print()
    print(report(res))
    write_results(res, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
