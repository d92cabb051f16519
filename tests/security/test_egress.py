"""SSRF: url settings are validated at PUT with Elasticsearch's message, and every upstream
connection passes the egress policy after DNS resolution; a gateway calling itself is refused."""

from __future__ import annotations

import time

import aiohttp
import pytest
from aiohttp import web

from proxy.server import create_app
from tests.conftest import make_settings

# in-process gateway: these run the real app on a loopback port (tests/conftest.py `gateway`)


@pytest.fixture
async def http(gateway):
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/")),
                                     timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


def openai_body(url: str, key: str = "sk-test-key") -> dict:
    return {"service": "openai", "service_settings": {"api_key": key, "model_id": "text-embedding-3-small",
                                                      "url": url}}


async def put(http, inference_id: str, body: dict, task: str = "text_embedding") -> tuple[int, dict]:
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        return resp.status, await resp.json()


async def embed(http, inference_id: str) -> tuple[int, dict]:
    async with http.post(f"/_inference/text_embedding/{inference_id}", json={"input": "hello"}) as resp:
        return resp.status, await resp.json()


# ------------------------------------------------------------------------------ url validation


@pytest.mark.parametrize("url, error", [
    ("", "[service_settings] Invalid value empty string. [url] must be a non-empty string"),
    # ES ServiceUtils.createUri: java.net.URI("not a url") fails with "Illegal character in path"
    ("not a url", "[service_settings] Invalid url [not a url] received for field [url]. Error: unable to parse url "
                  "[not a url]. Reason: Illegal character in path"),
    ("file:///etc/passwd", "[service_settings] Invalid url [file:///etc/passwd] received for field [url]. Error: "
                           "only http and https urls can be called"),
    ("gopher://127.0.0.1:6379/_INFO", "[service_settings] Invalid url [gopher://127.0.0.1:6379/_INFO] received for "
                                      "field [url]. Error: only http and https urls can be called"),
    ("http://", "[service_settings] Invalid url [http://] received for field [url]. Error: the url has no host"),
])
async def test_bad_urls_are_refused_at_put(http, url, error):
    status, body = await put(http, "bad-url", openai_body(url))
    assert status == 400, body
    assert body["error"]["type"] == "validation_exception"
    assert body["error"]["reason"] == f"Validation Failed: 1: {error};"
    async with http.get("/_inference/bad-url") as resp:
        assert resp.status == 404


async def test_a_custom_service_url_is_validated_and_may_hold_placeholders(http):
    custom = {"service": "custom", "service_settings": {
        "url": "file:///etc/passwd", "secret_parameters": {"api_key": "sk-custom-secret"},
        "request": '{"input": ${input}}', "response": {"json_parser": {"text_embeddings": "$.data[*].embedding"}}}}
    status, body = await put(http, "custom-file", custom)
    assert status == 400 and "only http and https urls" in body["error"]["reason"], body
    custom["service_settings"]["url"] = "https://upstream.example/${model}/embed"
    custom["task_settings"] = {"parameters": {"model": "m"}}
    status, body = await put(http, "custom-ok", custom)
    assert status == 200, body


async def test_update_refuses_a_bad_url_and_keeps_the_endpoint(http, upstream):
    status, _ = await put(http, "upd", openai_body(f"{upstream.url}/v1/embeddings"))
    assert status == 200
    async with http.put("/_inference/upd/_update", json={"service_settings": {"url": "file:///etc/passwd"}}) as resp:
        assert resp.status == 400
    async with http.get("/_inference/upd") as resp:
        assert (await resp.json())["endpoints"][0]["service_settings"]["url"] == f"{upstream.url}/v1/embeddings"


# ------------------------------------------------------------------------------ egress policy


async def test_cloud_metadata_is_never_called(http):
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/meta-data/",
                "http://[::ffff:169.254.169.254]/latest/meta-data/"):
        status, _ = await put(http, "meta", openai_body(url))
        assert status == 200
        started = time.monotonic()
        status, body = await embed(http, "meta")
        assert status == 403, body
        assert "denied by the gateway's egress policy" in body["error"]["reason"], body
        assert time.monotonic() - started < 5  # refused, not retried until the deadline
        async with http.delete("/_inference/meta") as resp:
            assert resp.status == 200


async def test_the_check_applies_to_the_resolved_address(http, gateway):
    # `localhost` is a name: only after resolution is it the gateway's own loopback address and port
    status, _ = await put(http, "self-by-name", openai_body(f"http://localhost:{gateway.port}/v1/embeddings"))
    assert status == 200
    status, body = await embed(http, "self-by-name")
    assert status == 403, body
    assert "the gateway's own listening address" in body["error"]["reason"]


async def test_a_loop_through_another_hop_is_detected(http, gateway):
    """The endpoint calls a relay that forwards to the gateway: the gateway sees its own Via token."""
    seen = []

    async def relay(request: web.Request) -> web.Response:
        seen.append(request.path)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("via", "authorization", "content-type")}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{gateway.port}/v1/embeddings", data=await request.read(),
                                    headers=headers) as resp:
                return web.Response(body=await resp.read(), status=resp.status, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/embeddings", relay)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        body = openai_body(f"http://127.0.0.1:{port}/v1/embeddings")
        body["service_settings"]["model_id"] = "looping"
        assert (await put(http, "looping", body))[0] == 200
        started = time.monotonic()
        status, answer = await embed(http, "looping")
        assert time.monotonic() - started < 10
        assert status >= 400, answer
        assert "came back to the gateway that sent it" in answer["error"]["reason"], answer
        assert seen == ["/v1/embeddings"]  # one hop, then refused: no cascade
    finally:
        await runner.cleanup()


async def _embed_through(tmp_path, aiohttp_server, upstream, **policy) -> tuple[int, dict]:
    gateway = await aiohttp_server(create_app(make_settings(tmp_path, **policy)))
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/"))) as http:
        assert (await put(http, "emb", openai_body(f"{upstream.url}/v1/embeddings")))[0] == 200
        return await embed(http, "emb")


async def test_loopback_upstreams_are_allowed_by_default(tmp_path, aiohttp_server, upstream):
    status, body = await _embed_through(tmp_path, aiohttp_server, upstream)
    assert status == 200, body


async def test_private_ranges_can_be_denied(tmp_path, aiohttp_server, upstream):
    status, body = await _embed_through(tmp_path, aiohttp_server, upstream, egress_deny_private=True)
    assert status == 403 and "egress_deny_private" in body["error"]["reason"], body
    assert upstream.requests == []


async def test_only_listed_networks_can_be_allowed(tmp_path, aiohttp_server, upstream):
    status, body = await _embed_through(tmp_path, aiohttp_server, upstream, egress_allow=["10.0.0.0/8"])
    assert status == 403 and "outside egress_allow" in body["error"]["reason"], body
    status, body = await _embed_through(tmp_path / "b", aiohttp_server, upstream, egress_allow=["127.0.0.0/8"])
    assert status == 200, body
