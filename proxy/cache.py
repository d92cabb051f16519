"""An exact cache of text_embedding results in Redis (`embedding_cache_ttl` seconds; off by default).

One key per input: the endpoint id, a hash of the endpoint's settings (so an update never serves
vectors of the old model), and a hash of what else shapes the vector (input_type, dimensions, the
request's task_settings) and of the input text. A request's inputs are looked up with one MGET;
only the misses go upstream, in one call, and are written back with one pipeline. The value is the
element type and the vector's JSON bytes, spliced into the answer unparsed. Credentials never
reach a key. When Redis fails, the request goes straight to the backend.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from .contract import Backend, CallContext
from .endpoint import Endpoint
from .metrics import Metrics
from .shared_limits import KEY_PREFIX, RedisLink
from .types import EmbedRequest, EmbedResult

_sorted = msgspec.json.Encoder(order="sorted")


class CachingBackend:
    """Wraps an endpoint's backend; `embed` consults the cache, everything else passes through."""

    def __init__(self, inner: Backend, endpoint: Endpoint, link: RedisLink, metrics: Metrics) -> None:
        self.inner = inner
        self.link = link
        self.ttl = link.cache_ttl
        settings = _sorted.encode([endpoint.service, endpoint.task_type.value, endpoint.service_settings,
                                   endpoint.task_settings])
        digest = hashlib.sha256(settings).hexdigest()[:32]
        self.prefix = f"{KEY_PREFIX}emb:{endpoint.inference_id}:{digest}:"
        self.hits = metrics.cache_hits.labels(endpoint.inference_id)
        self.misses = metrics.cache_misses.labels(endpoint.inference_id)

    def __getattr__(self, name: str) -> Any:  # limiter, endpoint, chat, rerank, stream, ...
        return getattr(self.inner, name)

    def keys(self, req: EmbedRequest) -> list[str]:
        variant = hashlib.sha256(_sorted.encode([req.input_type.value if req.input_type is not None else None,
                                                 req.dimensions, req.task_settings]))
        out = []
        for text in req.inputs:
            h = variant.copy()
            h.update(b"\0")
            h.update(text.encode())
            out.append(self.prefix + h.hexdigest())
        return out

    async def embed(self, req: EmbedRequest, ctx: CallContext) -> EmbedResult:
        if not self.link.available or not req.inputs:
            return await self.inner.embed(req, ctx)
        keys = self.keys(req)
        try:
            cached = await self.link.client.mget(keys)
        except self.link.errors as exc:
            self.link.failed("cache_get", exc)
            return await self.inner.embed(req, ctx)
        vectors: list[Any] = [None] * len(keys)
        element_type = None
        missing: dict[str, list[int]] = {}  # key -> positions, so repeated inputs go upstream once
        for i, value in enumerate(cached):
            if value is None:
                missing.setdefault(keys[i], []).append(i)
            else:
                kind, _, vector = bytes(value).partition(b"\n")
                element_type = kind.decode()
                vectors[i] = msgspec.Raw(vector)
        hits = len(keys) - sum(len(p) for p in missing.values())
        if hits:
            self.hits.inc(hits)
        if not missing:
            return EmbedResult(vectors=vectors, element_type=element_type or "float")
        self.misses.inc(len(missing))
        first = [positions[0] for positions in missing.values()]
        result = await self.inner.embed(msgspec.structs.replace(req, inputs=[req.inputs[i] for i in first]), ctx)
        writes = []
        kind = result.element_type.encode()
        for (key, positions), vector in zip(missing.items(), result.vectors):
            raw = bytes(vector) if isinstance(vector, msgspec.Raw) else msgspec.json.encode(vector)
            for i in positions:
                vectors[i] = msgspec.Raw(raw)
            writes.append((key, kind + b"\n" + raw))
        try:
            pipe = self.link.client.pipeline(transaction=False)
            for key, value in writes:
                pipe.set(key, value, ex=self.ttl)
            await pipe.execute()
        except self.link.errors as exc:
            self.link.failed("cache_set", exc)
        return EmbedResult(vectors=vectors, element_type=result.element_type, usage=result.usage)
