"""An adapter's request builder for the task of its endpoint, for tests that run one check over several
tasks (the gateway calls each task's own methods: proxy/backends.py)."""

from __future__ import annotations

from typing import Any

from adapters.base import Adapter, UpstreamRequest
from proxy.types import TaskType as T

_BUILDERS = {T.TEXT_EMBEDDING: "embed_request", T.EMBEDDING: "embed_request", T.SPARSE_EMBEDDING: "sparse_request",
             T.RERANK: "rerank_request", T.COMPLETION: "chat_request", T.CHAT_COMPLETION: "chat_request"}


def request_for(adapter: Adapter, req: Any) -> UpstreamRequest:
    up: UpstreamRequest = getattr(adapter, _BUILDERS[adapter.task])(req)
    return up
