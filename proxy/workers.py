"""`--workers N`: N processes serving one port, each with its own event loop, registry and pools.

The supervisor (the process started by `inference-proxy serve --workers N`) spawns N workers that
bind the same host and port with SO_REUSEPORT; the kernel spreads incoming connections over them.
They share the endpoint store (the SQLite file, whose change poll brings each worker the others'
writes within ~250 ms, or PostgreSQL with LISTEN/NOTIFY) and, with `--redis`, rate limits and the
embedding cache; without Redis each worker enforces the rate limits on its own. A worker that dies
is restarted; one that fails while starting stops them all with its exit code. SIGTERM or SIGINT to
the supervisor stops the workers gracefully.

With local models, the supervisor first starts one engine host (`engines/host.py`) that loads each
model once and serves it to every worker over a Unix socket in the data directory; the workers call
it through `engines/remote.py`. A host that dies is restarted (the workers connect again); one that
cannot start stops the supervisor before any worker starts. The host stops after the workers.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from typing import Any


def serve(settings, reuse_port: bool | None = None, ready: Any = None) -> int:
    """Run the gateway in this process until SIGTERM/SIGINT; `ready.set()` once it listens."""
    from .store import StartupError

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    from .connections import run
    from .server import create_app
    try:
        run(create_app(settings), settings, reuse_port, lambda msg: _listening(msg, ready))
    except StartupError as exc:
        logging.getLogger("proxy").error("cannot start: %s", exc)
        print(f"inference-proxy: cannot start: {exc}", file=sys.stderr)
        # aiohttp does not unwind the contexts that started before the failure: keep their
        # "unclosed session" warnings at exit from burying the reason
        logging.getLogger("asyncio").disabled = True
        return 2
    return 0


def _listening(message: str, ready: Any) -> None:
    logging.getLogger("proxy").info(message.strip())
    if ready is not None:
        ready.set()


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):  # go when the supervisor goes, even on kill -9
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def worker(settings, index: int, ready: Any) -> None:
    """One of `--workers N` processes: its own event loop, registry and pools, on the shared port."""
    _die_with_parent()
    logging.basicConfig(level=settings.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s w{index} %(name)s %(message)s")
    sys.exit(serve(settings, reuse_port=True, ready=ready))


def engine_host(settings, ready: Any) -> None:
    """The process that loads the local models once and runs them for every worker (engines/host.py)."""
    import asyncio

    _die_with_parent()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s host %(name)s %(message)s")
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    from engines.host import run

    code = asyncio.new_event_loop().run_until_complete(run(settings, ready))
    # not asyncio.run, nor a plain exit: both wait for a model load still running in a thread (torch's
    # import, a vLLM start), which would keep the host up long after the supervisor asked it to go
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _engine_socket(settings) -> tuple[str, str | None]:
    """Where the engine host listens: `engines.sock` in the (owner-only) data directory, or in a private
    temporary folder when that path is too long for a Unix socket (104 bytes on macOS, 108 on Linux, NUL
    included). The folder to remove at the end comes second."""
    path = settings.data_path / "engines.sock"
    if len(os.fsencode(path)) < 104:
        return str(path), None
    folder = tempfile.mkdtemp(prefix="inference-proxy-engines-")
    return os.path.join(folder, "engines.sock"), folder


def prepare_sqlite(settings) -> None:
    """Create the SQLite store, switch it to WAL and create or migrate its tables before the workers
    start: N workers doing it at once on a fresh data directory raced, and one died with "database is
    locked" (SQLite does not wait for a lock when switching a file to WAL)."""
    from .store import sqlite_path
    from .store.sqlite import prepare

    path = sqlite_path(settings)
    if path is not None:  # PostgreSQL migrates under an advisory lock instead
        prepare(path)


_RESTART_PAUSE_S = 1.0  # a worker that dies sooner than this after its start is restarted after a pause


def supervise(settings) -> int:
    """Pre-spawn N workers bound to one port with SO_REUSEPORT (the kernel spreads connections);
    restart a worker that dies, stop all on SIGTERM/SIGINT."""
    import multiprocessing
    import socket
    from multiprocessing.connection import wait

    import msgspec
    from prometheus_client.multiprocess import mark_process_dead

    from .secrets import SecretBox
    from .store.files import private_dir

    log = logging.getLogger("proxy")
    if not hasattr(socket, "SO_REUSEPORT"):
        print("inference-proxy: --workers needs SO_REUSEPORT (Linux, macOS, BSD)", file=sys.stderr)
        return 2
    if settings.port == 0:
        print("inference-proxy: --workers needs a fixed --port", file=sys.stderr)
        return 2
    # the key file, if any, and the SQLite files are created here once, not raced by N workers
    private_dir(settings.data_path)
    SecretBox.load(settings.secret_key, settings.data_path)
    try:
        prepare_sqlite(settings)
    except (OSError, sqlite3.Error) as exc:
        print(f"inference-proxy: cannot start: the SQLite store cannot be prepared: {exc}", file=sys.stderr)
        return 2
    # one /metrics for all workers: prometheus_client's multiprocess mode, chosen when the (spawned)
    # workers import it, so the variable is set before they start
    metrics_dir = tempfile.mkdtemp(prefix="inference-proxy-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    settings = msgspec.structs.replace(settings, metrics_dir=metrics_dir)
    socket_folder = None
    if settings.local_models:  # one engine host runs the local models for all workers
        engine_socket, socket_folder = _engine_socket(settings)
        settings = msgspec.structs.replace(settings, engine_socket=engine_socket)
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(index: int):
        ready = ctx.Event()
        proc = ctx.Process(target=worker, args=(settings, index, ready), name=f"inference-proxy-w{index}",
                           daemon=False)
        proc.start()
        return proc, time.monotonic(), ready

    def start_host():
        ready = ctx.Event()
        proc = ctx.Process(target=engine_host, args=(settings, ready), name="inference-proxy-engines", daemon=False)
        proc.start()
        return proc, time.monotonic(), ready

    def stop_all(procs) -> None:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: aiohttp (and the engine host) shut down gracefully
        deadline = time.monotonic() + 30
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()

    def cleanup() -> None:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if socket_folder is not None:
            shutil.rmtree(socket_folder, ignore_errors=True)

    host = None
    if settings.engine_socket:  # started, and listening, before the workers connect to it
        host = start_host()
        while not host[2].wait(0.1):
            if stopping or not host[0].is_alive():
                host[0].join(0.5)
                code = host[0].exitcode
                if not stopping:
                    log.error("the engine host exited with %s before it listened; stopping", code)
                stop_all([host[0]])
                cleanup()
                return code if code and code > 0 else (0 if stopping else 1)
    workers = {i: start(i) for i in range(settings.workers)}
    log.info("supervisor %d: %d workers on %s:%d%s", os.getpid(), settings.workers, settings.host, settings.port,
             f", local models in engine host {host[0].pid}" if host else "")
    code = 0
    while not stopping:
        sentinels = [p.sentinel for p, _, _ in workers.values()] + ([host[0].sentinel] if host else [])
        if not wait(sentinels, timeout=0.5):
            continue
        if host is not None and not host[0].is_alive() and not stopping:
            proc, started, ready = host
            proc.join()
            if not ready.is_set():
                log.error("the engine host exited with %s before it listened; stopping", proc.exitcode)
                code = proc.exitcode if proc.exitcode and proc.exitcode > 0 else 1
                break
            # the workers' calls in flight got 503; they connect again to the new host, which loads the models
            log.warning("the engine host (pid %s) exited with %s; restarting it", proc.pid, proc.exitcode)
            if time.monotonic() - started < _RESTART_PAUSE_S:
                time.sleep(_RESTART_PAUSE_S)
            host = start_host()
        for index, (proc, started, ready) in list(workers.items()):
            if proc.is_alive() or stopping:
                continue
            proc.join()
            if not ready.is_set():
                log.error("worker %d exited with %s before it listened; stopping", index, proc.exitcode)
                code = proc.exitcode if proc.exitcode and proc.exitcode > 0 else 1
                stopping = True
                break
            mark_process_dead(proc.pid, metrics_dir)  # its gauges go; its counters still count
            log.warning("worker %d (pid %s) exited with %s; restarting it", index, proc.pid, proc.exitcode)
            if time.monotonic() - started < _RESTART_PAUSE_S:
                time.sleep(_RESTART_PAUSE_S)
            workers[index] = start(index)
    stop_all([proc for proc, _, _ in workers.values()])
    if host is not None:  # after the workers, whose requests in flight it still serves
        stop_all([host[0]])
    cleanup()
    return code
