"""The `router` service's settings: parsing, the checks made at PUT and `_update`, and references.

A router is an ordinary endpoint whose `service_settings` name other endpoints (its targets). This
module knows the shape of those settings and what must hold between a router and its targets (same
task type, compatible vectors, no cycles), and which target answered a request; `router.py` performs
requests with them. It does no I/O.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Callable, Iterable

import msgspec

from .errors import GatewayError, StatusError, ValidationError
from .timevalue import parse_time
from .types import EMBEDDING_TASKS, TaskType

DEFAULT_FAILOVER_ON: list[Any] = [408, 429, "5xx"]  # timeouts, rate limits, server and connection errors
DEFAULT_BREAKER = {"failure_threshold": 5, "cooldown": "30s"}
# The endpoint that answered a request to a router. The router sets it in the request's task, where the
# access log and the X-Inference-Target header (observability.py) read it: the routes between them need
# not carry it. Reset for every request (requests on one keep-alive connection may share a task).
ANSWERED_BY: ContextVar[str | None] = ContextVar("answered_by", default=None)
# settings of an embedding endpoint that decide whether two endpoints' vectors can be mixed in one index
VECTOR_SETTINGS = ("dimensions", "similarity", "element_type", "embedding_type")


class Target(msgspec.Struct, frozen=True):
    id: str
    weight: float = 1.0
    timeout: float | None = None  # seconds; None: whatever is left of the request's timeout
    timeout_text: str | None = None


class RouterSettings(msgspec.Struct, frozen=True):
    strategy: str
    targets: tuple[Target, ...]
    failover_statuses: frozenset[int]
    failover_classes: frozenset[int]  # 5 for "5xx"
    retries: int
    failure_threshold: int
    cooldown: float

    def fails_over(self, status: int) -> bool:
        return status in self.failover_statuses or status // 100 in self.failover_classes


# an endpoint as far as these checks need it: a registry `Endpoint` fits
Lookup = Callable[[str], Any]


def _target(raw: Any, strategy: str, errors: list[str]) -> Target | None:
    if isinstance(raw, str):
        return Target(raw)
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        errors.append(f"[targets] entries must be an endpoint id or an object with an [id], not [{raw}]")
        return None
    unknown = sorted(set(raw) - {"id", "weight", "timeout"})
    if unknown:
        errors.append(f"target [{raw['id']}] has unknown settings {unknown}; known: [id, weight, timeout]")
        return None
    weight = raw.get("weight", 1.0)
    if "weight" in raw:
        if strategy != "weighted":
            errors.append(f"target [{raw['id']}] has a [weight], which only the [weighted] strategy uses")
            return None
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            errors.append(f"target [{raw['id']}]: [weight] must be a positive number, not [{weight}]")
            return None
    timeout = text = None
    if "timeout" in raw:
        text = raw["timeout"]
        try:
            timeout = parse_time(text, "timeout") if isinstance(text, str) else None
        except GatewayError:
            timeout = None
        if timeout is None or timeout <= 0:
            errors.append(f"target [{raw['id']}]: [timeout] must be a positive time value such as [5s], not [{text}]")
            return None
    return Target(raw["id"], float(weight), timeout, text)


def _failover(raw: Any, errors: list[str]) -> tuple[frozenset[int], frozenset[int]]:
    statuses, classes = set(), set()
    if not isinstance(raw, list) or not raw:
        errors.append("[failover_on] must be a non-empty list of HTTP statuses (429) or classes (\"5xx\")")
        return frozenset(), frozenset()
    for item in raw:
        if isinstance(item, int) and not isinstance(item, bool) and 400 <= item <= 599:
            statuses.add(item)
        elif isinstance(item, str) and item in ("4xx", "5xx"):
            classes.add(int(item[0]))
        else:
            errors.append(f"[failover_on] entries are statuses from 400 to 599 or [4xx] / [5xx], not [{item}]")
    return frozenset(statuses), frozenset(classes)


def parse(settings: dict[str, Any]) -> RouterSettings:
    """The typed view of a router's (already catalogue-checked) service settings."""
    errors: list[str] = []
    strategy = settings.get("strategy", "fallback")
    raw_targets = settings.get("targets")
    targets: list[Target] = []
    if not isinstance(raw_targets, list) or not raw_targets:
        errors.append("[targets] must be a non-empty list of inference endpoint ids")
    else:
        for raw in raw_targets:
            t = _target(raw, strategy, errors)
            if t is not None:
                targets.append(t)
        ids = [t.id for t in targets]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            errors.append(f"[targets] lists {dupes} more than once")
    statuses, classes = _failover(settings.get("failover_on", DEFAULT_FAILOVER_ON), errors)
    retries = settings.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        errors.append(f"[retries] must be zero or a positive integer, not [{retries}]")
    breaker = {**DEFAULT_BREAKER, **(settings.get("circuit_breaker") or {})}
    try:
        cooldown = parse_time(str(breaker["cooldown"]), "cooldown")
    except GatewayError as exc:
        errors.append(exc.reason)
        cooldown = 0.0
    if errors:
        raise ValidationError(errors)
    return RouterSettings(strategy=strategy, targets=tuple(targets), failover_statuses=statuses,
                          failover_classes=classes, retries=retries,
                          failure_threshold=breaker["failure_threshold"], cooldown=cooldown)


def target_ids(settings: dict[str, Any]) -> list[str]:
    """The ids a stored router names, read leniently: stored settings were checked when written."""
    out = []
    for raw in settings.get("targets") or ():
        tid = raw if isinstance(raw, str) else raw.get("id") if isinstance(raw, dict) else None
        if isinstance(tid, str):
            out.append(tid)
    return out


def _path_back(start: str, goal: str, lookup: Lookup, seen: set[str]) -> list[str] | None:
    """A chain of router targets from `start` that reaches `goal`, if there is one."""
    if start == goal:
        return [start]
    if start in seen:
        return None
    seen.add(start)
    ep = lookup(start)
    if ep is None or not ep.spec.composite:
        return None
    for nxt in target_ids(ep.service_settings):
        path = _path_back(nxt, goal, lookup, seen)
        if path is not None:
            return [start, *path]
    return None


def check(inference_id: str, task: TaskType, service_settings: dict[str, Any], lookup: Lookup) -> dict[str, Any]:
    """Everything a router's settings must satisfy against the endpoints that exist now; returns
    the settings to store, with defaults and the targets' common vector settings filled in."""
    parsed = parse(service_settings)
    errors: list[str] = []
    targets = []
    for t in parsed.targets:
        cycle = _path_back(t.id, inference_id, lookup, set())
        if cycle is not None:
            errors.append(f"target [{t.id}] leads back to [{inference_id}] ({' -> '.join([inference_id, *cycle])}), "
                          f"a cycle")
            continue
        ep = lookup(t.id)
        if ep is None:
            errors.append(f"target [{t.id}] does not exist")
            continue
        if ep.task_type != task:
            errors.append(f"target [{t.id}] has task type [{ep.task_type.value}], the router has [{task.value}]")
            continue
        targets.append(ep)
    if errors:
        raise StatusError(f"Invalid router [{inference_id}]: {'; '.join(errors)}")
    out = {"strategy": parsed.strategy, "targets": service_settings["targets"],
           "failover_on": service_settings.get("failover_on", list(DEFAULT_FAILOVER_ON)),
           "retries": parsed.retries,
           "circuit_breaker": {**DEFAULT_BREAKER, **(service_settings.get("circuit_breaker") or {})}}
    if task in EMBEDDING_TASKS and task != TaskType.SPARSE_EMBEDDING:
        out.update(_common_vectors(inference_id, service_settings, targets))
    return out


def _common_vectors(inference_id: str, declared: dict[str, Any], targets: Iterable[Any]) -> dict[str, Any]:
    """Vectors from different targets can share an index only when they are shaped alike: each
    vector setting must be the same on every target (not declaring it counts as a value of its own),
    and equal to the router's own when it declares one."""
    common: dict[str, Any] = {}
    for name in VECTOR_SETTINGS:
        values = {t.inference_id: t.service_settings.get(name) for t in targets}
        if len(set(map(repr, values.values()))) > 1:
            listed = ", ".join(f"[{tid}] {'has [' + str(v) + ']' if v is not None else 'does not set it'}"
                               for tid, v in values.items())
            raise StatusError(f"Invalid router [{inference_id}]: its targets produce incompatible "
                              f"vectors: [{name}] differs ({listed})")
        value = next(iter(values.values()))
        if name in declared and declared[name] != value:
            raise StatusError(f"Invalid router [{inference_id}]: [{name}] is [{declared[name]}] but its "
                              f"targets have [{value}]")
        if value is not None:
            common[name] = value
    return common


def users_of(inference_id: str, endpoints: Iterable[Any]) -> list[str]:
    """The routers that name `inference_id` as a target."""
    return sorted(ep.inference_id for ep in endpoints
                  if ep.spec.composite and inference_id in target_ids(ep.service_settings))


def referenced_error(inference_id: str, routers: list[str]) -> str:
    """Worded like ES `TransportDeleteInferenceEndpointAction.buildErrorString` (pipelines)."""
    return (f"Inference endpoint {inference_id} is referenced by routers: [{', '.join(routers)}]. Ensure that no "
            f"routers are using this inference endpoint, or use force to ignore this warning and delete the "
            f"inference endpoint.")
