"""What every store shares: the stored row, the interface, the startup error, URL redaction."""

from __future__ import annotations

from typing import Callable, Protocol
from urllib.parse import urlsplit, urlunsplit

import msgspec


class StoredEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One row: the public configuration as JSON and the secrets sealed by `SecretBox`."""

    inference_id: str
    task_type: str
    service: str
    config: bytes
    secrets: bytes


class StartupError(RuntimeError):
    """The gateway cannot start with this store (unreachable, newer schema, a secret key that does not fit)."""


# Called with the id of an endpoint that another process changed, or None when the changes cannot be
# told apart (the caller then compares everything with `load_all`). Runs on the event loop; must not block.
ChangeCallback = Callable[[str | None], None]


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def load_all(self) -> list[StoredEndpoint]: ...
    async def get(self, inference_id: str) -> StoredEndpoint | None: ...
    async def insert(self, record: StoredEndpoint) -> bool:
        """Store a new endpoint; False when the id exists already."""
    async def replace(self, record: StoredEndpoint) -> bool:
        """Overwrite an existing endpoint; False when it is gone."""
    async def delete(self, inference_id: str) -> bool:
        """Remove an endpoint; False when it did not exist."""

    # Optional change feed: stores that other processes can write to call `callback` for changes made
    # elsewhere (never, or harmlessly, for this process's own writes) until `close`.
    # async def watch(self, callback: ChangeCallback) -> None: ...


def redact(url: str) -> str:
    """A store or Redis URL fit for a log line: the password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit((parts.scheme, f"{user}:***@{netloc[2]}", parts.path, parts.query, parts.fragment))
