"""The Elasticsearch `/_inference` routes.

ES declares every route as `_inference/{task_type_or_id}[/{inference_id}]` (`Paths.java`): with
one segment it is an id, with two the first must be a task type. The handlers below follow that.
"""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable

from aiohttp import web

from .. import appkeys, surfaces
from ..auth import check_endpoint, may_see
from ..catalogue import SERVICES
from ..errors import StatusError
from ..endpoint import Endpoint
from ..httputil import bool_param, check_params, check_timeout_param, json_response, parse_time, read_object
from ..keys import MANAGE
from ..probe import probe
from ..types import TaskType
from ..wire import es as es_wire
from . import es_perform, usage



def parse_task(segment: str) -> TaskType:
    task = TaskType.parse(segment)
    if task is None:
        raise StatusError(f"Unknown task_type [{segment}]")
    return task


# ------------------------------------------------------------------------------ GET


def _listing(request: web.Request, endpoints) -> web.Response:
    """A key limited to some endpoints sees only those."""
    shown = [e.public() for e in endpoints if may_see(request, e.inference_id, e.task_type.value)]
    return json_response({"endpoints": shown})


async def get_all(request: web.Request) -> web.Response:
    check_params(request, ())
    return _listing(request, request.app[appkeys.REGISTRY].find("_all", None))


async def get_one(request: web.Request) -> web.Response:
    first = request.match_info["first"]
    if first == "_usage":
        return await usage.get_usage(request)
    check_params(request, ())
    if first == "_services":
        return json_response(_services(None))
    return _listing(request, request.app[appkeys.REGISTRY].find(first, None))


async def get_two(request: web.Request) -> web.Response:
    check_params(request, ())
    first, second = request.match_info["first"], request.match_info["second"]
    if first == "_services":
        return json_response(_services(parse_task(second)))
    task = parse_task(first)
    return _listing(request, request.app[appkeys.REGISTRY].find(second, task))


def _services(task: TaskType | None) -> list[dict[str, Any]]:
    """A compact `_services` listing: each service with its task types and streaming tasks."""
    out = []
    for spec in SERVICES.values():
        if task is not None and task not in spec.tasks:
            continue
        out.append({"service": spec.name, "name": spec.name,
                    "task_types": sorted(t.value for t in spec.tasks),
                    "streaming_task_types": sorted(t.value for t in spec.stream_tasks())})
    return out


# ------------------------------------------------------------------------------ PUT


async def put_one(request: web.Request) -> web.Response:
    check_params(request, ("timeout",))
    check_timeout_param(request)
    body = await read_object(request)
    inference_id = request.match_info["first"]
    _check_manage(request, inference_id, body.get("task_type"))
    return _created(await request.app[appkeys.REGISTRY].create(inference_id, None, body, _probe(request, body)))


def _probe(request: web.Request, body: dict[str, Any]) -> Callable[[Endpoint], Awaitable[Endpoint]] | None:
    """The test inference ES runs at PUT, within the PUT's `timeout` (30s by default, `PutInferenceModelAction`)."""
    if not request.app[appkeys.SETTINGS].validate_endpoints:
        return None
    text = request.query.get("timeout") or "30s"
    given = body.get("service_settings")
    dims_by_user = isinstance(given, dict) and given.get("dimensions") is not None
    return functools.partial(probe, request, dims_by_user=dims_by_user, timeout_s=parse_time(text), timeout_text=text)


async def put_two(request: web.Request) -> web.Response:
    check_params(request, ("timeout",))
    check_timeout_param(request)
    first, second = request.match_info["first"], request.match_info["second"]
    registry = request.app[appkeys.REGISTRY]
    if second == "_update":
        body = await read_object(request)
        _check_manage(request, first, None)
        return json_response((await registry.update(first, None, body)).public())
    task = parse_task(first)
    body = await read_object(request)
    _check_manage(request, second, task.value)
    return _created(await registry.create(second, task, body, _probe(request, body)))


async def put_update(request: web.Request) -> web.Response:
    check_params(request, ("timeout",))
    check_timeout_param(request)
    task = parse_task(request.match_info["first"])
    body = await read_object(request)
    _check_manage(request, request.match_info["second"], task.value)
    ep = await request.app[appkeys.REGISTRY].update(request.match_info["second"], task, body)
    return json_response(ep.public())


def _check_manage(request: web.Request, inference_id: str, task: Any) -> None:
    """Scoped keys manage only their endpoints; an existing endpoint's own task type counts."""
    existing = request.app[appkeys.REGISTRY].get(inference_id)
    if existing is not None:
        check_endpoint(request, MANAGE, inference_id, existing.task_type.value)
    check_endpoint(request, MANAGE, inference_id, task if isinstance(task, str) else None)


def _created(ep) -> web.Response:
    response = json_response(ep.public())
    if ep.spec.deprecation:
        response.headers["Warning"] = f'299 Elasticsearch-9.5.1 "{ep.spec.deprecation}"'
    return response


# ------------------------------------------------------------------------------ DELETE


async def delete_one(request: web.Request) -> web.Response:
    return await _delete(request, request.match_info["first"], None)


async def delete_two(request: web.Request) -> web.Response:
    return await _delete(request, request.match_info["second"], parse_task(request.match_info["first"]))


async def _delete(request: web.Request, inference_id: str, task: TaskType | None) -> web.Response:
    check_params(request, ("dry_run", "force", "timeout"))
    check_timeout_param(request)
    dry_run = bool_param(request, "dry_run")
    force = bool_param(request, "force")  # deletes an endpoint that routers still name
    _check_manage(request, inference_id, task.value if task is not None else None)
    result = await request.app[appkeys.REGISTRY].delete(inference_id, task, dry_run=dry_run, force=force)
    return json_response(result)


# ------------------------------------------------------------------------------ POST


async def post_one(request: web.Request) -> web.StreamResponse:
    return await es_perform.perform(request, request.match_info["first"], None)


async def post_two(request: web.Request) -> web.StreamResponse:
    return await es_perform.perform(request, request.match_info["second"], parse_task(request.match_info["first"]))


async def post_id_stream(request: web.Request) -> web.StreamResponse:
    return await es_perform.stream(request, request.match_info["first"], None)


async def post_stream(request: web.Request) -> web.StreamResponse:
    return await es_perform.stream(request, request.match_info["second"], request.match_info["first"])


def add_routes(app: web.Application) -> None:
    es, stream = es_wire.ERRORS, es_wire.STREAM_ERRORS
    add = surfaces.add
    # grouped by path: one resource per path takes all its methods, so a request is matched against
    # fewer patterns (aiohttp tries resources in order, a regex each); `_stream` stays before `{second}`
    add(app, "GET", "/_inference", get_all, es)
    add(app, "GET", "/_inference/{first}", get_one, es)
    add(app, "PUT", "/_inference/{first}", put_one, es)
    add(app, "DELETE", "/_inference/{first}", delete_one, es)
    add(app, "POST", "/_inference/{first}", post_one, es)
    # `_stream` answers errors as SSE events once its handler runs; before that (auth, admission) as JSON
    add(app, "POST", "/_inference/{first}/_stream", post_id_stream, stream, before=es)
    add(app, "POST", "/_inference/{first}/{second}", post_two, es)
    add(app, "GET", "/_inference/{first}/{second}", get_two, es)
    add(app, "PUT", "/_inference/{first}/{second}", put_two, es)
    add(app, "DELETE", "/_inference/{first}/{second}", delete_two, es)
    add(app, "PUT", "/_inference/{first}/{second}/_update", put_update, es)
    add(app, "POST", "/_inference/{first}/{second}/_stream", post_stream, stream, before=es)
