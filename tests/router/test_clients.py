"""The official `elasticsearch` and `openai` clients through a router: it is an ordinary endpoint to them."""

from __future__ import annotations

import openai
import pytest
from elasticsearch import ConflictError

from tests.fakes.openai_upstream import FakeOpenAI, fake_vector
from tests.fakes.server import LiveServer

from .test_failover import answer


@pytest.fixture
async def fake():
    upstream = FakeOpenAI()
    server = await LiveServer(upstream.app()).start()
    upstream.url = server.url  # type: ignore[attr-defined]
    yield upstream
    await server.stop()


def settings(url: str, path: str, api_key: str, **extra) -> dict:
    return {"api_key": api_key, "model_id": "m", "url": url + path, **extra}


async def _endpoints(es, fake, broken) -> None:
    """`down-*` on an upstream that answers 503 first, `up-*` on the OpenAI fake, routers `any-*` over both."""
    for task, path in (("text_embedding", "/v1/embeddings"), ("chat_completion", "/v1/chat/completions"),
                       ("completion", "/v1/chat/completions")):
        extra = {"dimensions": 8} if task == "text_embedding" else {}
        short = task.split("_")[0]
        await es.inference.put(task_type=task, inference_id=f"down-{short}", inference_config={
            "service": "openai", "service_settings": settings(broken.url, path, "sk-x", **extra)})
        await es.inference.put(task_type=task, inference_id=f"up-{short}", inference_config={
            "service": "openai", "service_settings": settings(fake.url, path, fake.api_key, **extra)})
        await es.inference.put(task_type=task, inference_id=f"any-{short}", inference_config={
            "service": "router", "service_settings": {"targets": [f"down-{short}", f"up-{short}"]}})


async def test_the_elasticsearch_client(es, fake, upstreams):
    broken = await upstreams()
    await _endpoints(es, fake, broken)
    got = await es.inference.get(inference_id="any-text")
    assert got["endpoints"][0]["service"] == "router"
    assert got["endpoints"][0]["service_settings"]["dimensions"] == 8
    broken.plan(answer(503), times=3)
    emb = await es.inference.text_embedding(inference_id="any-text", input=["hello"])
    assert emb["text_embedding"][0]["embedding"] == pytest.approx(fake_vector("hello"), abs=1e-6)
    comp = await es.inference.completion(inference_id="any-completion", input="hello")
    assert comp["completion"][0]["result"] == "HELLO"
    chat = await es.inference.inference(task_type="chat_completion", inference_id="any-chat",
                                        body={"messages": [{"role": "user", "content": "hello"}]})
    assert chat["choices"][0]["message"]["content"] == "HELLO" and broken.requests == 3
    updated = await es.inference.update(inference_id="any-chat", inference_config={
        "service_settings": {"strategy": "round_robin"}})
    assert updated["service_settings"]["strategy"] == "round_robin"
    with pytest.raises(ConflictError) as exc:
        await es.inference.delete(inference_id="up-text")
    assert "is referenced by routers: [any-text]" in str(exc.value)
    dry = await es.inference.delete(inference_id="up-text", dry_run=True)
    assert dry["acknowledged"] is False and dry["routers"] == ["any-text"]
    assert (await es.inference.delete(inference_id="up-text", force=True))["acknowledged"] is True


async def test_the_openai_client(es, gateway, fake, upstreams):
    broken = await upstreams()
    await _endpoints(es, fake, broken)
    broken.plan(answer(503), times=3)
    async with openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="unused", max_retries=0) as client:
        raw = await client.embeddings.with_raw_response.create(model="any-text", input=["hello", "world"])
        assert raw.headers["x-inference-target"] == "up-text"
        vectors = [d.embedding for d in raw.parse().data]
        assert vectors[1] == pytest.approx(fake_vector("world"), abs=1e-6)
        raw = await client.chat.completions.with_raw_response.create(
            model="any-chat", messages=[{"role": "user", "content": "hello"}])
        assert raw.headers["x-inference-target"] == "up-chat"
        chat = raw.parse()
        assert chat.model == "any-chat" and chat.choices[0].message.content == "HELLO"
        stream = await client.chat.completions.create(model="any-completion", stream=True,
                                                      messages=[{"role": "user", "content": "hi"}])
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert "H" in text and "I" in text
        models = {m.id: m.owned_by for m in (await client.models.list()).data}
        assert models["any-chat"] == "router"
    assert broken.requests == 3
