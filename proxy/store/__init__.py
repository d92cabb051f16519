"""Persistence of inference endpoints behind one small interface."""

from __future__ import annotations

from typing import Protocol

import msgspec


class StoredEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One row: the public configuration as JSON and the secrets sealed by `SecretBox`."""

    inference_id: str
    task_type: str
    service: str
    config: bytes
    secrets: bytes


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def load_all(self) -> list[StoredEndpoint]: ...
    async def insert(self, record: StoredEndpoint) -> bool:
        """Store a new endpoint; False when the id exists already."""
    async def replace(self, record: StoredEndpoint) -> bool:
        """Overwrite an existing endpoint; False when it is gone."""
    async def delete(self, inference_id: str) -> bool:
        """Remove an endpoint; False when it did not exist."""
