"""The Contextual AI rerank adapter's pure functions on recorded request and response bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters import adapter_class
from adapters.contextualai import RERANK_URL, ContextualAIAdapter
from proxy.errors import UpstreamError
from proxy.types import RerankRequest, TaskType


@dataclass
class Endpoint:
    task_type: TaskType
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=lambda: {"api_key": "ctxl-key"})
    inference_id: str = "ep"
    service: str = "contextualai"


def adapter(task_settings=None) -> ContextualAIAdapter:
    return ContextualAIAdapter(Endpoint(TaskType.RERANK, {"model_id": "ctxl-rerank-v2-instruct-multilingual"},
                                        task_settings or {}))


# recorded from https://docs.contextual.ai/api-reference/rerank/rerank and ES ContextualAiRerankResponseEntity
RESPONSE = b'{"results":[{"index":1,"relevance_score":0.95},{"index":0,"relevance_score":0.85}]}'


def test_registered_under_its_service_name():
    assert adapter_class("contextualai") is ContextualAIAdapter


def test_request_shape_and_auth():
    up = adapter().rerank_request(RerankRequest(query="q", documents=["a", "b"], return_documents=True))
    assert up.url == RERANK_URL and up.headers["Authorization"] == "Bearer ctxl-key"
    # return_documents is not a Contextual AI field; the gateway attaches texts itself
    assert json.loads(up.body) == {"query": "q", "documents": ["a", "b"],
                                   "model": "ctxl-rerank-v2-instruct-multilingual"}


def test_top_k_and_instruction_from_task_settings_with_request_precedence():
    ad = adapter({"top_k": 3, "instruction": "Prefer recent documents"})
    sent = json.loads(ad.rerank_request(RerankRequest(query="q", documents=["a"])).body)
    assert sent["top_n"] == 3 and sent["instruction"] == "Prefer recent documents"
    sent = json.loads(ad.rerank_request(RerankRequest(query="q", documents=["a"], top_n=1,
                                                     task_settings={"instruction": "Prefer PDFs"})).body)
    assert sent["top_n"] == 1 and sent["instruction"] == "Prefer PDFs"
    assert list(sent) == ["query", "documents", "model", "top_n", "instruction"]  # ES field order


def test_response_and_errors():
    result = adapter().parse_rerank(RerankRequest(query="q", documents=["a", "b"]), RESPONSE)
    assert [(d.index, d.relevance_score, d.text) for d in result.ranked] == [(1, 0.95, None), (0, 0.85, None)]
    assert adapter().parse_error(401, {}, b'{"detail":"Invalid token"}').message == "Invalid token"
    with pytest.raises(UpstreamError) as exc:
        adapter().parse_rerank(RerankRequest(query="q", documents=["a"]), b'{"results": 3}')
    assert exc.value.status == 502
