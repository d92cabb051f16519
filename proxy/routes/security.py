"""Elasticsearch's API key API, the part a gateway needs, so the official client manages its keys.

`POST|PUT /_security/api_key` (create), `GET /_security/api_key` (by id, name, owner),
`DELETE /_security/api_key` (invalidate by ids, name or owner) and `GET /_security/_authenticate`,
with the request and response shapes of the Elasticsearch specification
(`specification/security/{create_api_key,get_api_key,invalidate_api_key,authenticate}`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import appkeys, surfaces
from ..auth import principal
from ..budgets import parse_limits
from ..errors import IllegalArgumentError, ParseError, RequestValidationError
from ..httputil import bool_param, check_params, json_response, parse_time, read_object, read_raw
from ..keys import CLUSTER_PRIVILEGES, MANAGE_KEYS, ApiKey, encoded
from ..wire import es as es_wire

_CREATE_FIELDS = ("name", "expiration", "role_descriptors", "metadata")
_INVALIDATE_FIELDS = ("id", "ids", "name", "owner", "realm_name", "username")
_DESCRIPTOR_FIELDS = ("cluster", "indices", "applications", "run_as", "metadata", "transient_metadata",
                      "remote_indices", "remote_cluster", "restriction", "description")
_ANONYMOUS = "_anonymous"


def _unknown_field(parser: str, field: str) -> ParseError:
    return ParseError(f"[{parser}] unknown field [{field}]")


def _check_descriptors(descriptors: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(descriptors, dict):
        raise ParseError("[role_descriptors] must be an object of role descriptors")
    for role, descriptor in descriptors.items():
        if not isinstance(descriptor, dict):
            raise ParseError(f"failed to parse role [{role}]. expected an object but found a "
                             f"[{type(descriptor).__name__}]")
        for field in descriptor:
            if field not in _DESCRIPTOR_FIELDS:
                raise ParseError(f"failed to parse role [{role}]. unexpected field [{field}]")
        cluster = descriptor.get("cluster") or []
        if not isinstance(cluster, list) or not all(isinstance(c, str) for c in cluster):
            raise ParseError(f"failed to parse role [{role}]. [cluster] must be an array of strings")
        for name in cluster:
            if name not in CLUSTER_PRIVILEGES:
                raise IllegalArgumentError(
                    f"unknown cluster privilege [{name}]. a privilege must be either one of the predefined cluster "
                    f"privilege names [{','.join(sorted(CLUSTER_PRIVILEGES))}] or a pattern over one of the available "
                    f"cluster actions")
        for app in descriptor.get("applications") or []:
            if not isinstance(app, dict) or not isinstance(app.get("resources"), list) \
                    or not isinstance(app.get("privileges"), list) or not isinstance(app.get("application"), str):
                raise ParseError(f"failed to parse role [{role}]. an application privilege needs [application], "
                                 f"[privileges] and [resources]")
    return descriptors


def _owner(request: web.Request) -> str:
    key = principal(request)
    return key.owner if key is not None else _ANONYMOUS


def _sees_all_keys(request: web.Request) -> bool:
    key = principal(request)
    return key is None or key.may(MANAGE_KEYS)


async def create_api_key(request: web.Request) -> web.Response:
    check_params(request, ("refresh",))
    body = await read_object(request)
    for field in body:
        if field not in _CREATE_FIELDS:
            raise _unknown_field("api_key_request", field)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RequestValidationError("api key name is required")
    if len(name) > 1024 or name != name.strip() or name.startswith("_"):
        raise RequestValidationError("API key name must be between 1 and 1024 characters, not start with an "
                                     "underscore and have no leading or trailing whitespace")
    expiration = body.get("expiration")
    expires_in = None
    if expiration is not None:
        if not isinstance(expiration, str):
            raise ParseError("[expiration] must be a time value such as [1d]")
        expires_in = parse_time(expiration, "expiration")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ParseError("[metadata] must be an object")
    if any(k.startswith("_") for k in metadata):
        raise RequestValidationError("API key metadata keys may not start with [_]")
    parse_limits(metadata)  # limits the gateway enforces must be valid before the key exists
    descriptors = _check_descriptors(body.get("role_descriptors") or {})
    creator = principal(request)
    record, secret = await request.app[appkeys.KEYS].create(
        name, _owner(request), role_descriptors=descriptors, metadata=metadata, expires_in=expires_in,
        limited_by=creator.effective() if creator is not None else [])
    out: dict[str, Any] = {"id": record.id, "name": record.name}
    if record.expiration is not None:
        out["expiration"] = int(record.expiration * 1000)
    out["api_key"] = secret
    out["encoded"] = encoded(record, secret)
    return json_response(out)


async def get_api_key(request: web.Request) -> web.Response:
    check_params(request, ("id", "name", "owner", "realm_name", "username", "active_only", "with_limited_by",
                           "with_profile_uid"))
    q = request.query
    owned_only = bool_param(request, "owner")
    if owned_only and ("username" in q or "realm_name" in q):
        raise IllegalArgumentError("username or realm name must not be specified when the current user owns the "
                                   "API key")
    owner = _owner(request) if owned_only or not _sees_all_keys(request) else q.get("username")
    found = request.app[appkeys.KEYS].find(key_id=q.get("id"), name=q.get("name"), owner=owner,
                                           active_only=bool_param(request, "active_only"))
    with_limited_by = bool_param(request, "with_limited_by")
    return json_response({"api_keys": [k.public(with_limited_by) for k in found]})


async def invalidate_api_key(request: web.Request) -> web.Response:
    check_params(request, ())
    body = await read_object(request) if (await read_raw(request)).strip() else {}
    for field in body:
        if field not in _INVALIDATE_FIELDS:
            raise _unknown_field("invalidate_api_key_request", field)
    ids = list(body.get("ids") or []) + ([body["id"]] if body.get("id") else [])
    if not ids and not body.get("name") and not body.get("owner") and not body.get("username"):
        raise RequestValidationError("One of [api key id(s), api key name, username, realm name] must be specified "
                                     "if [owner] flag is false")
    ring = request.app[appkeys.KEYS]
    owner = _owner(request) if body.get("owner") or not _sees_all_keys(request) else body.get("username")
    candidates: list[ApiKey] = []
    for key_id in ids or [None]:
        candidates += ring.find(key_id=key_id, name=body.get("name"), owner=owner)
    done, before = await ring.invalidate(list(dict.fromkeys(k.id for k in candidates)))
    return json_response({"invalidated_api_keys": done, "previously_invalidated_api_keys": before,
                          "error_count": 0})


async def authenticate(request: web.Request) -> web.Response:
    check_params(request, ())
    key = principal(request)
    if key is None:  # no key exists: access control is off
        realm = {"name": "__anonymous", "type": "__anonymous"}
        return json_response({"username": _ANONYMOUS, "roles": [], "full_name": None, "email": None,
                              "metadata": {}, "enabled": True, "authentication_realm": realm,
                              "lookup_realm": realm, "authentication_type": "anonymous"})
    realm = {"name": "_es_api_key", "type": "_es_api_key"}
    return json_response({"username": key.owner, "roles": key.role_names, "full_name": None, "email": None,
                          "metadata": {}, "enabled": True, "authentication_realm": realm, "lookup_realm": realm,
                          "authentication_type": "api_key", "api_key": {"id": key.id, "name": key.name}})


def add_routes(app: web.Application) -> None:
    es = es_wire.ERRORS
    surfaces.add(app, "POST", "/_security/api_key", create_api_key, es)
    surfaces.add(app, "PUT", "/_security/api_key", create_api_key, es)
    surfaces.add(app, "GET", "/_security/api_key", get_api_key, es)
    surfaces.add(app, "DELETE", "/_security/api_key", invalidate_api_key, es)
    surfaces.add(app, "GET", "/_security/_authenticate", authenticate, es)

