"""A test inference when an endpoint is created, as Elasticsearch runs one (`ModelValidatorBuilder`).

ES sends `["how big"]` (`SimpleServiceIntegrationValidator`; a rerank adds the query `test query`) to
the provider before it stores a new endpoint, within the PUT's `timeout`. A failure fails the PUT with
`Could not complete inference endpoint creation as validation call to service threw an exception.` and
the provider's error as its cause. For text embeddings the answer also tells the vector size
(`TextEmbeddingModelValidator`): dimensions given by the user must match it, otherwise it fills
`dimensions`, and `similarity` gets the service's default (`dot_product` unless the catalogue says
otherwise). Local models are checked against the installed weights instead, and an endpoint the region
policy denies is not probed, since that would send data where the policy forbids.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from . import appkeys
from .contract import CallContext
from .endpoint import Endpoint
from .errors import GatewayError, StatusError, redact
from .pipeline import enforce_region_policy
from .types import ChatMessage, ChatRequest, EmbedRequest, RerankRequest, TaskType

TEST_INPUT = ["how big"]
TEST_QUERY = "test query"
FAILED = "Could not complete inference endpoint creation as validation call to service threw an exception."


async def _call(request: web.Request, ep: Endpoint, timeout_s: float, timeout_text: str) -> Any:
    backend = request.app[appkeys.BACKENDS].get(ep)
    ctx = CallContext(inference_id=ep.inference_id, deadline=time.monotonic() + timeout_s, timeout_text=timeout_text)
    task = ep.task_type
    if task in (TaskType.TEXT_EMBEDDING, TaskType.EMBEDDING):
        return await backend.embed(EmbedRequest(inputs=list(TEST_INPUT)), ctx)
    if task == TaskType.SPARSE_EMBEDDING:
        return await backend.sparse_embed(EmbedRequest(inputs=list(TEST_INPUT)), ctx)
    if task == TaskType.RERANK:
        return await backend.rerank(RerankRequest(query=TEST_QUERY, documents=list(TEST_INPUT)), ctx)
    return await backend.chat(ChatRequest(messages=[ChatMessage(role="user", content=TEST_INPUT[0])]), ctx)


def _with_embedding_details(ep: Endpoint, vectors: list[Any], element_type: str, dims_by_user: bool) -> Endpoint:
    if not vectors:
        raise StatusError("Could not determine embedding size")
    first = vectors[0]
    size = len(first) if isinstance(first, list) else len(msgspec.json.decode(first))
    if element_type == "bit":
        size *= 8  # packed bits: ES TextEmbeddingBitResults.getFirstEmbeddingSize
    ss = dict(ep.service_settings)
    if dims_by_user and ss.get("dimensions") is not None and ss["dimensions"] != size:
        raise StatusError(f"The retrieved embeddings size [{size}] does not match the size specified in the settings "
                          f"[{ss['dimensions']}]. Please recreate the [{ep.inference_id}] configuration with the "
                          f"correct dimensions")
    spec = ep.spec
    declared = {s.name for s in spec.service_settings if s.applies_to(ep.task_type)}
    if "dimensions" in declared:
        ss["dimensions"] = size
    if "similarity" in declared and ss.get("similarity") is None:
        ss["similarity"] = spec.defaults_for(ep.task_type).get("similarity", "dot_product")
    order = {s.name: i for i, s in enumerate(spec.service_settings)}
    ss = {k: ss[k] for k in sorted(ss, key=lambda k: order.get(k, len(order)))}
    return msgspec.structs.replace(ep, service_settings=ss)


async def probe(request: web.Request, ep: Endpoint, *, dims_by_user: bool, timeout_s: float,
                timeout_text: str) -> Endpoint:
    """Run the test inference for a new endpoint; the endpoint to store (with learnt details) or an error."""
    if ep.spec.local or ep.spec.composite:  # a router checks its targets itself (routing.check)
        return ep
    try:
        enforce_region_policy(request, ep)
    except GatewayError:
        return ep
    try:
        result = await _call(request, ep, timeout_s, timeout_text)
    except GatewayError as exc:
        err = StatusError(FAILED, status=400)
        err.caused_by = redact(exc, ep.secrets)  # type: ignore[attr-defined]
        raise err from None
    finally:
        request.app[appkeys.BACKENDS].forget(ep.inference_id)  # the real endpoint gets a fresh backend
    if ep.task_type in (TaskType.TEXT_EMBEDDING, TaskType.EMBEDDING):
        return _with_embedding_details(ep, result.vectors, result.element_type, dims_by_user)
    return ep
