"""Authentication and privileges on every route, after Elasticsearch's security model.

Keys and what they grant are in proxy/keys.py. Routes need the cluster privileges ES asks for:
`manage_inference` to create, update and delete endpoints (and read usage), `monitor_inference` to
read endpoints and perform inference, `manage_api_key` / `manage_own_api_key` for the API key API.
A key limited to endpoint patterns sees and uses only those endpoints, on both surfaces. With no key
at all in the store, access control is off (a gateway on loopback, or one started `--insecure`).
A key comes in `Authorization` (`ApiKey` or `Bearer`), or in `x-api-key` when no Authorization header
is sent (the anthropic SDK).
"""

from __future__ import annotations

from aiohttp import web

from . import appkeys
from .errors import GatewayError
from .keys import MANAGE, MANAGE_OWN_KEYS, MONITOR, ApiKey, KeyRing, granted_by

AUTHENTICATED = "authenticated"  # any valid key (GET /_security/_authenticate)


class AuthenticationError(GatewayError):
    status = 401
    es_type = "security_exception"
    openai_code = "invalid_api_key"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, headers={"WWW-Authenticate": 'ApiKey, Basic realm="security", charset="UTF-8"'})


class AuthorizationError(GatewayError):
    status = 403
    es_type = "security_exception"


def required_privilege(request: web.Request) -> str | None:
    """The privilege a route needs; None for the probes and the console's static files."""
    path = request.path
    if path in ("/_health", "/_ready"):
        return None
    # the browser loads the console's page before anyone signs in; its data routes are under /api/
    if (path == "/_console" or path.startswith("/_console/")) and not path.startswith("/_console/api/"):
        return None
    if path.startswith("/_security/"):
        return AUTHENTICATED if path == "/_security/_authenticate" else MANAGE_OWN_KEYS
    if path.startswith("/_inference") and (request.method in ("PUT", "DELETE") or path == "/_inference/_usage"):
        return MANAGE
    return MONITOR


def _action(request: web.Request, privilege: str) -> str:
    if privilege == MANAGE:
        verb = "delete" if request.method == "DELETE" else "put"
        return f"cluster:admin/xpack/inference/{verb}"
    if privilege == MANAGE_OWN_KEYS:
        verb = {"GET": "get", "DELETE": "invalidate"}.get(request.method, "create")
        return f"cluster:admin/xpack/security/api_key/{verb}"
    return "cluster:monitor/xpack/inference"


def _denied(request: web.Request, key: ApiKey, privilege: str, where: str = "") -> "AuthorizationError":
    return AuthorizationError(f"action [{_action(request, privilege)}] is unauthorized for API key id [{key.id}] "
                              f"of user [{key.owner}]{where}, this action is granted by the cluster privileges "
                              f"[{','.join(granted_by(privilege))}]")


def authenticate(request: web.Request, keys: KeyRing) -> None:
    """Who is calling (`request[appkeys.PRINCIPAL]`, None while access control is off) and whether the
    route's privilege is theirs; endpoint scopes are checked where the endpoint is known."""
    if not keys.enabled:  # first: a gateway without keys pays nothing per request
        return
    privilege = required_privilege(request)
    if privilege is None:
        return
    header = request.headers.get("Authorization", "")
    if not header and request.headers.get("x-api-key"):
        header = "Bearer " + request.headers["x-api-key"]  # how the anthropic SDK sends its key
    scheme, _, credential = header.partition(" ")
    if not header:
        raise AuthenticationError(f"missing authentication credentials for REST request [{request.path}]")
    record = keys.verify(credential.strip()) if scheme.lower() in ("apikey", "bearer") else None
    if record is None:
        raise AuthenticationError("unable to authenticate with provided credentials and anonymous access is not "
                                  "allowed for this request")
    request[appkeys.PRINCIPAL] = record
    if privilege != AUTHENTICATED and not record.may(privilege):
        raise _denied(request, record, privilege)


def principal(request: web.Request) -> ApiKey | None:
    return request.get(appkeys.PRINCIPAL)


def may_see(request: web.Request, endpoint: str, task: str) -> bool:
    key = principal(request)
    return key is None or key.may(MONITOR, endpoint, task)


def check_endpoint(request: web.Request, privilege: str, endpoint: str, task: str | None) -> None:
    """A key limited to some endpoints (application privileges of `inference-proxy`) uses only those."""
    key = principal(request)
    if key is not None and not key.may(privilege, endpoint, task):
        where = f" on inference endpoint [{endpoint}]" + (f" of task type [{task}]" if task else "")
        raise _denied(request, key, privilege, where)
