"""Fixtures of the contract suite: the capture server, the gateway with every service routed to it,
and (with CONTRACT_REPORT=path) a JSON record of what each case covered, for `tests/contract/table.py`."""

from __future__ import annotations

import json
import os

import aiohttp
import pytest

from adapters import ADAPTERS
from tests.conftest import make_settings

from .capture import CaptureServer

RESULTS: list[dict] = []


@pytest.fixture
async def capture():
    server = await CaptureServer().start()
    yield server
    await server.stop()


@pytest.fixture(autouse=True)
def _hub_online(monkeypatch):
    """The local-model tests set HF_HUB_OFFLINE for the whole process (no weight downloads); huggingface_hub then
    refuses every request, loopback ones too. The contract cases call a capture server, never the Hub."""
    try:
        import huggingface_hub.constants
    except ImportError:
        return
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def gateway_settings(tmp_path, capture):
    return make_settings(tmp_path, upstreams={service: capture.url for service in ADAPTERS})


@pytest.fixture
async def http(gateway):
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/"))) as session:
        yield session


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("CONTRACT_REPORT")
    if path and RESULTS:
        with open(path, "w") as f:
            json.dump(RESULTS, f, indent=1)
