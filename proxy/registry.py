"""Inference endpoints: create, read, update, delete, with ES validation and durable storage.

Reads come from an in-memory map; every write goes to the store first and reaches the map only
once the store acknowledged it, so what a client was told is what a restart finds.

When other processes write to the same store (replicas on PostgreSQL, workers on one SQLite file),
the store's change feed names the ids they changed and `follow` reloads those ids from the store,
one at a time on one task, so the map converges on the store within the feed's delay.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Awaitable, Callable, Iterable

import msgspec
from cryptography.exceptions import InvalidTag

from . import catalogue, routing
from .catalogue import Service
from .endpoint import Endpoint
from .errors import AlreadyExistsError, NotFoundError, RequestValidationError, StatusError
from .secrets import SecretBox
from .store import StartupError, Store, StoredEndpoint, is_document_id
from .types import TaskType
from .validation import ValidatedConfig, unknown_settings_error, validate_create, validate_update

_MAX_DOC_ID_BYTES = 512  # ES IndexRequest: an _id longer than this is refused
_VALID_ID = re.compile(r"[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?")
log = logging.getLogger("proxy.registry")
_BODY_KEYS = ("task_type", "service", "service_settings", "task_settings", "chunking_settings")


class _PublicConfig(msgspec.Struct):
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = {}
    chunking_settings: dict[str, Any] | None = None


_config_encoder = msgspec.json.Encoder()
_config_decoder = msgspec.json.Decoder(_PublicConfig)

# Hook for services served locally: raises a GatewayError when the model cannot be served.
LocalCheck = Callable[[Service, TaskType, ValidatedConfig], None]
ChangeListener = Callable[[str, "Endpoint | None"], None]


class Registry:
    def __init__(self, store: Store, box: SecretBox, *, preconfigured: Iterable[Endpoint] = (),
                 local_check: LocalCheck | None = None) -> None:
        self._store = store
        self._box = box
        self._endpoints: dict[str, Endpoint] = {}
        self._preconfigured = {e.inference_id: e for e in preconfigured}
        self._local_check = local_check
        self._listeners: list[ChangeListener] = []
        self._pending: set[str] = set()  # ids with a write in flight: one writer per id at a time
        # what the store holds as far as this process knows, to tell real remote changes from echoes
        self._stored: dict[str, StoredEndpoint] = {}
        self._generation = 0  # bumped by every local write; _touched: id -> generation of its last one
        self._touched: dict[str, int] = {}
        self._remote: set[str] = set()  # ids reported changed elsewhere, not yet reloaded
        self._remote_all = False  # the feed could not say which: compare everything
        self._wake = asyncio.Event()
        self._follower: asyncio.Task | None = None
        self._documents: dict[str, bytes] = {}  # gateway-wide documents (the region policy), by id
        self._document_lock = asyncio.Lock()  # one document write or reload at a time

    # ------------------------------------------------------------------ persistence

    def _to_record(self, ep: Endpoint) -> StoredEndpoint:
        config = _config_encoder.encode(_PublicConfig(ep.service_settings, ep.task_settings, ep.chunking_settings))
        sealed = self._box.seal(_config_encoder.encode(ep.secrets), ep.inference_id)
        return StoredEndpoint(inference_id=ep.inference_id, task_type=ep.task_type.value, service=ep.service,
                              config=config, secrets=sealed)

    def _from_record(self, rec: StoredEndpoint) -> Endpoint:
        cfg = _config_decoder.decode(rec.config)
        secrets = msgspec.json.decode(self._box.open(rec.secrets, rec.inference_id))
        return Endpoint(inference_id=rec.inference_id, task_type=TaskType(rec.task_type), service=rec.service,
                        service_settings=cfg.service_settings, task_settings=cfg.task_settings,
                        chunking_settings=cfg.chunking_settings, secrets=secrets)

    async def load(self) -> None:
        records = await self._store.load_all()
        endpoints = {}
        for r in records:
            try:
                endpoints[r.inference_id] = self._from_record(r)
            except InvalidTag:
                raise StartupError(
                    f"the secrets of inference endpoint [{r.inference_id}] cannot be opened with this gateway's "
                    f"secret key: every gateway sharing a store must use the same INFERENCE_PROXY_SECRET_KEY "
                    f"(or the same key file)") from None
        self._endpoints = endpoints
        self._stored = {r.inference_id: r for r in records}
        self._documents = await self._store.load_documents()

    # ------------------------------------------------------------------ changes made elsewhere

    async def follow(self) -> None:
        """Subscribe to the store's change feed, if it has one, and apply what it reports."""
        watch = getattr(self._store, "watch", None)
        if watch is None:
            return
        await watch(self._remote_change)
        self._follower = asyncio.create_task(self._follow(), name="registry-follow")
        self._remote_change(None)  # whatever changed between `load` and the subscription

    def _remote_change(self, inference_id: str | None) -> None:
        if inference_id is None:
            self._remote_all = True
        else:
            self._remote.add(inference_id)
        self._wake.set()

    async def _follow(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self._remote_all:
                    self._remote_all = False
                    self._remote.clear()
                    await self._resync()
                while self._remote and not self._remote_all:
                    await self.refresh(self._remote.pop())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is away: try again shortly, with everything
                log.warning("could not apply endpoint changes from the store (%s: %s); retrying",
                            type(exc).__name__, exc)
                self._remote_all = True
                await asyncio.sleep(1.0)
                self._wake.set()

    def _stale(self, inference_id: str) -> None:
        """The store disagreed with the map (another process got there first): reload that id."""
        if self._follower is not None:
            self._remote_change(inference_id)

    def _touch(self, inference_id: str) -> None:
        self._generation += 1
        self._touched[inference_id] = self._generation

    def _settled(self, inference_id: str, since: int) -> bool:
        """No local write to this id started or finished since generation `since`."""
        return inference_id not in self._pending and self._touched.get(inference_id, 0) <= since

    async def refresh(self, inference_id: str) -> None:
        """Reload one endpoint from the store, after another process changed or deleted it."""
        if is_document_id(inference_id):
            await self._reload_document(inference_id)
            return
        for _ in range(50):
            while inference_id in self._pending:
                await asyncio.sleep(0.005)
            since = self._generation
            record = await self._store.get(inference_id)
            if self._settled(inference_id, since):
                self._apply(inference_id, record)
                return
        log.warning("endpoint [%s] kept changing locally; its remote change waits for the next one", inference_id)

    async def _resync(self) -> None:
        """Compare the whole store with the map and apply the differences."""
        async with self._document_lock:
            self._documents = await self._store.load_documents()
        since = self._generation
        records = {r.inference_id: r for r in await self._store.load_all()}
        later: list[str] = []
        for inference_id in set(records) | set(self._stored):
            if not self._settled(inference_id, since):
                later.append(inference_id)  # a local write raced the read: ask again for this one
            else:
                self._apply(inference_id, records.get(inference_id))
        for inference_id in later:
            await self.refresh(inference_id)

    def _apply(self, inference_id: str, record: StoredEndpoint | None) -> None:
        if record is None:
            self._stored.pop(inference_id, None)
            if self._endpoints.pop(inference_id, None) is not None:
                self._changed(inference_id, None)
            return
        if self._stored.get(inference_id) == record:
            return
        try:
            ep = self._from_record(record)
        except InvalidTag:
            log.error("the secrets of inference endpoint [%s], changed by another gateway, cannot be opened with "
                      "this gateway's secret key: every gateway sharing a store must use the same "
                      "INFERENCE_PROXY_SECRET_KEY", inference_id)
            return
        except Exception as exc:
            log.error("inference endpoint [%s] in the store cannot be read (%s: %s); keeping the previous version",
                      inference_id, type(exc).__name__, exc)
            return
        self._stored[inference_id] = record
        self._endpoints[inference_id] = ep
        self._changed(inference_id, ep)

    def add_listener(self, listener: ChangeListener) -> None:
        """Called after every acknowledged change with (id, endpoint or None when deleted)."""
        self._listeners.append(listener)

    def _changed(self, inference_id: str, ep: Endpoint | None) -> None:
        for listener in self._listeners:
            listener(inference_id, ep)

    # ------------------------------------------------------------------ documents

    async def _reload_document(self, doc_id: str) -> None:
        async with self._document_lock:
            body = await self._store.get_document(doc_id)
            if body is None:
                self._documents.pop(doc_id, None)
            else:
                self._documents[doc_id] = body

    def document(self, doc_id: str) -> bytes | None:
        return self._documents.get(doc_id)

    async def put_document(self, doc_id: str, body: bytes) -> None:
        async with self._document_lock:
            await self._store.put_document(doc_id, body)
            self._documents[doc_id] = body

    async def delete_document(self, doc_id: str) -> bool:
        async with self._document_lock:
            found = await self._store.delete_document(doc_id)
            self._documents.pop(doc_id, None)
            return found

    # ------------------------------------------------------------------ reads

    def get(self, inference_id: str) -> Endpoint | None:
        return self._endpoints.get(inference_id) or self._preconfigured.get(inference_id)

    def require(self, inference_id: str) -> Endpoint:
        ep = self.get(inference_id)
        if ep is None:
            raise NotFoundError(f"Inference endpoint not found [{inference_id}]")
        return ep

    def all(self) -> list[Endpoint]:
        merged = {**self._preconfigured, **self._endpoints}
        return [merged[k] for k in sorted(merged)]

    def find(self, inference_id: str, task: TaskType | None) -> list[Endpoint]:
        """GET semantics: `_all`, `*` or empty mean every endpoint; a task type filters."""
        if inference_id in ("", "_all", "*"):
            found = self.all()
            return [e for e in found if task is None or e.task_type == task]
        ep = self.require(inference_id)
        if task is not None and ep.task_type != task:
            raise StatusError(f"Requested task type [{task.value}] does not match the inference endpoint's "
                              f"task type [{ep.task_type.value}]")
        return [ep]

    # ------------------------------------------------------------------ writes

    def _check_new_id(self, inference_id: str) -> None:
        # ES checks the id pattern in Request.validate(), before the transport action's reserved-id check,
        # so a `.`-prefixed id (default endpoints included) fails the pattern first.
        if not _VALID_ID.fullmatch(inference_id) or inference_id == "_all":
            raise RequestValidationError(
                f"Invalid inference_id; '{inference_id}' can contain lowercase alphanumeric (a-z and 0-9), "
                f"hyphens or underscores; must start and end with alphanumeric")
        doc_id = f"model_{inference_id}"
        if len(doc_id.encode()) > _MAX_DOC_ID_BYTES:
            # ES stores an endpoint as document `model_<id>` (Model.documentId) in the .inference and
            # .secrets-inference indices, and IndexRequest.validate() refuses ids over 512 bytes; the bulk
            # request fails with both items' messages. ES wraps them in a 500 ("Failed to store inference
            # endpoint", ModelRegistry.storeModel); a client error is a 400 here, with ES's messages.
            message = f"id [{doc_id}] is too long, must be no longer than 512 bytes but was: {len(doc_id.encode())}"
            raise RequestValidationError([message, message])
        if inference_id in self._preconfigured:
            raise StatusError(f"[{inference_id}] is a reserved inference ID. Cannot create a new inference "
                              f"endpoint with a reserved ID.")

    def _claim(self, inference_id: str, *, exists_error: bool) -> None:
        if inference_id in self._pending:
            if exists_error:
                raise AlreadyExistsError(f"Inference endpoint [{inference_id}] already exists")
            raise StatusError(f"Endpoint [{inference_id}] is currently being updated. Try again once the update "
                              f"completes", status=409)
        self._pending.add(inference_id)

    async def create(self, inference_id: str, url_task: TaskType | None, body: dict[str, Any],
                     check: Callable[[Endpoint], Awaitable[Endpoint]] | None = None) -> Endpoint:
        """Validate and store a new endpoint; `check` (the test inference at PUT) may refuse or complete it."""
        self._check_new_id(inference_id)
        task = _resolve_task(url_task, body.get("task_type"))
        service_name = body.get("service")
        if service_name is None:
            raise StatusError("Inference endpoint configuration is missing the [service] setting")
        spec = catalogue.lookup(service_name) if isinstance(service_name, str) else None
        if spec is None:
            raise StatusError(f"Unknown service [{service_name}]")
        if task not in spec.tasks:
            raise StatusError(f"The [{spec.name}] service does not support task type [{task.value}]")
        leftover = {k: v for k, v in body.items() if k not in _BODY_KEYS}
        if leftover:
            raise unknown_settings_error(leftover, spec.name)
        cfg = validate_create(spec, task, body.get("service_settings"), body.get("task_settings"),
                              body.get("chunking_settings"))
        if spec.local and self._local_check is not None:
            self._local_check(spec, task, cfg)
        if inference_id in self._endpoints:
            raise AlreadyExistsError(f"Inference endpoint [{inference_id}] already exists")
        if spec.composite:
            cfg.service_settings = routing.check(inference_id, task, cfg.service_settings, self.get)
        ep = Endpoint(inference_id=inference_id, task_type=task, service=spec.name,
                      service_settings=cfg.service_settings, task_settings=cfg.task_settings,
                      chunking_settings=cfg.chunking_settings, secrets=cfg.secrets)
        if check is not None:
            ep = await check(ep)
            if inference_id in self._endpoints:  # created elsewhere while the check ran
                raise AlreadyExistsError(f"Inference endpoint [{inference_id}] already exists")
        self._claim(inference_id, exists_error=True)
        record = self._to_record(ep)
        try:
            if not await self._store.insert(record):
                self._stale(inference_id)
                raise AlreadyExistsError(f"Inference endpoint [{inference_id}] already exists")
        finally:
            self._pending.discard(inference_id)
            self._touch(inference_id)
        self._stored[inference_id] = record
        self._endpoints[inference_id] = ep
        self._changed(inference_id, ep)
        return ep

    async def update(self, inference_id: str, url_task: TaskType | None, body: dict[str, Any]) -> Endpoint:
        if inference_id.startswith(".") or inference_id in self._preconfigured:
            raise StatusError(f"Default endpoint [{inference_id}] cannot be updated")
        current = self.require(inference_id)
        body_task = body.get("task_type")
        if url_task is not None and url_task != current.task_type:
            raise StatusError("Task type must match the task type of the existing endpoint")
        if body_task is not None and TaskType.parse(str(body_task)) != current.task_type:
            raise StatusError("Task type must match the task type of the existing endpoint")
        service_name = body.get("service")
        if service_name is not None and catalogue.lookup(str(service_name)) is not current.spec:
            raise StatusError(f"Service [{service_name}] does not match the service of the existing endpoint "
                              f"[{current.service}]")
        leftover = {k: v for k, v in body.items() if k not in _BODY_KEYS}
        if "chunking_settings" in body:
            leftover["chunking_settings"] = body["chunking_settings"]
        if leftover:
            raise unknown_settings_error(leftover, current.service)
        cfg = validate_update(current.spec, current.task_type, current.validated(), body.get("service_settings"),
                              body.get("task_settings"))
        if current.spec.composite:
            cfg.service_settings = routing.check(inference_id, current.task_type, cfg.service_settings, self.get)
        ep = msgspec.structs.replace(current, service_settings=cfg.service_settings, secrets=cfg.secrets,
                                     task_settings=cfg.task_settings)
        self._claim(inference_id, exists_error=False)
        record = self._to_record(ep)
        try:
            if not await self._store.replace(record):
                self._stale(inference_id)
                raise NotFoundError(f"Inference endpoint not found [{inference_id}]")
        finally:
            self._pending.discard(inference_id)
            self._touch(inference_id)
        self._stored[inference_id] = record
        self._endpoints[inference_id] = ep
        self._changed(inference_id, ep)
        return ep

    async def delete(self, inference_id: str, url_task: TaskType | None, *, dry_run: bool,
                     force: bool = False) -> dict[str, Any]:
        if inference_id in self._preconfigured:
            raise StatusError(f"[{inference_id}] is a reserved inference endpoint. Cannot delete a reserved "
                              f"inference endpoint.")
        ep = self.require(inference_id)
        if url_task is not None and url_task != ep.task_type:
            raise StatusError(f"Requested task type [{url_task.value}] does not match the inference endpoint's "
                              f"task type [{ep.task_type.value}]")
        # The gateway has no ingest pipelines or indices; routers are what may reference an endpoint, and
        # they are reported the way ES reports pipelines (TransportDeleteInferenceEndpointAction), in a
        # `routers` field of their own that appears only when there are some.
        routers = routing.users_of(inference_id, self.all())
        if dry_run:
            result: dict[str, Any] = {"acknowledged": False, "pipelines": [], "indexes": []}
            if routers:
                result["routers"] = routers
                result["error_message"] = routing.referenced_error(inference_id, routers)
            return result
        if routers and not force:
            raise StatusError(routing.referenced_error(inference_id, routers), status=409)
        self._claim(inference_id, exists_error=False)
        try:
            if not await self._store.delete(inference_id):
                self._stale(inference_id)
                raise NotFoundError(f"Inference endpoint not found [{inference_id}]")
        finally:
            self._pending.discard(inference_id)
            self._touch(inference_id)
        self._stored.pop(inference_id, None)
        self._endpoints.pop(inference_id, None)
        self._changed(inference_id, None)
        return {"acknowledged": True, "pipelines": [], "indexes": []}

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        while self._pending:
            await asyncio.sleep(0.01)


def _resolve_task(url_task: TaskType | None, body_task: Any) -> TaskType:
    """ES `ServiceUtils.resolveTaskType`."""
    if body_task is None:
        if url_task is None:
            raise StatusError("model is missing required setting [task_type]")
        return url_task
    parsed = TaskType.parse(str(body_task))
    if str(body_task).lower() == "any":
        raise StatusError("task_type [any] is not valid type for inference")
    if parsed is None:
        raise StatusError(f"Unknown task_type [{body_task}]")
    if url_task is not None and parsed != url_task:
        raise StatusError(f"Cannot resolve conflicting task_type parameter in the request URL [{url_task.value}] "
                          f"and the request body [{parsed.value}]")
    return parsed
