"""Persistence of inference endpoints behind one small interface."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import (ChangeCallback, StartupError, Store, StoredEndpoint, StoredKey, StoredResponse, UsageRow,
                   is_document_id, redact)

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["ChangeCallback", "StartupError", "Store", "StoredEndpoint", "StoredKey", "StoredResponse", "UsageRow",
           "is_document_id", "is_shared", "make_store", "redact", "sqlite_path"]


def is_shared(settings: "Settings") -> bool:
    return bool(settings.store) and settings.store.split(":", 1)[0] in ("postgres", "postgresql")


def sqlite_path(settings: "Settings") -> Path | None:
    """The SQLite file that holds the endpoints, or None when they live in PostgreSQL."""
    url = settings.store
    if not url:
        return settings.data_path / "endpoints.db"
    if url.startswith("sqlite:"):
        return Path(url[len("sqlite://"):] if url.startswith("sqlite://") else url[len("sqlite:"):])
    return None


def make_store(settings: "Settings") -> Store:
    """`settings.store`: a postgresql:// URL, a sqlite:///path URL, or unset for the SQLite file in the data dir."""
    url = settings.store
    path = sqlite_path(settings)
    if path is not None:
        from .sqlite import SqliteStore

        return SqliteStore(path)
    scheme = url.split(":", 1)[0]
    if scheme in ("postgres", "postgresql"):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise StartupError(f"unsupported store [{redact(url)}]: use postgresql://user@host/db or sqlite:///path")
