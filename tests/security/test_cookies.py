"""Cookies an upstream sets never travel with a later upstream request (the transport is shared by every
endpoint and tenant)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from proxy.server import create_app
from tests.conftest import make_settings


async def test_a_cookie_set_by_an_upstream_is_not_sent_back(aiohttp_server, tmp_path):
    seen: list[str | None] = []

    async def embeddings(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        body = await request.json()
        response = web.json_response({"object": "list", "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1},
                                      "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}
                                               for _ in ([body["input"]] if isinstance(body["input"], str)
                                                         else body["input"])]})
        response.set_cookie("session", "tenant-a-secret", path="/")
        return response

    upstream_app = web.Application()
    upstream_app.router.add_post("/v1/embeddings", embeddings)
    upstream = await aiohttp_server(upstream_app)
    gateway = await aiohttp_server(create_app(make_settings(tmp_path)))
    base = str(gateway.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        for ep in ("tenant-a", "tenant-b"):
            # a host name: aiohttp's default jar ignores cookies of IP addresses, so 127.0.0.1 would hide the leak
            url = f"http://localhost:{upstream.port}/v1/embeddings"
            body = {"service": "openai", "service_settings": {"api_key": "k", "model_id": "m", "url": url}}
            async with http.put(f"{base}/_inference/text_embedding/{ep}", json=body) as resp:
                assert resp.status == 200, await resp.text()
        for ep in ("tenant-a", "tenant-b"):
            async with http.post(f"{base}/_inference/text_embedding/{ep}", json={"input": "x"}) as resp:
                assert resp.status == 200, await resp.text()
                assert "Set-Cookie" not in resp.headers
    assert seen == [None, None]
