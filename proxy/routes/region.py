"""`/_inference/_region_policy`: PUT (`?force`), GET, DELETE (ES 9.5, `inference.put_region_policy` etc.).

A fixed path registered before `/_inference/{id}`, so `_region_policy` is never taken for an endpoint id.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from .. import appkeys, region, surfaces
from ..auth import principal
from ..httputil import bool_param, check_params, read_body
from ..wire import es as es_wire

PATH = "/_inference/_region_policy"


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def gateway_location(app: web.Application) -> region.Location | None:
    return region.parse_location(app[appkeys.SETTINGS].location)


async def put_policy(request: web.Request) -> web.Response:
    check_params(request, ("force",))
    force = bool_param(request, "force")
    policy = region.parse_put(await read_body(request))
    registry = request.app[appkeys.REGISTRY]
    if not force:
        # Nothing references an endpoint here through pipelines or indices, so every endpoint counts as in use.
        ids = region.denied(policy, registry.all(), gateway_location(request.app))
        if ids:
            raise region.DeniedInUse(ids)
    existing = registry.document(region.DOC_ID)
    now = region.now_text()
    key = principal(request)  # ES records the user when security is on (`SecurityContext.getUser().principal()`)
    user = key.owner if key is not None else None
    if existing is None:
        doc = region.RegionPolicyDoc(policy, created_at=now, created_by=user)
    else:  # a replace keeps created_* and stamps updated_* (TransportPutRegionPolicyAction.createNewRegionPolicyDoc)
        old = region.decode_doc(existing)
        doc = region.RegionPolicyDoc(policy, created_at=old.created_at, created_by=old.created_by, updated_at=now,
                                     updated_by=user)
    body = region.encode_doc(doc)
    await registry.put_document(region.DOC_ID, body)
    return _json(body)


async def get_policy(request: web.Request) -> web.Response:
    check_params(request, ())
    body = request.app[appkeys.REGISTRY].document(region.DOC_ID)
    if body is None:
        raise region.no_policy()
    return _json(body)


async def delete_policy(request: web.Request) -> web.Response:
    check_params(request, ())
    if not await request.app[appkeys.REGISTRY].delete_document(region.DOC_ID):
        raise region.no_policy()
    return _json(msgspec.json.encode({"acknowledged": True}))


def add_routes(app: web.Application) -> None:
    for method, handler in (("PUT", put_policy), ("GET", get_policy), ("DELETE", delete_policy)):
        surfaces.add(app, method, PATH, handler, es_wire.ERRORS)
