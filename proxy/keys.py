"""API keys after Elasticsearch's API key service, kept in the endpoint store so replicas share them.

A key is random, shown once, stored as a SHA-256 digest (it carries 256 bits of entropy, so no slow
hash is needed) and compared in constant time; it is sent as `Authorization: ApiKey base64(id:key)`
(the `encoded` value Elasticsearch returns) or `Bearer` with the same value (the openai SDK).

What a key may do is what Elasticsearch would let it do: the cluster privileges of its role
descriptors (`manage_inference`, `monitor_inference`, `manage_api_key`, `manage_own_api_key`, and
the broader `all`, `manage`, `monitor`, `manage_security` that imply them), intersected with the
privileges it is limited by (its owner's roles when it was made). Endpoint scopes use Elasticsearch's
application privileges: a descriptor holding
`{"application": "inference-proxy", "privileges": ["text_embedding"], "resources": ["team-a-*"]}`
may use only endpoints whose id matches a resource pattern, for those task types (`*` for all).
A descriptor without such an entry is not limited to endpoints.

Limits per key live in its metadata (`inference_limits`, see proxy/budgets.py). Once any key has
existed, access control stays on, even after every key is invalidated, and even when the store loses
its keys: a key's creation (and any gateway that finds keys in its store) first writes the marker
`keys.required` into the data directory, and a ring whose marker exists is never open.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import hmac
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, Iterable

import msgspec

from .store import Store, StoredKey

log = logging.getLogger("proxy.keys")

MANAGE = "manage_inference"
MONITOR = "monitor_inference"
MANAGE_KEYS = "manage_api_key"
MANAGE_OWN_KEYS = "manage_own_api_key"
APPLICATION = "inference-proxy"
REQUIRED_MARKER = "keys.required"  # in the data directory: API keys exist or existed

# what each cluster privilege grants, after ES ClusterPrivilegeResolver (only those the gateway enforces)
_GRANTS: dict[str, frozenset[str]] = {
    "all": frozenset({MANAGE, MONITOR, MANAGE_KEYS, MANAGE_OWN_KEYS}),
    "manage": frozenset({MANAGE, MONITOR}),
    "monitor": frozenset({MONITOR}),
    "manage_security": frozenset({MANAGE_KEYS, MANAGE_OWN_KEYS}),
    MANAGE: frozenset({MANAGE, MONITOR}),
    MONITOR: frozenset({MONITOR}),
    MANAGE_KEYS: frozenset({MANAGE_KEYS, MANAGE_OWN_KEYS}),
    MANAGE_OWN_KEYS: frozenset({MANAGE_OWN_KEYS}),
}
CLUSTER_PRIVILEGES = frozenset(_GRANTS)


def granted_by(privilege: str) -> list[str]:
    """The cluster privileges that grant this one, itself first (as ES lists them in a denial)."""
    return [privilege] + [n for n, grants in _GRANTS.items() if privilege in grants and n != privilege]


# the reserved roles a key made with `inference-proxy keys create --role` has (ES ReservedRolesStore)
ROLES: dict[str, dict[str, Any]] = {
    "superuser": {"cluster": ["all"]},
    "inference_admin": {"cluster": [MANAGE]},
    "inference_user": {"cluster": [MONITOR]},
}


class KeyDoc(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The stored JSON beside a key's digest."""

    roles: list[str] = []  # reserved roles of a key made by the CLI
    role_descriptors: dict[str, dict[str, Any]] = {}
    limited_by: list[dict[str, dict[str, Any]]] = []
    metadata: dict[str, Any] = {}


_doc_decoder = msgspec.json.Decoder(KeyDoc)
_doc_encoder = msgspec.json.Encoder()


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _allows(descriptor: dict[str, Any], privilege: str, endpoint: str | None, task: str | None) -> bool:
    granted: set[str] = set()
    for name in descriptor.get("cluster") or ():
        granted |= _GRANTS.get(name, frozenset())
    if privilege not in granted:
        return False
    if endpoint is None:
        return True
    scopes = [a for a in descriptor.get("applications") or () if a.get("application") == APPLICATION]
    if not scopes:
        return True
    for scope in scopes:
        tasks = scope.get("privileges") or ()
        if task is not None and "*" not in tasks and task not in tasks:
            continue
        if any(fnmatch.fnmatchcase(endpoint, pattern) for pattern in scope.get("resources") or ()):
            return True
    return False


def _any_allows(descriptors: dict[str, dict[str, Any]], privilege: str, endpoint: str | None,
                task: str | None) -> bool:
    return any(_allows(d, privilege, endpoint, task) for d in descriptors.values())


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    owner: str
    digest: bytes
    created_at: float
    expiration: float | None
    invalidated_at: float | None
    doc: KeyDoc

    def __repr__(self) -> str:  # the digest stays out of log lines
        return f"ApiKey({self.id!r}, {self.name!r})"

    @classmethod
    def from_stored(cls, k: StoredKey) -> "ApiKey":
        return cls(id=k.id, name=k.name, owner=k.owner, digest=k.digest, created_at=k.created_at,
                   expiration=k.expiration, invalidated_at=k.invalidated_at, doc=_doc_decoder.decode(k.doc))

    def active(self, now: float) -> bool:
        return self.invalidated_at is None and (self.expiration is None or now < self.expiration)

    @property
    def limited_by(self) -> list[dict[str, dict[str, Any]]]:
        roles = {r: ROLES[r] for r in self.doc.roles if r in ROLES}
        return ([roles] if roles else []) + self.doc.limited_by

    @property
    def role_names(self) -> list[str]:
        return self.doc.roles or sorted(self.doc.role_descriptors)

    def may(self, privilege: str, endpoint: str | None = None, task: str | None = None) -> bool:
        """Elasticsearch's rule: the key's own descriptors (none: inherit) and every set it is limited by."""
        own = self.doc.role_descriptors
        if own and not _any_allows(own, privilege, endpoint, task):
            return False
        return all(_any_allows(d, privilege, endpoint, task) for d in self.limited_by)

    def effective(self) -> list[dict[str, dict[str, Any]]]:
        """What a key created by this one is limited by: everything this one is limited by, and its own."""
        own = [self.doc.role_descriptors] if self.doc.role_descriptors else []
        return self.limited_by + own

    def public(self, with_limited_by: bool = False) -> dict[str, Any]:
        """The ES `ApiKey` shape of GET /_security/api_key."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "type": "rest",
                               "creation": int(self.created_at * 1000)}
        if self.expiration is not None:
            out["expiration"] = int(self.expiration * 1000)
        out["invalidated"] = self.invalidated_at is not None
        if self.invalidated_at is not None:
            out["invalidation"] = int(self.invalidated_at * 1000)
        out.update({"username": self.owner, "realm": "inference_proxy", "realm_type": "inference_proxy",
                    "metadata": self.doc.metadata, "role_descriptors": self.doc.role_descriptors})
        if with_limited_by:
            out["limited_by"] = self.limited_by
        return out


def new_key_id() -> str:
    """120 random bits in base64url, as ES key ids; never with a leading `-`, which a shell command line
    (`inference-proxy keys revoke <id>`) would read as an option."""
    while (key_id := secrets.token_urlsafe(15)).startswith("-"):
        continue
    return key_id


def decode_credential(encoded: str) -> tuple[str, str] | None:
    try:
        key_id, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (key_id, secret) if sep else None


def _write_marker(path: Path) -> None:
    """The marker, durably (the file and its directory entry), owner-only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"API keys exist or existed here: anonymous requests are refused\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class KeyRing:
    """Every key of the store, in memory: verifying one costs no I/O. Writes go to the store first;
    changes made elsewhere (another replica, the CLI) arrive through the store's change feed.
    `marker`: the data directory's `keys.required`, which keeps access control on for good."""

    def __init__(self, store: Store, marker: Path | None = None) -> None:
        self._store = store
        self._keys: dict[str, ApiKey] = {}
        self._reload: asyncio.Task | None = None
        self._marker = marker
        self._required = marker is not None and marker.exists()

    def _mark_required(self) -> None:
        if self._marker is not None and not self._required:
            _write_marker(self._marker)
        self._required = True

    async def load(self) -> None:
        self._keys = {k.id: ApiKey.from_stored(k) for k in await self._store.load_keys()}
        if self._keys:
            self._mark_required()  # keys made elsewhere (the CLI, another replica, an older version)

    def follow(self) -> None:
        self._store.watch_keys(self._changed)

    def _changed(self) -> None:
        if self._reload is None or self._reload.done():
            self._reload = asyncio.get_running_loop().create_task(self._reload_soon(), name="keys-reload")

    async def _reload_soon(self) -> None:
        try:
            await self.load()
        except Exception as exc:  # the store is away: the next change or the next write reloads
            log.warning("could not reload API keys from the store: %s: %s", type(exc).__name__, exc)

    async def close(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            await asyncio.gather(self._reload, return_exceptions=True)

    @property
    def enabled(self) -> bool:
        """Access control is on once any key exists, invalidated ones included, or ever existed here."""
        return self._required or bool(self._keys)

    def verify(self, encoded: str) -> ApiKey | None:
        pair = decode_credential(encoded)
        key_id, secret = pair if pair is not None else ("", "")
        record = self._keys.get(key_id)
        # compare even when the id is unknown, so timing does not tell which ids exist
        expected = record.digest if record is not None else _digest("")
        if not hmac.compare_digest(expected, _digest(secret)) or record is None or pair is None:
            return None
        return record if record.active(time.time()) else None

    async def create(self, name: str, owner: str, *, roles: Iterable[str] = (),
                     role_descriptors: dict[str, dict[str, Any]] | None = None,
                     limited_by: list[dict[str, dict[str, Any]]] | None = None,
                     metadata: dict[str, Any] | None = None, expires_in: float | None = None) -> tuple[ApiKey, str]:
        """A new key: (record, the secret to hand out once)."""
        doc = KeyDoc(roles=list(roles), role_descriptors=role_descriptors or {}, limited_by=limited_by or [],
                     metadata=metadata or {})
        secret = secrets.token_urlsafe(32)
        now = time.time()
        self._mark_required()  # before the key exists anywhere: a lost store cannot reopen the gateway
        stored = StoredKey(id=new_key_id(), name=name, owner=owner, digest=_digest(secret),
                           created_at=now, expiration=None if expires_in is None else now + expires_in,
                           doc=_doc_encoder.encode(doc))
        if not await self._store.insert_key(stored):  # 120 random bits: a clash is a broken random source
            raise RuntimeError("API key id collision")
        record = ApiKey.from_stored(stored)
        self._keys[record.id] = record
        return record, secret

    def find(self, *, key_id: str | None = None, name: str | None = None, owner: str | None = None,
             active_only: bool = False) -> list[ApiKey]:
        now = time.time()
        found = []
        for k in sorted(self._keys.values(), key=lambda k: k.created_at):
            if key_id is not None and k.id != key_id:
                continue
            if name is not None and not fnmatch.fnmatchcase(k.name, name):
                continue
            if owner is not None and k.owner != owner:
                continue
            if active_only and not k.active(now):
                continue
            found.append(k)
        return found

    async def invalidate(self, ids: list[str]) -> tuple[list[str], list[str]]:
        """(invalidated now, invalidated before): as ES's invalidate API answers."""
        known = [i for i in ids if i in self._keys]
        done = await self._store.invalidate_keys(known, time.time()) if known else []
        await self.load()
        return done, [i for i in known if i not in done]


def encoded(key: ApiKey, secret: str) -> str:
    return base64.b64encode(f"{key.id}:{secret}".encode()).decode()
