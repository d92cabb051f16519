"""Simulated OpenAI-format upstream for the benchmarks (shares no code with `adapters/` or `proxy/`).

Two servers, both answering canned bytes so that the upstream never does per-request JSON work:

* nginx (Debian `nginx-light`): `return 200 '<json>'` answers the non-streaming `/v1/embeddings` POSTs.
  Used for the embeddings measurements when `nginx` is installed, because a Python server on a shared
  core tops out near the gateway's own throughput (design.md §11).
* a Python aiohttp/uvloop server (`python bench/upstream.py --port P`): the same canned `/v1/embeddings`
  answer (one 384-float vector per input) and the `/v1/chat/completions` stream: 200 `chat.completion.chunk`
  events, one usage chunk and `data: [DONE]`, all in one write (as fast as possible: the upstream then
  costs next to nothing, so what is measured is the relaying). `/paced/v1/chat/completions` streams the
  same events one write each with a fixed gap (`--gap-ms`) before each one; each content token carries
  its send time (`tok{i}@{time.monotonic_ns()} `) so that the client can measure each event's delay.

The vector is 384 floats written with full double precision (about 20 characters each), as OpenAI does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

DIMS = 384
EVENTS = 200
MODEL = "text-embedding-3-small"


def vector(dims: int = DIMS, seed: int = 0) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.uniform(-0.1, 0.1) for _ in range(dims)]


def embeddings_body(n_inputs: int = 1, dims: int = DIMS) -> bytes:
    vec = json.dumps(vector(dims), separators=(",", ":"))
    data = ",".join(f'{{"object":"embedding","index":{i},"embedding":{vec}}}' for i in range(n_inputs))
    return (f'{{"object":"list","data":[{data}],"model":"{MODEL}",'
            f'"usage":{{"prompt_tokens":{4 * n_inputs},"total_tokens":{4 * n_inputs}}}}}').encode()


def stream_frames(events: int = EVENTS, stamped: bool = False) -> list[bytes]:
    """The SSE frames of one chat stream: `events` content chunks, a usage chunk and [DONE].

    With `stamped`, each content token carries a `%d` placeholder for the send time
    (`time.monotonic_ns()`, the same clock in every process), as `tok{i}@{ns} `."""
    base = '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-chat",'
    frames = []
    for i in range(events):
        token = f"tok{i}@%d " if stamped else f"tok{i} "
        if i == 0:
            delta = f'{{"role":"assistant","content":"{token}"}}'
        else:
            delta = f'{{"content":"{token}"}}'
        finish = '"stop"' if i == events - 1 else "null"
        frames.append(f'data: {base}"choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}\n\n'
                      .encode())
    frames.append(f'data: {base}"choices":[],"usage":{{"prompt_tokens":5,"completion_tokens":{events},'
                  f'"total_tokens":{events + 5}}}}}\n\n'.encode())
    frames.append(b"data: [DONE]\n\n")
    return frames


def chat_body() -> bytes:
    return (b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-chat",'
            b'"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
            b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')


# ---------------------------------------------------------------------------------------------- nginx


def nginx_path() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


def nginx_config(prefix: Path, port: int, body: bytes) -> str:
    text = body.decode()
    assert "'" not in text and "\\" not in text and "$" not in text
    # one config token holds at most 4096 bytes: the answer is split over variables joined by `return`
    pieces = [text[i:i + 3000] for i in range(0, len(text), 3000)]
    sets = "\n".join(f"            set $body{i} '{piece}';" for i, piece in enumerate(pieces))
    joined = "".join(f"$body{i}" for i in range(len(pieces)))
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location = /v1/embeddings {{
            default_type application/json;
{sets}
            return 200 "{joined}";
        }}
        location / {{ return 404; }}
    }}
}}
"""


def start_nginx(prefix: Path, port: int, body: bytes, core: int | None) -> subprocess.Popen:
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(prefix, port, body))
    binary = nginx_path()
    assert binary is not None
    return subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=(lambda: os.sched_setaffinity(0, {core})) if core is not None else None)


# ---------------------------------------------------------------------------------------------- Python


def make_app(events: int, gap: float):
    from aiohttp import web

    vec = json.dumps(vector(), separators=(",", ":")).encode()
    one = embeddings_body(1)
    whole = b"".join(stream_frames(events))
    stamped = stream_frames(events, stamped=True)
    chat = chat_body()

    async def embeddings(request: web.Request) -> web.Response:
        raw = await request.read()
        if raw.find(b'"input":"') != -1 or raw.find(b'"input": "') != -1:
            return web.Response(body=one, content_type="application/json")
        n = len(json.loads(raw)["input"])  # a list: one vector per input
        data = b",".join(b'{"object":"embedding","index":%d,"embedding":%s}' % (i, vec) for i in range(n))
        body = b'{"object":"list","data":[%s],"model":"%s","usage":{"prompt_tokens":%d,"total_tokens":%d}}' % (
            data, MODEL.encode(), 4 * n, 4 * n)
        return web.Response(body=body, content_type="application/json")

    async def _chat(request: web.Request, pause: float) -> web.StreamResponse:
        raw = await request.read()
        if b'"stream":true' not in raw.replace(b" ", b""):
            return web.Response(body=chat, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        if not pause:
            await resp.write(whole)  # as fast as possible: the upstream costs one write per stream
        else:
            for i, frame in enumerate(stamped):
                await asyncio.sleep(pause)
                await resp.write(frame % time.monotonic_ns() if i < events else frame)
        await resp.write_eof()
        return resp

    async def chat_fast(request: web.Request) -> web.StreamResponse:
        return await _chat(request, 0.0)

    async def chat_paced(request: web.Request) -> web.StreamResponse:
        return await _chat(request, gap)

    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503, body=b'{"error":{"message":"overloaded","type":"server_error"}}',
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/refuse/v1/embeddings", refuse)  # a target that refuses at once (bench/router.py)
    app.router.add_post("/v1/chat/completions", chat_fast)
    app.router.add_post("/paced/v1/chat/completions", chat_paced)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--gap-ms", type=float, default=1.0)
    args = parser.parse_args()
    from aiohttp import web
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(args.events, args.gap_ms / 1000), host=args.host, port=args.port, access_log=None,
                print=None, backlog=4096)


if __name__ == "__main__":
    main()
