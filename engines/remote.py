"""A worker's local models when the engine host runs them (`--workers N`, `engines/host.py`).

`HostedEngines` has the `EngineManager` interface the gateway uses: what endpoints may name (check,
resolve, the preconfigured endpoints) is answered here by an `EngineManager` that is never started,
so it loads nothing; every call goes to the host over one connection per worker, many calls at once,
told apart by their ids. The models' status (for `/_ready`, the console, and the 503 while loading)
is pushed by the host as it changes. When the host goes away, calls in flight and new calls fail
with 503 and the worker connects again; the supervisor restarts a host that died.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any, AsyncIterator

import msgspec

from proxy.catalogue import Service
from proxy.contract import CallContext
from proxy.endpoint import Endpoint
from proxy.errors import ServiceUnavailableError
from proxy.settings import Settings
from proxy.types import (ChatDelta, ChatRequest, ChatResult, EmbedRequest, EmbedResult, RerankRequest, RerankResult,
                         SparseEmbedResult, TaskType)

from . import frames
from .base import LocalModel
from .manager import EngineManager

log = logging.getLogger("engines.remote")

_LOST = "lost"  # not a frame: the connection closed before the answer came
_RETRY = {"Retry-After": "2"}
_CONNECT_TIMEOUT_S = 5.0


def _unreachable(why: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(f"The local engine host is not reachable ({why}); retry shortly", headers=_RETRY)


class _Link:
    """One connection to the host and the calls waiting on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending: dict[int, asyncio.Queue] = {}
        self.alive = True
        self.reading = asyncio.create_task(self._read(reader), name="engine-host-link")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                rid, kind, payload = await frames.read(reader)
                queue = self.pending.get(rid)
                if queue is not None:
                    queue.put_nowait((kind, payload))
        except (asyncio.IncompleteReadError, ConnectionError, msgspec.DecodeError):
            pass
        finally:
            self.alive = False
            self.writer.close()
            for queue in self.pending.values():
                queue.put_nowait((_LOST, None))

    @property
    def usable(self) -> bool:
        return self.alive and not self.writer.is_closing()

    def send(self, rid: int, kind: str, payload: Any) -> None:
        if not self.usable:
            raise _unreachable("the connection closed")
        self.writer.write(frames.encode(rid, kind, payload))

    async def close(self) -> None:
        self.writer.close()
        self.reading.cancel()
        await asyncio.gather(self.reading, return_exceptions=True)


class EngineClient:
    def __init__(self, path: str) -> None:
        self.path = path
        self._link: _Link | None = None
        self._connecting = asyncio.Lock()
        self._ids = itertools.count(1)

    async def link(self) -> _Link:
        if self._link is not None and self._link.usable:
            return self._link
        async with self._connecting:
            if self._link is None or not self._link.usable:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.path),
                                                            _CONNECT_TIMEOUT_S)
                except (OSError, TimeoutError) as exc:
                    raise _unreachable(f"{type(exc).__name__}: {exc}") from None
                self._link = _Link(reader, writer)
        return self._link

    async def open(self, kind: str, payload: Any) -> "_Exchange":
        link = await self.link()
        rid = next(self._ids)
        queue: asyncio.Queue = asyncio.Queue()
        link.pending[rid] = queue
        exchange = _Exchange(link, rid, queue)
        try:
            link.send(rid, kind, payload)
            await link.writer.drain()
        except BaseException as exc:
            exchange.close()  # e.g. the caller was cancelled while the request was being written
            if isinstance(exc, ConnectionError):
                raise _unreachable(str(exc) or type(exc).__name__) from None
            raise
        return exchange

    async def notify(self, kind: str, payload: Any) -> None:
        """A message that has no answer."""
        link = await self.link()
        link.send(next(self._ids), kind, payload)

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()


class _Exchange:
    """The frames of one call. `close()` before its last frame cancels the call in the host."""

    def __init__(self, link: _Link, rid: int, queue: asyncio.Queue) -> None:
        self.link = link
        self.rid = rid
        self.queue = queue
        self.done = False

    async def next(self) -> tuple[str, msgspec.Raw]:
        kind, payload = await self.queue.get()
        if kind == _LOST:
            self.done = True
            raise ServiceUnavailableError("The local engine host closed the connection before it answered (it is "
                                          "restarted when it dies); retry shortly", headers=_RETRY)
        if kind == frames.ERROR:
            self.done = True
            raise frames.error(payload)
        if kind in (frames.OK, frames.END):
            self.done = True
        return kind, payload

    def close(self) -> None:
        self.link.pending.pop(self.rid, None)
        if not self.done and self.link.usable:
            self.done = True
            self.link.send(self.rid, frames.CANCEL, None)


class HostedBackend:
    """The gateway's `Backend` protocol for one local endpoint, served by the engine host."""

    def __init__(self, client: EngineClient, endpoint: Endpoint) -> None:
        self.client = client
        self.endpoint = msgspec.structs.replace(endpoint, secrets={})  # local endpoints have none; none leaves

    def _call(self, req: Any, ctx: CallContext) -> frames.Call:
        return frames.Call(endpoint=self.endpoint, request=msgspec.Raw(msgspec.json.encode(req)),
                           timeout=ctx.remaining(), timeout_text=ctx.timeout_text, idle_timeout=ctx.idle_timeout)

    async def _unary(self, op: str, req: Any, ctx: CallContext) -> Any:
        exchange = await self.client.open(op, self._call(req, ctx))
        try:
            _kind, payload = await exchange.next()
        finally:
            exchange.close()  # cancels the call in the host when this request was cancelled
        return frames.decode_result(op, payload)

    async def embed(self, req: EmbedRequest, ctx: CallContext) -> EmbedResult:
        return await self._unary("embed", req, ctx)

    async def sparse_embed(self, req: EmbedRequest, ctx: CallContext) -> SparseEmbedResult:
        return await self._unary("sparse_embed", req, ctx)

    async def rerank(self, req: RerankRequest, ctx: CallContext) -> RerankResult:
        return await self._unary("rerank", req, ctx)

    async def chat(self, req: ChatRequest, ctx: CallContext) -> ChatResult:
        return await self._unary("chat", req, ctx)

    async def stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[list[ChatDelta]]:
        exchange = await self.client.open(frames.STREAM, self._call(req, ctx))
        try:
            while True:
                kind, payload = await exchange.next()
                if kind == frames.END:
                    return
                yield frames.decode_result(frames.STREAM, payload)
        finally:
            exchange.close()  # the client left: the host closes the generation, which frees its slot


class HostedEngines:
    """What a worker knows of the local models, and how it reaches them."""

    def __init__(self, settings: Settings) -> None:
        assert settings.engine_socket
        self.catalogue = EngineManager(settings)  # never started: answers what endpoints may name, loads nothing
        self.client = EngineClient(settings.engine_socket)
        self._snapshot: dict[str, Any] = {"status": [], "loading": []}
        self._reachable = asyncio.Event()
        self._follow: asyncio.Task | None = None
        self._notes: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ the catalogue

    @property
    def models(self) -> list[LocalModel]:
        return self.catalogue.models

    def resolve(self, model_id: str) -> LocalModel | None:
        return self.catalogue.resolve(model_id)

    def check(self, spec: Service, task: TaskType, cfg: Any) -> None:
        self.catalogue.check(spec, task, cfg)

    def preconfigured(self) -> list[Endpoint]:
        return self.catalogue.preconfigured()

    # ------------------------------------------------------------------ the host

    async def start(self) -> None:
        self._follow = asyncio.create_task(self._watch(), name="engine-host-status")
        try:  # the supervisor started the host first: its first status comes at once
            await asyncio.wait_for(self._reachable.wait(), _CONNECT_TIMEOUT_S)
        except TimeoutError:
            log.warning("the local engine host at %s has not answered yet; local models get 503 until it does",
                        self.client.path)

    async def _watch(self) -> None:
        pause = 0.1
        while True:
            try:
                exchange = await self.client.open(frames.WATCH, None)
                try:
                    while True:
                        _kind, payload = await exchange.next()
                        self._snapshot = msgspec.json.decode(payload)
                        self._reachable.set()
                        pause = 0.1
                finally:
                    exchange.close()
            except ServiceUnavailableError as exc:
                if self._reachable.is_set():
                    log.warning("lost the local engine host at %s (%s); connecting again", self.client.path,
                                exc.reason)
                self._reachable.clear()
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 2)

    async def close(self) -> None:
        for task in (self._follow, *self._notes):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._follow, *self._notes) if t is not None), return_exceptions=True)
        await self.client.close()

    def backend(self, endpoint: Endpoint) -> HostedBackend:
        return HostedBackend(self.client, endpoint)

    def forget(self, inference_id: str, endpoint: Endpoint | None = None) -> None:
        """Registry listener: the host learns of the change (every worker tells it; telling twice is harmless)."""
        if endpoint is not None:
            endpoint = msgspec.structs.replace(endpoint, secrets={})
        task = asyncio.get_running_loop().create_task(
            self._tell(frames.FORGET, frames.Forget(inference_id=inference_id, endpoint=endpoint)))
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    async def _tell(self, kind: str, payload: Any) -> None:
        try:
            await self.client.notify(kind, payload)
        except ServiceUnavailableError:
            pass  # a host that restarts starts with no endpoint users; calls bring them back

    def status(self) -> list[dict[str, Any]]:
        return self._snapshot["status"]

    def loading(self) -> list[str]:
        """The models still loading; while the host is away, every model it had (it loads them again)."""
        if self._reachable.is_set():
            return self._snapshot["loading"]
        had = [m["model_id"] for m in self._snapshot["status"] if m.get("state") in ("loading", "ready")]
        return sorted(had or (m.model_id for m in self.models))

    @property
    def host_pid(self) -> int | None:
        return self._snapshot.get("pid")

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the host is reachable and no model is loading (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while not self._reachable.is_set() or self._snapshot["loading"]:
            if time.monotonic() > deadline:
                raise TimeoutError("local models still loading")
            await asyncio.sleep(0.05)
