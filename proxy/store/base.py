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


class StoredKey(msgspec.Struct, frozen=True, kw_only=True):
    """One API key: its SHA-256 digest (never the key), times in epoch seconds, and `doc`, the JSON of
    its role descriptors, the privileges it is limited by, and its metadata (proxy/keys.py)."""

    id: str
    name: str
    owner: str
    digest: bytes
    created_at: float
    expiration: float | None = None
    invalidated_at: float | None = None
    doc: bytes = b"{}"


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    """Counts of one minute (`bucket`, epoch seconds) for one key on one endpoint; stores add them up."""

    bucket: int
    key_id: str
    endpoint: str
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    """One stored Responses API response: `body` is sealed (proxy/responses_store.py), `owner` the id of the
    API key that made it ("" while access control is off), `created_at` epoch seconds."""

    id: str
    owner: str
    body: bytes
    created_at: float


def is_document_id(key: str) -> bool:
    """Ids on the change feed that name a document rather than an endpoint."""
    return key.startswith("_")


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

    # API keys: kept for good (an invalidated key stays, as in Elasticsearch), shared by every replica
    async def load_keys(self) -> list[StoredKey]: ...
    async def insert_key(self, key: StoredKey) -> bool: ...
    async def invalidate_keys(self, ids: list[str], at: float) -> list[str]:
        """Mark these keys invalidated; returns those that were active until now."""
    def watch_keys(self, callback: Callable[[], None]) -> None:
        """`callback()` when another process changed a key (delivered once `watch` runs)."""

    # usage counters, added to (never overwritten) by every replica
    async def add_usage(self, rows: list[UsageRow]) -> None: ...
    async def query_usage(self, key_id: str | None, endpoint: str | None, start: int, end: int) -> list[UsageRow]:
        """Rows with start <= bucket < end, optionally of one key and one endpoint."""

    # Responses API responses (`store: true`), each visible only to the key that made it
    async def put_response(self, row: StoredResponse) -> None: ...
    async def get_response(self, response_id: str, owner: str) -> StoredResponse | None: ...
    async def delete_response(self, response_id: str, owner: str) -> bool:
        """Remove a response of this owner; False when there was none."""
    async def delete_responses_before(self, cutoff: float) -> int:
        """Remove every response created before `cutoff` (epoch seconds); how many there were."""

    # Gateway-wide documents next to the endpoints (the region policy: ES keeps it in the `.inference`
    # index as document `region_policy_elastic`, `RegionPolicyDoc.DOCUMENT_ID`). Their ids start with
    # `_`, which no endpoint id can, so one change feed carries both.
    async def load_documents(self) -> dict[str, bytes]: ...
    async def get_document(self, doc_id: str) -> bytes | None: ...
    async def put_document(self, doc_id: str, body: bytes) -> None: ...
    async def delete_document(self, doc_id: str) -> bool:
        """Remove a document; False when it did not exist."""

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
