"""Shared fixtures: a live gateway on a loopback port, and real clients pointed at it."""

from __future__ import annotations

import pytest
from elasticsearch import AsyncElasticsearch

from proxy.server import create_app
from proxy.settings import Settings
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import LiveServer


def make_settings(tmp_path, **overrides) -> Settings:
    # the test inference at PUT is exercised by tests/integration/test_put_validation.py; elsewhere endpoints
    # are created without reaching a provider, as tests put many with made-up keys
    overrides.setdefault("validate_endpoints", False)
    return Settings(data_dir=str(tmp_path / "data"), local_models=False, **overrides)


@pytest.fixture
async def serve_fake():
    """Serves simulated upstreams (objects with `app()`) on loopback, sets their `url`, stops them after the test."""
    servers: list[LiveServer] = []

    async def serve(fake):
        server = await LiveServer(fake.app()).start()
        servers.append(server)
        fake.url = server.url
        return fake

    yield serve
    for server in servers:
        await server.stop()


@pytest.fixture
async def upstream(serve_fake) -> FakeOpenAI:
    """The simulated OpenAI-format upstream most tests call (`upstream.url`, `upstream.api_key`)."""
    return await serve_fake(FakeOpenAI())


@pytest.fixture
def gateway_settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def gateway(aiohttp_server, gateway_settings):
    """The real gateway application served on 127.0.0.1 by aiohttp's test server."""
    return await aiohttp_server(create_app(gateway_settings))


@pytest.fixture
async def es(gateway):
    client = AsyncElasticsearch(str(gateway.make_url("/")).rstrip("/"), request_timeout=30, max_retries=0)
    yield client
    await client.close()
