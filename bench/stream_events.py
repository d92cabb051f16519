"""The marginal per-event cost of a chat stream, in process: the bench upstream's 200-event OpenAI stream
body, cut into reads, through the same calls the gateway makes for each read (decoder, parser, renderer,
or the pass-through relay), no sockets. Prints ns per event for each surface.

    .venv/bin/python bench/stream_events.py                 # all paths, 16 KiB reads
    .venv/bin/python bench/stream_events.py --read 1024     # smaller reads (more events split across them)

For a count that does not depend on the machine's load, run it under callgrind twice (e.g. `--rounds 10`
and `--rounds 60`, `--repeat 1`, PYTHONHASHSEED=0) and divide the difference in instructions by the events.
Complements `bench/overhead.py` (end to end, where each request's fixed cost is included).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# `--root DIR`: the checkout whose code is measured (default: this one), for a before/after in one run
ROOT = sys.argv[sys.argv.index("--root") + 1] if "--root" in sys.argv else str(BENCH.parent)
sys.path.insert(0, ROOT)
sys.path.insert(0, str(BENCH))

import upstream as up  # noqa: E402  (bench/upstream.py)
from adapters.openai_compat import OpenAICompatible  # noqa: E402
from proxy.types import ChatDelta, ChatRequest, ChatMessage, TaskType  # noqa: E402
from proxy.wire import es, openai  # noqa: E402
from proxy.wire.openai_relay import ChatRelay  # noqa: E402


class _Endpoint:
    inference_id = "bench"
    task_type = TaskType.CHAT_COMPLETION
    service = "openai"
    service_settings = {"model_id": "bench-chat", "url": "http://127.0.0.1:1/v1/chat/completions"}
    task_settings: dict = {}
    secrets = {"api_key": "k"}


def reads(size: int) -> list[bytes]:
    body = b"".join(up.stream_frames())
    return [body[i:i + size] for i in range(0, len(body), size)]


def translated(chunks: list[bytes], adapter: OpenAICompatible, req: ChatRequest, renderer) -> int:
    """What `RemoteBackend._deltas` and `streaming._write` do for each read; returns the bytes written."""
    reader = adapter.stream_reader(req) if hasattr(adapter, "stream_reader") else _Framed(adapter, req)
    written = 0
    for chunk in chunks:
        batch: list[ChatDelta] = []
        reader.feed(chunk, batch)
        written += len(renderer.frames(batch) if hasattr(renderer, "frames")
                       else b"".join(filter(None, map(renderer.frame, batch))))
    reader.close([])
    return written + len(renderer.done())


class _Framed:
    """What `_deltas` did before adapters had `stream_reader` (for `--root` on an older checkout)."""

    def __init__(self, adapter: OpenAICompatible, req: ChatRequest) -> None:
        self.decoder, self.parser = adapter.stream_decoder(), adapter.stream_parser(req)

    def feed(self, chunk: bytes, out: list[ChatDelta]) -> None:
        for frame in self.decoder.feed(chunk):
            out.extend(self.parser.feed(frame))

    def close(self, out: list[ChatDelta]) -> None:
        for frame in self.decoder.close():
            out.extend(self.parser.feed(frame))
        out.extend(self.parser.finish())


def relayed(chunks: list[bytes], adapter: OpenAICompatible, req: ChatRequest) -> int:
    parser = adapter.stream_parser(req)
    relay = ChatRelay("bench-chat", include_usage=False)
    written = 0
    for chunk in chunks:
        written += len(relay.feed(chunk, parser).data)
    written += len(relay.close(parser).data)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--path", choices=("es", "v1", "pt", "all"), default="all")
    p.add_argument("--read", type=int, default=16384, help="bytes per upstream read (default 16384)")
    p.add_argument("--rounds", type=int, default=50, help="streams per repeat (default 50)")
    p.add_argument("--repeat", type=int, default=7, help="repeats, the fastest counts (default 7)")
    p.add_argument("--root", default=ROOT, help="the checkout measured (default: this one)")
    args = p.parse_args(argv)
    chunks = reads(args.read)
    adapter = OpenAICompatible(_Endpoint())
    req = ChatRequest(messages=[ChatMessage(role="user", content="hi")], stream=True)
    paths = {
        "es": lambda: translated(chunks, adapter, req, es.ChatStream("id", "bench-chat")),
        "v1": lambda: translated(chunks, adapter, req, openai.ChatStream("bench-chat", False, legacy_functions=True)),
        "pt": lambda: relayed(chunks, adapter, req),
    }
    for name, run in paths.items():
        if args.path not in ("all", name):
            continue
        run()
        best = float("inf")
        for _ in range(args.repeat):  # the fastest repeat: the least disturbed by other processes
            started = time.process_time_ns()
            for _ in range(args.rounds):
                run()
            best = min(best, time.process_time_ns() - started)
        ns = best / args.rounds / up.EVENTS
        print(f"{name}: {ns:7.0f} ns/event ({args.read}-byte reads, best of {args.repeat} x {args.rounds} streams "
              f"of {up.EVENTS} events)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
