"""The fuzzing harness: one live gateway per module in a background thread, a blocking client, and
the invariants every answer must satisfy.

The gateway runs the real application (`create_app`) under aiohttp's `AppRunner` on a loopback
port, in its own event loop and thread, so hypothesis drives it from plain synchronous tests. Every
service's origin points at a stub upstream in the same loop: OpenAI-format embeddings and chat
calls and any rerank get a well-formed answer (plain or streamed), anything else an instant 400.
So a request that passes validation never reaches the internet, never waits for a retry, and never
turns into a 502/503: whatever 5xx shows up is the gateway's own.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from hypothesis import event
from hypothesis.control import currently_in_test_context

from proxy.catalogue import SERVICES
from proxy.server import create_app
from tests.conftest import make_settings

BOM = "\ufeff".encode()
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
STUB_ERROR = {"error": {"message": "stub upstream refuses everything", "type": "invalid_request_error"}}


def is_openai_path(path: str) -> bool:
    """Which surface answers a path (server.py `_is_openai`): the decoded path decides."""
    p = urllib.parse.unquote(path.split("?", 1)[0])
    return p == "/v1" or p.startswith(("/v1/", "/v2/rerank", "/rerank"))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Req:
    method: str
    path: str  # already percent-encoded, with its query string
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        body = self.body if self.body is None or len(self.body) < 400 else self.body[:400] + b"..."
        return f"Req({self.method} {self.path} headers={self.headers} body={body!r})"


class Client:
    """A keep-alive HTTP/1.1 client (http.client): each call is one request, nothing added but Host,
    Accept-Encoding: identity and Content-Length."""

    def __init__(self, port: int, auth: str | None = None) -> None:
        self.port = port
        self.auth = auth  # the Authorization header of the harness's own calls (json())
        self.conn: http.client.HTTPConnection | None = None
        self.used = 0

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.used = 0
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def send(self, req: Req) -> Reply:
        for attempt in (0, 1):
            conn = self._connect()
            reused = self.used > 0
            try:
                conn.request(req.method, req.path, body=req.body if req.body is not None else None,
                             headers=req.headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if reused and attempt == 0:
                    continue  # a kept-alive connection the server had already closed: try once on a new one
                raise
            self.used += 1
            if resp.will_close:
                self.close()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.auth:
            headers["Authorization"] = self.auth
        return self.send(Req(method, path, data, headers))


# ---------------------------------------------------------------------- the gateway in a thread


def fixture_endpoints(stub: str) -> dict[str, tuple[str, dict]]:
    """id -> (task, PUT body): one endpoint per task and a few services, all served by the stub."""
    key = {"api_key": "sk-fuzz-secret-0000"}
    return {
        "emb": ("text_embedding", {"service": "openai", "service_settings": {**key, "model_id": "m"}}),
        "comp": ("completion", {"service": "openai", "service_settings": {**key, "model_id": "m"}}),
        "chat": ("chat_completion", {"service": "openai", "service_settings": {**key, "model_id": "m"}}),
        "rr": ("rerank", {"service": "cohere", "service_settings": {**key, "model_id": "m"}}),
        "co-emb": ("text_embedding", {"service": "cohere", "service_settings": {**key, "model_id": "m"}}),
        "anth": ("chat_completion", {"service": "anthropic", "service_settings": {**key, "model_id": "m"},
                                     "task_settings": {"max_tokens": 10}}),
        "anth-comp": ("completion", {"service": "anthropic", "service_settings": {**key, "model_id": "m"},
                                     "task_settings": {"max_tokens": 10}}),
        "gai": ("completion", {"service": "googleaistudio", "service_settings": {**key, "model_id": "m"}}),
        "voy": ("rerank", {"service": "voyageai", "service_settings": {**key, "model_id": "m"}}),
        "voy-emb": ("text_embedding", {"service": "voyageai", "service_settings": {**key, "model_id": "m"}}),
        "jina": ("embedding", {"service": "jinaai", "service_settings": {**key, "model_id": "m"}}),
        "osai": ("rerank", {"service": "openshift_ai", "service_settings": {**key, "url": f"{stub}/rerank"}}),
    }


class ThreadedGateway:
    def __init__(self, tmp_path, auth: str | None = None) -> None:
        self.tmp_path = tmp_path
        self.auth = auth
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="fuzz-gateway", daemon=True)
        self.stub_calls = 0
        self.port = 0
        self.stub_url = ""
        self.fixtures: dict[str, tuple[str, dict]] = {}
        self.baseline: list[dict] = []
        self.client: Client | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _call(self, coro, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _stub(self, request: web.Request) -> web.StreamResponse:
        """OpenAI-format calls get a well-formed answer (so rendering is fuzzed too); the rest a 400."""
        raw = await request.read()
        self.stub_calls += 1
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and request.path == "/v1/embeddings":
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else inputs
            if isinstance(inputs, list):
                data = [{"object": "embedding", "index": i, "embedding": [0.5, -0.25, 0.125]}
                        for i in range(len(inputs))]
                return web.json_response({"object": "list", "data": data, "model": "stub",
                                          "usage": {"prompt_tokens": 1, "total_tokens": 1}})
        if isinstance(body, dict) and request.path.endswith("rerank") and isinstance(body.get("documents"), list):
            results = [{"index": i, "relevance_score": 1.0 / (i + 1)} for i in range(len(body["documents"]))]
            return web.json_response({"id": "rerank-stub", "results": results})
        if isinstance(body, dict) and request.path == "/v1/chat/completions":
            base = {"id": "chatcmpl-stub", "created": 1, "model": "stub"}
            if not body.get("stream"):
                return web.json_response({**base, "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            chunk = {**base, "object": "chat.completion.chunk"}
            for payload in ({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "o"}}]},
                            {**chunk, "choices": [{"index": 0, "delta": {"content": "k"}, "finish_reason": "stop"}]},
                            {**chunk, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                               "total_tokens": 2}}):
                await resp.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        return web.json_response(STUB_ERROR, status=400)

    async def _start(self) -> None:
        stub = web.Application()
        stub.router.add_route("*", "/{tail:.*}", self._stub)
        self._stub_runner = web.AppRunner(stub, access_log=None)
        await self._stub_runner.setup()
        await web.TCPSite(self._stub_runner, "127.0.0.1", 0).start()
        self.stub_url = f"http://127.0.0.1:{self._stub_runner.addresses[0][1]}"
        settings = make_settings(self.tmp_path, upstreams={name: self.stub_url for name in SERVICES})
        self._runner = web.AppRunner(create_app(settings), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._stub_runner.cleanup()

    def __enter__(self) -> "ThreadedGateway":
        self.thread.start()
        self._call(self._start())
        self.client = Client(self.port, self.auth)
        self.fixtures = fixture_endpoints(self.stub_url)
        for inference_id, (task, body) in self.fixtures.items():
            reply = self.client.json("PUT", f"/_inference/{task}/{inference_id}", body)
            assert reply.status == 200, (inference_id, reply)
        self.baseline = self.snapshot()
        assert len(self.baseline) == len(self.fixtures)
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        try:
            self._call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    # ------------------------------------------------------------------ registry

    def snapshot(self) -> list[dict]:
        reply = self.client.json("GET", "/_inference")
        assert reply.status == 200, reply
        return reply.json()["endpoints"]

    def restore(self) -> None:
        """Back to the fixture endpoints exactly, after a write the gateway accepted."""
        current = {e["inference_id"]: e for e in self.snapshot()}
        wanted = {e["inference_id"]: e for e in self.baseline}
        for inference_id, ep in current.items():
            if wanted.get(inference_id) != ep:
                reply = self.client.json("DELETE", "/_inference/" + urllib.parse.quote(inference_id, safe=""))
                assert reply.status == 200, reply
        for inference_id, ep in wanted.items():
            if current.get(inference_id) != ep:
                task, body = self.fixtures[inference_id]
                reply = self.client.json("PUT", f"/_inference/{task}/{inference_id}", body)
                assert reply.status == 200, reply
        assert self.snapshot() == self.baseline

    # ------------------------------------------------------------------ one exchange, checked

    def exchange(self, req: Req) -> Reply:
        reply = self.client.send(req)
        if currently_in_test_context():
            event(f"{req.method} -> {reply.status}")  # shown by --hypothesis-show-statistics
        check_reply(req, reply)
        writes = req.method in ("PUT", "DELETE")
        if reply.status >= 300 or not writes:
            after = self.snapshot()
            assert after == self.baseline, (
                f"the registry changed after {req!r} answered {reply.status}: {reply.body[:300]!r}")
        else:
            self.restore()
        return reply


# ---------------------------------------------------------------------- invariants


def known_bug(req: Req, reply: Reply) -> bool:
    """5xx answers already pinned by an xfail test in test_found_by_fuzzing.py: tolerated here (the
    body must still be well-formed) so the properties keep looking for new ones. Drop each entry
    when its xfail test starts passing."""
    return False  # none open at the moment


def check_reply(req: Req, reply: Reply) -> None:
    text = reply.body.decode("utf-8", "replace")
    assert reply.status < 500 or known_bug(req, reply), f"{req!r} -> {reply.status} {reply.body[:500]!r}"
    assert not TRACEBACK.search(text), f"{req!r} -> traceback in the body: {text[:1000]}"
    if reply.status < 400:
        check_success(req, reply)
        return
    if is_openai_path(req.path):
        check_openai_error(req, reply)
    else:
        check_es_error(req, reply)


def check_success(req: Req, reply: Reply) -> None:
    """A 2xx body is whole: JSON that parses, or a stream that ends with its terminator or an error."""
    where = f"{req!r} -> {reply.status} {reply.body[:500]!r}"
    ctype = _content_type(reply)
    if ctype == "text/event-stream":
        blocks = [b for b in reply.body.split(b"\n\n") if b]
        assert blocks and reply.body.endswith(b"\n\n"), where
        if is_openai_path(req.path):
            assert all(b.startswith(b"data: ") for b in blocks), where
            payloads = [b[6:] for b in blocks]
            for p in payloads[:-1]:
                json.loads(p)
            assert payloads[-1] == b"[DONE]" or "error" in json.loads(payloads[-1]), where
        else:
            assert all(b.startswith(BOM + b"event: ") for b in blocks), where
            last = blocks[-1][len(BOM):]
            assert last == b"event: message\ndata: [DONE]" or last.startswith(b"event: error\ndata: "), where
            for b in blocks[:-1]:
                event, _, data = b[len(BOM):].partition(b"\n")
                assert event == b"event: message" and data.startswith(b"data: "), where
                json.loads(data[6:])
    elif reply.body or reply.status != 200:
        assert ctype in ("application/json", "application/vnd.elasticsearch+json"), where
        json.loads(reply.body)


def _content_type(reply: Reply) -> str:
    return reply.headers.get("content-type", "").split(";")[0].strip().lower()


def check_openai_error(req: Req, reply: Reply) -> None:
    where = f"{req!r} -> {reply.status} {reply.body[:500]!r}"
    allowed = {"application/json"}
    if req.headers.get("Accept", "").startswith("application/vnd.elasticsearch+json"):
        allowed.add("application/vnd.elasticsearch+json")  # server.py `_product_header` negotiates on every path
    assert _content_type(reply) in allowed, where
    body = reply.json()
    assert isinstance(body, dict) and set(body) == {"error"}, where
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"message", "type", "param", "code"}, where
    assert isinstance(err["message"], str) and err["message"], where
    assert isinstance(err["type"], str) and err["type"], where
    assert err["param"] is None or isinstance(err["param"], str), where
    assert err["code"] is None or isinstance(err["code"], str), where


def check_es_error(req: Req, reply: Reply) -> None:
    where = f"{req!r} -> {reply.status} {reply.body[:500]!r}"
    ctype = _content_type(reply)
    if ctype == "text/event-stream":
        # before a stream starts: the status is the error's and the body one `error` event (§4.4)
        assert reply.body.startswith(BOM + b"event: error\ndata: ") and reply.body.endswith(b"\n\n"), where
        assert reply.body.count(b"\n\n") == 1, where
        payload = json.loads(reply.body[len(BOM + b"event: error\ndata: "):-2])
    else:
        assert ctype in ("application/json", "application/vnd.elasticsearch+json"), where
        payload = reply.json()
    assert isinstance(payload, dict) and "error" in payload, where
    err = payload["error"]
    if isinstance(err, str):
        # ES's simple forms: {"error": reason, "status": N}, and the no-handler 400 without a status
        assert err, where
        if "status" in payload:
            assert set(payload) == {"error", "status"} and payload["status"] == reply.status, where
        else:
            assert set(payload) == {"error"} and reply.status == 400 and err.startswith("no handler found"), where
        return
    assert isinstance(err, dict), where
    if "root_cause" in err:
        # the envelope (§5.1)
        assert set(payload) == {"error", "status"} and payload["status"] == reply.status, where
        assert isinstance(err["type"], str) and err["type"] and isinstance(err["reason"], str), where
        assert err["root_cause"] and all(isinstance(c, dict) and {"type", "reason"} <= set(c)
                                         for c in err["root_cause"]), where
    else:
        # chat_completion errors are OpenAI-style (§5.3)
        assert set(payload) == {"error"}, where
        assert {"code", "message", "type"} <= set(err) <= {"code", "message", "type", "param"}, where
        assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), where
