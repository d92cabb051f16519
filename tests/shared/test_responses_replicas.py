"""Responses API responses kept in the shared store: a response made through one replica is read, listed,
continued (`previous_response_id`) and deleted through another on one PostgreSQL database, only with the
key that made it, and the conversation is sealed in the table."""

from __future__ import annotations

import asyncpg
import openai
import pytest

from tests.shared.conftest import new_key
from tests.shared.test_keys_shared import _cli_key


async def _key(session, gw, admin, name):
    async with session.post(gw.base + "/_security/api_key", headers=admin, json={"name": name}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["encoded"]


@pytest.mark.slow
async def test_previous_response_id_across_replicas(gateways, session, pg_dsn, upstream, tmp_path):
    secret = new_key()
    one = gateways("one", store=pg_dsn, secret_key=secret)
    two = gateways("two", store=pg_dsn, secret_key=secret)
    for gw in (one, two):
        await gw.wait_ready(session)
    body = {"service": "openai", "service_settings": {"api_key": upstream.api_key, "model_id": "gpt-test",
                                                      "url": f"{upstream.url}/v1/chat/completions"}}
    async with session.put(one.base + "/_inference/chat_completion/chat", json=body) as resp:
        assert resp.status == 200, await resp.text()
    root = _cli_key(pg_dsn, tmp_path)
    admin = {"Authorization": f"ApiKey {root}"}
    alice, bob = await _key(session, one, admin, "alice"), await _key(session, one, admin, "bob")

    def client(gw, key):
        return openai.AsyncOpenAI(base_url=gw.base + "/v1", api_key=key, max_retries=0)

    async with client(one, alice) as a1, client(two, alice) as a2, client(two, bob) as b2:
        first = await a1.responses.create(model="chat", input="launch codes 1234")
        second = await a2.responses.create(model="chat", input="and then?", previous_response_id=first.id)
        assert upstream.requests[-1]["messages"] == [
            {"role": "user", "content": "launch codes 1234"}, {"role": "assistant", "content": "LAUNCH CODES 1234"},
            {"role": "user", "content": "and then?"}]
        assert (await a1.responses.retrieve(second.id)).output_text == second.output_text
        items = [i.id async for i in a1.responses.input_items.list(second.id, order="asc")]
        assert items[1] == first.output[0].id and len(items) == 3
        for call in (b2.responses.retrieve(first.id), b2.responses.input_items.list(first.id),
                     b2.responses.create(model="chat", input="x", previous_response_id=first.id)):
            with pytest.raises(openai.NotFoundError):
                await call
        await a2.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            await a1.responses.retrieve(first.id)

    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT id, owner, body FROM responses")
    finally:
        await conn.close()
    assert [r["id"] for r in rows] == [second.id]
    assert b"launch codes" not in bytes(rows[0]["body"]) and b"LAUNCH" not in bytes(rows[0]["body"])
