"""API keys and roles, after the Elasticsearch inference privileges.

`manage_inference` (create, update, delete endpoints) and `monitor_inference` (read endpoints and
perform inference) are granted by the roles `inference_admin` (both) and `inference_user`
(monitor only). Keys are random, shown once, stored as SHA-256 digests (they carry 256 bits of
entropy, so no slow hash is needed) and compared in constant time. Accepted as
`Authorization: ApiKey base64(id:key)` (the elasticsearch client) and `Authorization: Bearer
base64(id:key)` (the openai SDK). With no key at all, access control is off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from .errors import GatewayError

MANAGE = "manage_inference"
MONITOR = "monitor_inference"
ROLES = {"inference_admin": frozenset({MANAGE, MONITOR}), "inference_user": frozenset({MONITOR})}
_RELOAD_EVERY = 2.0  # seconds: how soon keys created or revoked by the CLI take effect
_MISS_RELOAD_EVERY = 0.2  # an unknown id reloads at most this often, so guessing ids cannot hammer the file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    digest     BLOB NOT NULL,
    created_at REAL NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
)
"""


class AuthenticationError(GatewayError):
    status = 401
    es_type = "security_exception"
    openai_code = "invalid_api_key"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, headers={"WWW-Authenticate": 'ApiKey, Basic realm="security", charset="UTF-8"'})


class AuthorizationError(GatewayError):
    status = 403
    es_type = "security_exception"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: str
    digest: bytes
    created_at: float
    revoked: bool


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class KeyStore:
    """Keys in the gateway's SQLite file; the CLI writes, servers read (reloading every few seconds)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        self._loaded_at = 0.0

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute(_SCHEMA)
        return conn

    def reload(self) -> None:
        with self._connect() as conn:
            rows = conn.execute("SELECT id, name, role, digest, created_at, revoked FROM api_keys").fetchall()
        self._keys = {r[0]: ApiKey(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5])) for r in rows}
        self._loaded_at = time.monotonic()

    def _fresh(self) -> dict[str, ApiKey]:
        if time.monotonic() - self._loaded_at > _RELOAD_EVERY:
            self.reload()
        return self._keys

    @property
    def enabled(self) -> bool:
        return any(not k.revoked for k in self._fresh().values())

    def create(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key: (record, the encoded credential to hand out once)."""
        if role not in ROLES:
            raise ValueError(f"unknown role [{role}]; one of {sorted(ROLES)}")
        key_id = secrets.token_urlsafe(15)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(key_id, name, role, _digest(secret), time.time(), False)
        with self._connect() as conn:
            conn.execute("INSERT INTO api_keys (id, name, role, digest, created_at) VALUES (?, ?, ?, ?, ?)",
                         (record.id, record.name, record.role, record.digest, record.created_at))
        self.reload()
        return record, base64.b64encode(f"{key_id}:{secret}".encode()).decode()

    def list(self) -> list[ApiKey]:
        self.reload()
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    def revoke(self, key_id: str) -> bool:
        with self._connect() as conn:
            changed = conn.execute("UPDATE api_keys SET revoked = 1 WHERE id = ? AND revoked = 0", (key_id,)).rowcount
        self.reload()
        return changed == 1

    def verify(self, encoded: str) -> ApiKey | None:
        try:
            key_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        record = self._fresh().get(key_id)
        if record is None and time.monotonic() - self._loaded_at > _MISS_RELOAD_EVERY:
            self.reload()  # perhaps created by the CLI since the last reload
            record = self._keys.get(key_id)
        # compare even when the id is unknown, so timing does not tell which ids exist
        expected = record.digest if record is not None else _digest("")
        if not hmac.compare_digest(expected, _digest(secret)) or record is None or record.revoked:
            return None
        return record


def required_privilege(request: web.Request) -> str | None:
    """The privilege a route needs; None for the liveness probe."""
    if request.path in ("/_health", "/_ready"):
        return None
    if request.path.startswith("/_inference") and request.method in ("PUT", "DELETE"):
        return MANAGE
    return MONITOR


def _action(request: web.Request, privilege: str) -> str:
    if privilege == MANAGE:
        verb = "delete" if request.method == "DELETE" else "put"
        return f"cluster:admin/xpack/inference/{verb}"
    return "cluster:monitor/xpack/inference"


def authenticate(request: web.Request, keys: KeyStore) -> None:
    privilege = required_privilege(request)
    if privilege is None or not keys.enabled:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if not header:
        raise AuthenticationError(f"missing authentication credentials for REST request [{request.path}]")
    record = keys.verify(credential.strip()) if scheme.lower() in ("apikey", "bearer") else None
    if record is None:
        raise AuthenticationError("unable to authenticate with provided credentials and anonymous access is not "
                                  "allowed for this request")
    if privilege not in ROLES[record.role]:
        raise AuthorizationError(f"action [{_action(request, privilege)}] is unauthorized for API key id "
                                 f"[{record.id}] of user [{record.name}] with role [{record.role}], this action is "
                                 f"granted by the cluster privileges [{privilege}]")
