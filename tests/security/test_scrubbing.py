"""An upstream that echoes the endpoint's key, plainly or encoded, never gets it to the client:
not in `/_inference` errors, not in `/v1` errors, not in an error event in the middle of a stream."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
from aiohttp import web

from proxy import appkeys
from proxy.server import create_app
from tests.conftest import make_settings

# characters that change under every encoding: `/` and `+` (base64 alphabets, percent-encoding),
# `"` and `\` (JSON escapes), `=` and a space
SECRET = 'sk-live/Ab+Cd=E"f\\g h0123456789xyz'

ENCODINGS = {
    "plain": lambda s: s,
    "json": lambda s: json.dumps(s)[1:-1],
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64url": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "basic-header": lambda s: base64.b64encode(f"user:{s}".encode()).decode(),  # the key inside a longer value
    "percent": lambda s: quote(s, safe=""),
    "percent-lower": lambda s: quote(s, safe="").replace("%2F", "%2f").replace("%2B", "%2b"),
    "form": lambda s: quote_plus(s, safe=""),
}


def leaks(text: str) -> list[str]:
    """Which encodings of the secret (or a long piece of one) appear in `text`."""
    found = []
    for name, encode in ENCODINGS.items():
        form = encode(SECRET)
        if name == "basic-header":
            form = form[8:-4]  # the middle of base64("user:" + key) depends on the key alone
        if form in text:
            found.append(name)
    return found


class EchoingUpstream:
    """An OpenAI-format upstream that puts the caller's key, encoded as the test asks, in its errors."""

    def __init__(self) -> None:
        self.encoding = "plain"
        self.mid_stream = False

    def _echo(self, request: web.Request) -> str:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        return f"Incorrect API key provided: {ENCODINGS[self.encoding](key)}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        message = self._echo(request)
        if not self.mid_stream:
            return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=401)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"
                             .encode())
        await response.write_eof()
        return response


@pytest.fixture
async def echoing():
    upstream = EchoingUpstream()
    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", upstream.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream.url = f"http://127.0.0.1:{runner.addresses[0][1]}"  # type: ignore[attr-defined]
    yield upstream
    await runner.cleanup()


@pytest.fixture
async def http(gateway, echoing):
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/")),
                                     timeout=aiohttp.ClientTimeout(total=20)) as session:
        for task, inference_id, path in (("text_embedding", "emb", "embeddings"),
                                         ("completion", "comp", "chat/completions")):
            body = {"service": "openai", "service_settings": {"api_key": SECRET, "model_id": "m",
                                                              "url": f"{echoing.url}/v1/{path}"}}
            async with session.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
                assert resp.status == 200, await resp.text()
        yield session


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
async def test_errors_never_echo_the_key(http, echoing, encoding):
    echoing.encoding = encoding
    calls = [("/_inference/text_embedding/emb", {"input": "hi"}),
             ("/v1/embeddings", {"model": "emb", "input": "hi"}),
             ("/_inference/completion/comp", {"input": "hi"}),
             ("/v1/chat/completions", {"model": "comp", "messages": [{"role": "user", "content": "hi"}]})]
    for path, body in calls:
        async with http.post(path, json=body) as resp:
            text = await resp.text()
            assert resp.status == 401, text
        assert "Incorrect API key provided" in text  # the message itself gets through
        assert leaks(text) == [], (path, text)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
async def test_stream_error_events_never_echo_the_key(http, echoing, encoding):
    echoing.encoding = encoding
    echoing.mid_stream = True
    for path, body in (("/_inference/completion/comp/_stream", {"input": "hi"}),
                       ("/v1/chat/completions", {"model": "comp", "stream": True,
                                                 "messages": [{"role": "user", "content": "hi"}]})):
        async with http.post(path, json=body) as resp:
            assert resp.status == 200
            text = await resp.text()
        assert "Incorrect API key provided" in text, text  # the in-band error event came through
        assert leaks(text) == [], (path, text)


async def test_unexpected_errors_are_logged_without_the_key(tmp_path, aiohttp_server, caplog):
    """A bug whose exception quotes what an upstream sent: the traceback in the log is scrubbed too.
    The route that raises is the test's; the gateway around it (middlewares, registry, log) is real."""
    app = create_app(make_settings(tmp_path))

    async def buggy(request: web.Request) -> web.Response:
        request[appkeys.ENDPOINT] = request.app[appkeys.REGISTRY].get("emb")
        raise RuntimeError(f"unexpected answer {ENCODINGS['base64'](SECRET)} / {ENCODINGS['percent'](SECRET)}")

    app.router.add_post("/_inference/_test_bug", buggy)
    gateway = await aiohttp_server(app)
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/"))) as http:
        body = {"service": "openai", "service_settings": {"api_key": SECRET, "model_id": "m"}}
        async with http.put("/_inference/text_embedding/emb", json=body) as resp:
            assert resp.status == 200
        async with http.post("/_inference/_test_bug") as resp:
            assert resp.status == 500
            assert leaks(await resp.text()) == []
    assert "unexpected answer" in caplog.text and "RuntimeError" in caplog.text
    assert leaks(caplog.text) == [], caplog.text
