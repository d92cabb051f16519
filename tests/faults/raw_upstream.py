"""A hand-written HTTP/1.1 upstream on a loopback socket, for faults a framework server cannot make.

Each accepted connection reads one request and then runs one *behaviour*: an async function given
the `Conn`. Behaviours queued with `plan()` are used first, one per connection; after them the
`good` behaviour answers like OpenAI (embeddings, chat, streamed chat ending with `[DONE]`).
Every connection records what it sent and whether the gateway closed its side (`closed`), so
tests can assert that an upstream call was abandoned.

It shares no code with the gateway or its adapters: bytes are written by hand.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Awaitable, Callable

Behaviour = Callable[["Conn"], Awaitable[None]]

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def chunk(content: str | None = None, finish: str | None = None, role: str | None = None) -> dict:
    delta: dict = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "raw",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def event(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return b"data: " + data.encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
HEAD_EVENT = event(chunk("", role="assistant"))


def good_stream_events(pieces: list[str]) -> list[bytes]:
    out = [event(chunk("", role="assistant"))]
    out += [event(chunk(p)) for p in pieces]
    out += [event(chunk(finish="stop")), DONE]
    return out


def embedding_body(inputs: list[str]) -> dict:
    return {"object": "list", "model": "raw",
            "data": [{"object": "embedding", "index": i, "embedding": [0.25, -0.5, float(len(t))]}
                     for i, t in enumerate(inputs)],
            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}}


def chat_body(content: str) -> dict:
    return {"id": "chatcmpl-raw", "object": "chat.completion", "created": 1, "model": "raw",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.head = b""
        self.body = b""
        self.json: dict = {}
        self.sent = 0  # body and head bytes handed to the socket (after drain)
        self.closed = asyncio.Event()  # the gateway closed or reset its side
        self.chunked = False
        self._watch: asyncio.Task | None = None

    # ------------------------------------------------------------------ request

    async def read_request(self) -> None:
        self.head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        self.body = await self.reader.readexactly(length) if length else b""
        try:
            self.json = json.loads(self.body) if self.body else {}
        except ValueError:
            self.json = {}
        self._watch = asyncio.create_task(self._watch_close())

    async def _watch_close(self) -> None:
        try:
            while await self.reader.read(65536):
                pass
        except (ConnectionError, OSError):
            pass
        self.closed.set()

    @property
    def path(self) -> str:
        return self.head.split(b" ", 2)[1].decode()

    @property
    def streaming(self) -> bool:
        return bool(self.json.get("stream"))

    # ------------------------------------------------------------------ response

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.sent += len(data)

    async def start(self, status: int = 200, content_type: str = "text/event-stream", *, chunked: bool = True,
                    headers: dict[str, str] | None = None, length: int | None = None) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", f"Content-Type: {content_type}",
                 "Connection: close"]
        self.chunked = chunked and length is None
        if length is not None:
            lines.append(f"Content-Length: {length}")
        elif self.chunked:
            lines.append("Transfer-Encoding: chunked")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def write(self, data: bytes) -> None:
        """Body bytes, chunk-framed when the response is chunked."""
        if self.chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        await self.send(data)

    async def end(self) -> None:
        if self.chunked:
            await self.send(b"0\r\n\r\n")
        await self.close()

    async def respond(self, status: int, body: bytes | dict | str, headers: dict[str, str] | None = None,
                      content_type: str = "application/json") -> None:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) \
            else body
        await self.start(status, content_type, headers=headers, length=len(raw))
        await self.send(raw)
        await self.close()

    async def close(self) -> None:
        """A graceful close (FIN) once everything written has left."""
        try:
            await self.writer.drain()
            self.writer.close()
        except (ConnectionError, OSError):
            pass

    async def flushed(self) -> None:
        while self.writer.transport.get_write_buffer_size():
            await asyncio.sleep(0.005)

    async def reset(self) -> None:
        """Abort with a TCP RST after what was written has reached the peer."""
        await self.flushed()
        await asyncio.sleep(0.05)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def hang(self) -> None:
        """Say nothing more until the gateway leaves."""
        await self.closed.wait()


# ---------------------------------------------------------------------- behaviours


async def good(conn: Conn) -> None:
    if conn.path.endswith("/embeddings"):
        inputs = conn.json.get("input") or []
        await conn.respond(200, embedding_body([inputs] if isinstance(inputs, str) else inputs))
    elif conn.streaming:
        await conn.start()
        for frame in good_stream_events(["Hel", "lo"]):
            await conn.write(frame)
        await conn.end()
    else:
        await conn.respond(200, chat_body("Hello"))


class RawUpstream:
    def __init__(self) -> None:
        self._plan: list[Behaviour] = []
        self.conns: list[Conn] = []
        self.arrived = asyncio.Event()  # a request was read (reset by the tests when they wait again)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, behaviour: Behaviour, times: int = 1) -> None:
        self._plan.extend([behaviour] * times)

    def clear(self) -> None:
        self._plan.clear()

    @property
    def requests(self) -> int:
        return len(self.conns)

    async def start(self) -> "RawUpstream":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        conn = Conn(reader, writer)
        try:
            await conn.read_request()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        self.conns.append(conn)
        self.arrived.set()
        behaviour = self._plan.pop(0) if self._plan else good
        try:
            await behaviour(conn)
        except (ConnectionError, OSError):
            pass  # the gateway left while we were writing: that is what some tests want
        finally:
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            if not writer.is_closing():
                writer.close()

    async def wait_request(self, timeout: float = 5.0) -> Conn:
        await asyncio.wait_for(self.arrived.wait(), timeout)
        return self.conns[-1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.conns:
            conn.writer.transport.abort()
            if conn._watch is not None:
                conn._watch.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)


class Blackhole:
    """A listening socket whose accept queue is full: a new connection attempt is never answered
    (Linux drops the SYN), which is a connect timeout without leaving the loopback interface."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self._fillers.append(filler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        for s in self._fillers:
            s.close()
        self.sock.close()


def refused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
