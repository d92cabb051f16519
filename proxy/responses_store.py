"""Stored Responses API responses (`store: true`), for `GET`/`DELETE /v1/responses/{id}`, their input items
and `previous_response_id`.

They live in the gateway's store (`responses` table, SQLite or PostgreSQL), so every replica sharing it
continues any response. A row holds the rendered response and its input items (the whole conversation
that went into it, instructions apart, as `GET /v1/responses/{id}/input_items` lists it), so a follow-up
needs one read. Conversations are the users' data: the row is sealed with the endpoints' `SecretBox`
(AES-GCM bound to the response id) and carries in clear only its id, the id of the API key that made it
(another key neither reads, continues, lists nor deletes it) and its time.

A response is kept `responses_retention_s` (30 days, as OpenAI keeps a stored response): older ones read
as absent, and each process sweeps them out of the store at most once per `_SWEEP_EVERY` when it writes.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from .secrets import SecretBox
from .store import Store, StoredResponse


class _Sealed(msgspec.Struct, kw_only=True):
    response: dict[str, Any]
    items: list[dict[str, Any]]


_decoder = msgspec.json.Decoder(_Sealed)


_SWEEP_EVERY = 3600.0


class ResponseStore:
    def __init__(self, store: Store, box: SecretBox, retention_s: float) -> None:
        self._store = store
        self._box = box
        self._retention_s = retention_s
        self._next_sweep = 0.0

    async def put(self, response: dict[str, Any], items: list[dict[str, Any]], owner: str) -> None:
        """`owner`: the id of the API key that made the response ("" while access control is off)."""
        plain = msgspec.json.encode(_Sealed(response=response, items=items))
        now = time.time()
        await self._store.put_response(StoredResponse(id=response["id"], owner=owner, created_at=now,
                                                      body=self._box.seal(plain, _context(response["id"]))))
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY
            await self._store.delete_responses_before(now - self._retention_s)

    async def get(self, response_id: str, owner: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        row = await self._store.get_response(response_id, owner)
        if row is None or row.created_at < time.time() - self._retention_s:
            return None
        sealed = _decoder.decode(self._box.open(row.body, _context(row.id)))
        return sealed.response, sealed.items

    async def delete(self, response_id: str, owner: str) -> bool:
        return await self._store.delete_response(response_id, owner)


def _context(response_id: str) -> str:
    return f"response:{response_id}"
