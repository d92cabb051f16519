"""Fixtures for the integration suite: raw HTTP next to the official client (see tests/conftest.py)."""

from __future__ import annotations

import aiohttp
import pytest


@pytest.fixture
async def http(gateway):
    """A plain aiohttp session, for what the elasticsearch client cannot express."""
    async with aiohttp.ClientSession() as session:
        yield session
