"""The `router` service's backend: each request goes to one of the router's targets, the next one
when it fails in a way another target may not (the router's `failover_on` statuses).

Targets are other endpoints, performed through their own backends, so a router adds no provider
code and may target routers. Every attempt runs inside the request's deadline, shortened to the
target's own `timeout` when it has one; a target's backend retries only `retries` times so that the
router can move on. A stream fails over only until its first delta: after that the client has bytes
and an error goes in-band. Each target has a circuit breaker (`breaker.py`); a target whose breaker
is open is skipped. The target that answered is announced in `routing.ANSWERED_BY`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from typing import Any, AsyncIterator, Awaitable, Callable

import msgspec

from .breaker import Admission, CircuitBreakers, SharedCircuitBreakers, State
from .contract import Backend, CallContext
from .endpoint import Endpoint
from .errors import GatewayError, ServiceUnavailableError, StatusError, redact
from .latency import Latencies, SharedLatencies
from .metrics import Metrics
from .routing import ANSWERED_BY, RouterSettings, Target, parse
from .types import ChatDelta, ChatRequest, ChatResult, EmbedRequest, EmbedResult, RerankRequest, RerankResult
from .types import SparseEmbedResult


class Routing:
    """What all routers of a process share: breakers and latencies (in Redis with `--redis`) and
    the requests in flight per target (per process)."""

    def __init__(self, metrics: Metrics, link: Any = None) -> None:
        self.metrics = metrics
        self.breakers: Any = SharedCircuitBreakers(link) if link is not None else CircuitBreakers()
        self.latencies: Any = SharedLatencies(link) if link is not None else Latencies()
        self.in_flight: dict[str, int] = defaultdict(int)


def _status(err: GatewayError) -> int:
    """What the target said: the provider's status for upstream errors (408 for timeouts, 502 for
    connection failures), the gateway's own otherwise (429 from the target's rate limit, 503 ...)."""
    return getattr(err, "upstream_status", 0) or err.status


class _Timeout(StatusError):
    status = 408

    def __init__(self, target: str, text: str) -> None:
        super().__init__(f"Request timed out after [{text}] (inference entity id [{target}])")
        self.upstream_status = 408


class RouterBackend:
    def __init__(self, endpoint: Endpoint, routing: Routing, resolve: Callable[[str], Endpoint | None],
                 backend_for: Callable[[Endpoint], Backend],
                 allowed: Callable[[Endpoint], bool] | None = None) -> None:
        self.endpoint = endpoint
        self.settings: RouterSettings = parse(endpoint.service_settings)
        self.routing = routing
        self.metrics = routing.metrics
        self._resolve = resolve
        self._backend_for = backend_for
        self._allowed = allowed  # the region policy (region.py): targets it denies are passed over
        self._turn = itertools.count()

    # ------------------------------------------------------------------ choosing

    async def _order(self) -> list[Target]:
        """The targets in the order this request tries them: the first is the strategy's choice,
        the others its fallbacks."""
        targets = list(self.settings.targets)
        strategy = self.settings.strategy
        if strategy == "round_robin":
            i = next(self._turn) % len(targets)
            return targets[i:] + targets[:i]
        if strategy == "weighted":
            # weighted sampling without replacement (Efraimidis & Spirakis, 2006)
            return sorted(targets, key=lambda t: random.random() ** (1.0 / t.weight), reverse=True)
        if strategy in ("least_latency", "least_busy"):
            random.shuffle(targets)  # ties are broken at random
            if strategy == "least_busy":
                return sorted(targets, key=lambda t: self.routing.in_flight[t.id])
            latency = await self.routing.latencies.get([t.id for t in targets])
            # a target never measured goes first, so that it gets measured
            return sorted(targets, key=lambda t: (latency[t.id] is not None, latency[t.id] or 0.0))
        return targets

    def _child(self, ctx: CallContext, target: Target) -> CallContext:
        deadline, text = ctx.deadline, ctx.timeout_text
        if target.timeout is not None and time.monotonic() + target.timeout < deadline:
            deadline, text = time.monotonic() + target.timeout, target.timeout_text or text
        return msgspec.structs.replace(ctx, inference_id=target.id, deadline=deadline, timeout_text=text,
                                       max_attempts=1 + self.settings.retries)

    def _usable(self, target: Target, streaming: bool) -> Endpoint | str:
        """The target's endpoint, or why it is passed over (the reason is also a metric label)."""
        ep = self._resolve(target.id)
        if ep is None:
            return "missing"
        if ep.task_type != self.endpoint.task_type:
            return "task_type"
        if streaming and ep.task_type not in ep.spec.stream_tasks():
            return "no_streaming"
        if self._allowed is not None and not self._allowed(ep):
            return "region_policy"
        return ep

    # ------------------------------------------------------------------ outcomes

    async def _succeeded(self, target: Target, admission: Admission, seconds: float) -> None:
        self.metrics.router_chosen.labels(self.endpoint.inference_id, target.id).inc()
        await self.routing.breakers.success(target.id, admission)
        if admission.failures or admission.probe:
            self.metrics.breaker_state.labels(target.id).set(State.CLOSED)
        if self.settings.strategy == "least_latency":
            await self.routing.latencies.record(target.id, seconds)

    async def _failed(self, target: Target, ep: Endpoint, admission: Admission, err: GatewayError) -> bool:
        """Count a failed attempt; True when the next target may be tried."""
        redact(err, ep.secrets)
        status = _status(err)
        self.metrics.router_failures.labels(self.endpoint.inference_id, target.id, str(status)).inc()
        if not self.settings.fails_over(status):
            return False
        state = await self.routing.breakers.failure(target.id, admission, self.settings.failure_threshold,
                                                    self.settings.cooldown)
        self.metrics.breaker_state.labels(target.id).set(state)
        return True

    async def _after_failure(self, run: "_Run", target: Target, ep: Endpoint, admission: Admission,
                             err: GatewayError) -> None:
        """A failed attempt: raise it when it may not fail over, else remember it and go on."""
        run.tried.append(target.id)
        if not await self._failed(target, ep, admission, err):
            raise err
        run.last = err

    def _exhausted(self, ctx: CallContext, run: "_Run") -> GatewayError:
        rid = self.endpoint.inference_id
        last, tried, passed_over, wait = run.last, run.tried, run.passed_over, run.wait
        if last is not None:
            last.reason = f"{last.reason}; router [{rid}] tried [{', '.join(tried)}]"
            if passed_over:
                last.reason += f" and passed over {', '.join(passed_over)}"
            last.args = (last.reason,)
            return last
        if ctx.remaining() <= 0:
            return StatusError(f"Request timed out after [{ctx.timeout_text}]", status=408)
        err = ServiceUnavailableError(f"Router [{rid}] has no target available: {', '.join(passed_over)}")
        if wait is not None:
            err.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        return err

    # ------------------------------------------------------------------ the targets, in turn

    async def _candidates(self, ctx: CallContext, run: "_Run", streaming: bool
                          ) -> AsyncIterator[tuple[Target, Endpoint, CallContext, Admission]]:
        """The targets to try in turn, in the strategy's order, each with its own call context and breaker
        admission; those passed over (missing, wrong task, open breaker, ...) are noted in `run`."""
        for target in await self._order():
            ep = self._usable(target, streaming=streaming)
            if isinstance(ep, str):
                self._pass_over(target, ep, run.passed_over)
                continue
            child = self._child(ctx, target)
            if child.remaining() <= 0:
                return
            admission = await self._admit(target, child, run.passed_over)
            if not admission.allowed:
                run.wait = admission.wait if run.wait is None else min(run.wait, admission.wait)
                continue
            yield target, ep, child, admission

    # ------------------------------------------------------------------ non-streaming

    async def _route(self, call: Callable[[Backend, CallContext], Awaitable[Any]], ctx: CallContext) -> Any:
        run = _Run()
        async for target, ep, child, admission in self._candidates(ctx, run, streaming=False):
            started = time.perf_counter()
            self.routing.in_flight[target.id] += 1
            try:
                async with asyncio.timeout(child.remaining()):
                    result = await call(self._backend_for(ep), child)
            except TimeoutError:
                err: GatewayError = _Timeout(target.id, child.timeout_text)
            except GatewayError as exc:
                err = exc
            else:
                await self._succeeded(target, admission, time.perf_counter() - started)
                return result
            finally:
                self.routing.in_flight[target.id] -= 1
            await self._after_failure(run, target, ep, admission, err)
        raise self._exhausted(ctx, run)

    def _pass_over(self, target: Target, reason: str, passed_over: list[str]) -> None:
        self.metrics.router_skipped.labels(self.endpoint.inference_id, target.id, reason).inc()
        words = {"missing": "does not exist", "task_type": "has another task type",
                 "no_streaming": "does not stream", "open": "has an open circuit",
                 "region_policy": "is not allowed by the region policy"}
        passed_over.append(f"[{target.id}] ({words[reason]})")

    async def _admit(self, target: Target, child: CallContext, passed_over: list[str]) -> Admission:
        admission = await self.routing.breakers.admit(target.id, child.remaining())
        self.metrics.breaker_state.labels(target.id).set(admission.state)
        if admission.allowed:
            ANSWERED_BY.set(target.id)  # a router among the targets names its own target after this
            self.metrics.router_attempts.labels(self.endpoint.inference_id, target.id).inc()
        else:
            self._pass_over(target, "open", passed_over)
        return admission

    async def embed(self, req: EmbedRequest, ctx: CallContext) -> EmbedResult:
        return await self._route(lambda backend, c: backend.embed(req, c), ctx)

    async def sparse_embed(self, req: EmbedRequest, ctx: CallContext) -> SparseEmbedResult:
        return await self._route(lambda backend, c: backend.sparse_embed(req, c), ctx)

    async def rerank(self, req: RerankRequest, ctx: CallContext) -> RerankResult:
        return await self._route(lambda backend, c: backend.rerank(req, c), ctx)

    async def chat(self, req: ChatRequest, ctx: CallContext) -> ChatResult:
        return await self._route(lambda backend, c: backend.chat(req, c), ctx)

    # ------------------------------------------------------------------ streaming

    async def stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatDelta | list[ChatDelta]]:
        run = _Run()
        async for target, ep, child, admission in self._candidates(ctx, run, streaming=True):
            started = time.perf_counter()
            self.routing.in_flight[target.id] += 1
            deltas: AsyncIterator[Any] | None = None
            try:
                try:
                    deltas = self._backend_for(ep).stream(req, child)
                    # the target's timeout bounds the wait for its first delta: until then nothing has
                    # reached the client and another target may still answer
                    async with asyncio.timeout(child.remaining()):
                        first = await anext(deltas, None)
                except TimeoutError:
                    err: GatewayError = _Timeout(target.id, child.timeout_text)
                except GatewayError as exc:
                    err = exc
                else:
                    await self._succeeded(target, admission, time.perf_counter() - started)
                    try:
                        if first is not None:
                            yield first
                        async for item in deltas:
                            yield item
                    except GatewayError as exc:
                        # the stream has started: it ends in-band and no other target is tried, but
                        # the failure counts against this target's breaker
                        await self._failed(target, ep, Admission(True, State.CLOSED), exc)
                        raise
                    return
            finally:
                self.routing.in_flight[target.id] -= 1
                if deltas is not None:
                    await deltas.aclose()  # type: ignore[attr-defined]
            await self._after_failure(run, target, ep, admission, err)
        raise self._exhausted(ctx, run)


class _Run:
    """What one routed request has been through: the targets tried, those passed over and why, the last
    error, and the soonest an open breaker lets a target be tried again."""

    __slots__ = ("tried", "passed_over", "last", "wait")

    def __init__(self) -> None:
        self.tried: list[str] = []
        self.passed_over: list[str] = []
        self.last: GatewayError | None = None
        self.wait: float | None = None
