"""The engine host: with `--workers N`, the one process that loads the local models and runs them for
every worker, over a Unix socket in the data directory (`engines/frames.py` says what goes over it).

Each model is loaded once per machine, not once per worker (with vLLM on one GPU, N copies could not
even fit), and the batchers see every worker's requests, so concurrent requests still share forward
passes. The host runs the same `LocalBackend` calls a single process runs in process: the 503 while
a model loads, the 429 of a full queue, the deadline and the validation errors are raised here and
reach the worker with their class, status and headers. A stream's deltas are sent as the engine
produces them; a `cancel` (the worker's client left) or a lost connection cancels the call, which
closes the generation and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import msgspec

from proxy.contract import CallContext
from proxy.errors import GatewayError
from proxy.settings import Settings

from . import frames
from .manager import EngineManager

log = logging.getLogger("engines.host")

STATUS_INTERVAL_S = 0.25  # how often a watcher's snapshot is compared with the last one it got


class _WorkerGone(Exception):
    pass


class HostInUse(OSError):
    """Another engine host answers on the socket (a second gateway on the same data directory)."""


class EngineHost:
    def __init__(self, manager: EngineManager, path: str) -> None:
        self.manager = manager
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task, asyncio.StreamWriter] = {}

    async def start(self) -> None:
        if os.path.exists(self.path):
            try:  # a socket file left by a host that died, or one still answering?
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    probe.connect(self.path)
            except OSError:
                os.unlink(self.path)
            else:
                raise HostInUse(f"another engine host is serving {self.path}")
        self._server = await asyncio.start_unix_server(self._connection, path=self.path)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections.values()):
            writer.close()  # its reader sees the end and cancels the connection's calls (a cancelled
            # connection task would make asyncio log an error: 3.11's start_unix_server asks it for its exception)
        await asyncio.gather(*self._connections, return_exceptions=True)
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One worker's connection: its requests run side by side, each in its own task."""
        me = asyncio.current_task()
        assert me is not None
        self._connections[me] = writer
        calls: dict[int, asyncio.Task] = {}

        async def send(rid: int, kind: str, payload: Any) -> None:
            try:
                writer.write(frames.encode(rid, kind, payload))
                await writer.drain()
            except ConnectionError as exc:
                raise _WorkerGone from exc

        try:
            while True:
                rid, kind, payload = await frames.read(reader)
                if kind == frames.CANCEL:
                    task = calls.get(rid)
                    if task is not None:
                        task.cancel()
                elif kind == frames.FORGET:
                    forget = msgspec.json.decode(payload, type=frames.Forget)
                    self.manager.forget(forget.inference_id, forget.endpoint)
                else:
                    task = asyncio.create_task(self._serve(rid, kind, payload, send), name=f"engine-call-{rid}")
                    calls[rid] = task
                    task.add_done_callback(lambda _t, r=rid: calls.pop(r, None))
        except (asyncio.IncompleteReadError, ConnectionError, msgspec.DecodeError):
            pass  # the worker has gone (or sent garbage): its calls stop below
        finally:
            for task in list(calls.values()):
                task.cancel()
            await asyncio.gather(*calls.values(), return_exceptions=True)
            writer.close()
            self._connections.pop(me, None)

    async def _serve(self, rid: int, op: str, payload: msgspec.Raw, send: Any) -> None:
        try:
            try:
                if op == frames.WATCH:
                    await self._watch(rid, send)
                    return
                call = msgspec.json.decode(payload, type=frames.Call)
                req = frames.decode_request(op, call.request)
                backend = self.manager.backend(call.endpoint)
                ctx = CallContext(inference_id=call.endpoint.inference_id, timeout_text=call.timeout_text,
                                  deadline=time.monotonic() + call.timeout,
                                  idle_timeout=call.idle_timeout)
                if op == frames.STREAM:
                    async with contextlib.aclosing(backend.stream(req, ctx)) as deltas:
                        async for delta in deltas:
                            await send(rid, frames.DELTA, [delta])
                    await send(rid, frames.END, None)
                else:
                    await send(rid, frames.OK, await getattr(backend, op)(req, ctx))
            except GatewayError as exc:
                await send(rid, frames.ERROR, frames.failure(exc))
            except _WorkerGone:
                raise
            except Exception:
                log.exception("local engine call [%s] failed", op)
                await send(rid, frames.ERROR, frames.failure(
                    GatewayError("An internal error occurred in the local engine host")))
        except _WorkerGone:
            pass  # the worker went while the answer was being written

    async def _watch(self, rid: int, send: Any) -> None:
        """The models' status and those still loading, sent whenever they change."""
        last = b""
        while True:
            snapshot = msgspec.json.encode({"pid": os.getpid(), "status": self.manager.status(),
                                            "loading": self.manager.loading()})
            if snapshot != last:
                await send(rid, frames.STATUS, msgspec.Raw(snapshot))
                last = snapshot
            await asyncio.sleep(STATUS_INTERVAL_S)


async def run(settings: Settings, ready: Any) -> int:
    """Serve the local models on `settings.engine_socket` until SIGTERM; `ready.set()` once it listens.

    SIGINT is left to the supervisor (a Ctrl-C reaches the whole process group): it stops the workers
    first, which finish their requests, and the host after them."""
    assert settings.engine_socket
    manager = EngineManager(settings)
    host = EngineHost(manager, settings.engine_socket)
    try:
        await host.start()
    except OSError as exc:
        log.error("cannot start the engine host: %s", exc)
        print(f"inference-proxy: cannot start the engine host: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    await manager.start()  # returns at once; models load in the background
    log.info("engine host %d: local models served to the workers on %s", os.getpid(), settings.engine_socket)
    ready.set()
    try:
        await stop.wait()
    finally:
        await host.close()
        await manager.close()
    return 0
