"""Issue 18.5: one copy of each local model per machine. With `--workers N` an engine host runs the
models and the workers call it over a Unix socket (engines/host.py, engines/remote.py).

The first tests run the host in this process, on a real socket, next to a gateway that reaches it
through `HostedEngines`, so they can read the host's engines and hold a model's load or pass; the
others start `inference-proxy serve --workers 2` and look at the real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest

from engines import frames
from engines.host import EngineHost
from engines.manager import EngineManager
from engines.models import builtin_models
from engines.remote import EngineClient
from proxy import appkeys, errors
from proxy.server import create_app
from tests.engines.conftest import E5, MINILM, SMOLLM, local_settings
from tests.engines.holds import check_a_full_queue_answers_429, hold_e5_load, hold_e5_runs, until
from tests.shared.conftest import Gateway, pin_workers

E5_EP = ".multilingual-e5-small-elasticsearch"
CHAT = ".smollm2-135m-instruct-chat-elasticsearch"
MINILM_EP = ".all-minilm-l6-v2-elasticsearch"
RERANK = ".all-minilm-l6-v2-bi-encoder-rerank-elasticsearch"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One data directory for the module, so the chat model's F16 copy is made once."""
    return tmp_path_factory.mktemp("engine-host")


@contextlib.asynccontextmanager
async def hosted(aiohttp_server, data_dir: Path, **overrides):
    """A gateway whose local models run in an engine host listening on a Unix socket (in this process)."""
    overrides.setdefault("local_models_include", [E5])
    path = str(data_dir / f"e{os.urandom(4).hex()}.sock")
    settings = local_settings(data_dir, **overrides)
    manager = EngineManager(settings)
    host = EngineHost(manager, path)
    await host.start()
    await manager.start()
    app = create_app(msgspec.structs.replace(settings, engine_socket=path))
    server = await aiohttp_server(app)
    try:
        yield server, manager, host
    finally:
        await server.close()
        await host.close()
        await manager.close()


# ------------------------------------------------------------------------------ the host in this process


def _comparable(status: int, body: bytes) -> tuple[int, object]:
    """A response without what differs between two runs (ids, times)."""
    text = re.sub(rb'"(id|created)":\s*("[^"]*"|\d+)', b'"\\1":0', body)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


async def test_answers_and_errors_through_the_host_are_those_of_the_engine_in_process(aiohttp_server, data_dir):
    question = [{"role": "user", "content": "What is the capital of France?"}]
    greedy = {"messages": question, "max_tokens": 12}
    es_chat = {"messages": question, "max_completion_tokens": 12}
    calls = [
        ("POST", f"/_inference/{E5_EP}", {"input": ["hello", "bonjour"]}),
        ("POST", f"/_inference/chat_completion/{CHAT}/_stream", es_chat),
        ("POST", "/v1/chat/completions", {"model": CHAT, **greedy}),
        # raw JSON from the engine (logprobs), in a result and in deltas
        ("POST", "/v1/chat/completions", {"model": CHAT, **greedy, "logprobs": True, "top_logprobs": 2}),
        ("POST", "/v1/chat/completions", {"model": CHAT, **greedy, "logprobs": True, "stream": True}),
        # errors raised in the host: the engine's own (tools), the chat parameter check (reasoning_effort),
        # a model that does not exist (400 at PUT), each in its surface's format
        ("POST", "/v1/chat/completions", {"model": CHAT, **greedy, "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}),
        ("POST", "/v1/chat/completions", {"model": CHAT, **greedy, "reasoning_effort": "low"}),
        ("POST", f"/_inference/chat_completion/{CHAT}/_stream", {**es_chat, "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}),
        ("PUT", "/_inference/text_embedding/nowhere", {"service": "elasticsearch",
                                                       "service_settings": {"model_id": "no-such-model",
                                                                            "num_allocations": 1,
                                                                            "num_threads": 1}}),
    ]
    include = [E5, SMOLLM]
    answers = []
    in_process = create_app(local_settings(data_dir, local_models_include=include))
    server = await aiohttp_server(in_process)
    await in_process[appkeys.BACKENDS].local.wait_ready(120)
    async with aiohttp.ClientSession() as http:
        for method, path, body in calls:
            async with http.request(method, server.make_url(path), json=body) as resp:
                answers.append(_comparable(resp.status, await resp.read()))
    await server.close()
    async with hosted(aiohttp_server, data_dir, local_models_include=include) as (server, manager, _host):
        await manager.wait_ready(120)
        async with aiohttp.ClientSession() as http:
            for (method, path, body), expected in zip(calls, answers):
                async with http.request(method, server.make_url(path), json=body) as resp:
                    assert _comparable(resp.status, await resp.read()) == expected, (method, path)
    statuses = [a[0] for a in answers]
    assert statuses == [200, 200, 200, 200, 200, 400, 400, 400, 400], answers
    assert "Paris" in json.dumps(answers[2][1]) and b"Paris" in answers[1][1]
    assert answers[3][1]["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    assert answers[4][1].count(b'"logprobs":{"content":') > 3
    assert "reasoning_effort" in json.dumps(answers[6][1]) and b"Tool calling" in answers[7][1]


async def test_a_model_still_loading_answers_503_with_its_progress_through_the_host(aiohttp_server, data_dir,
                                                                                   monkeypatch):
    gate = hold_e5_load(monkeypatch)
    try:
        async with hosted(aiohttp_server, data_dir) as (server, manager, _host), aiohttp.ClientSession() as http:
            async with http.get(server.make_url("/_ready")) as resp:
                assert resp.status == 503 and (await resp.json())["loading"] == [E5]
            async with http.post(server.make_url(f"/_inference/{E5_EP}"), json={"input": "hi"}) as resp:
                assert resp.status == 503 and resp.headers["Retry-After"] == "2"
                error = (await resp.json())["error"]
            assert error["type"] == "status_exception"
            assert "model 1 of 1 loaded at startup, now loading the weights" in error["reason"], error
            gate.set()
            await manager.wait_ready(30)
            async with http.post(server.make_url(f"/_inference/{E5_EP}"), json={"input": "hi"}) as resp:
                assert resp.status == 200

            async def ready() -> bool:
                async with http.get(server.make_url("/_ready")) as resp:
                    return resp.status == 200

            deadline = time.monotonic() + 5
            while not await ready():  # the host's status reaches the worker within its push interval
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
    finally:
        gate.set()


async def test_a_full_queue_answers_429_through_the_host(aiohttp_server, data_dir, monkeypatch):
    gate, entered = hold_e5_runs(monkeypatch)
    try:
        async with hosted(aiohttp_server, data_dir, local_queue_size=2) as (server, manager, _host):
            await manager.wait_ready(20)
            await check_a_full_queue_answers_429(server.make_url(f"/_inference/{E5_EP}"),
                                                 lambda: manager.engine(E5).batcher, gate, entered)
    finally:
        gate.set()


async def test_deltas_arrive_while_the_host_generates_and_a_client_that_leaves_stops_it(aiohttp_server, data_dir):
    async with hosted(aiohttp_server, data_dir, local_models_include=[SMOLLM]) as (server, manager, _host):
        await manager.wait_ready(120)
        engine = manager.engine(SMOLLM)
        before = dict(engine.stats())
        body = {"messages": [{"role": "user", "content": "Write a very long story about a cat and a dog."}],
                "max_completion_tokens": 1500}
        async with aiohttp.ClientSession() as http:
            async with http.post(server.make_url(f"/_inference/chat_completion/{CHAT}/_stream"), json=body) as resp:
                assert resp.status == 200
                contents = 0
                async for line in resp.content:
                    if b'"content"' in line:
                        contents += 1
                        if contents == 1:  # forwarded as produced: the host is still generating
                            assert engine.stats()["active"] == 1
                        if contents >= 5:
                            break
                resp.connection.transport.abort()  # the client goes away mid-stream
        await until(lambda: engine.stats()["active"] == 0 and engine.stats()["cancelled"] > before["cancelled"],
                     timeout=10)
        produced = engine.stats()["tokens_generated"] - before["tokens_generated"]
        assert produced < 400, produced  # stopped long before the 1500 tokens asked for


async def test_a_host_that_goes_away_answers_503_and_the_worker_connects_again(aiohttp_server, data_dir):
    async with hosted(aiohttp_server, data_dir) as (server, manager, host), aiohttp.ClientSession() as http:
        await manager.wait_ready(20)
        url = server.make_url(f"/_inference/{E5_EP}")
        async with http.post(url, json={"input": "hi"}) as resp:
            assert resp.status == 200
            vector = (await resp.json())["text_embedding"][0]["embedding"]
        await host.close()
        async with http.post(url, json={"input": "hi"}) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "2"
            assert "local engine host" in (await resp.json())["error"]["reason"]
        async with http.get(server.make_url("/_ready")) as resp:
            assert resp.status == 503 and (await resp.json())["loading"] == [E5]
        again = EngineHost(manager, host.path)  # what the supervisor does: a new host on the same socket
        await again.start()
        try:
            deadline = time.monotonic() + 10
            while True:
                async with http.post(url, json={"input": "hi"}) as resp:
                    if resp.status == 200:
                        assert (await resp.json())["text_embedding"][0]["embedding"] == vector
                        break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        finally:
            await again.close()


def test_errors_cross_with_their_class_status_and_headers():
    for exc in (errors.TooManyRequestsError("full", headers={"Retry-After": "1"}),
                errors.RequestValidationError(["a", "b"], param="logprobs"),
                errors.ServiceUnavailableError("loading", headers={"Retry-After": "2"}),
                errors.RateLimitReached("ep", "30s", 60, 1.5)):
        raw = msgspec.json.encode(frames.failure(exc))
        back = frames.error(msgspec.Raw(raw))
        assert type(back) is type(exc)
        assert (back.status, back.reason, back.headers, back.param, back.es_type) == (
            exc.status, exc.reason, exc.headers, exc.param, exc.es_type)
        assert vars(back) == vars(exc)

    class Elsewhere(errors.StatusError):  # a class proxy.errors does not have: its nearest base there
        status = 418

    back = frames.error(msgspec.Raw(msgspec.json.encode(frames.failure(Elsewhere("teapot", status=418)))))
    assert type(back) is errors.StatusError and back.status == 418


# ------------------------------------------------------------------------------ inference-proxy serve --workers 2


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _maps(pid: int, needle: str) -> bool:
    return needle in Path(f"/proc/{pid}/maps").read_text()


def _rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def _host_status(data_dir: Path) -> dict:
    """The host's status as the workers see it, read from its socket."""
    client = EngineClient(str(data_dir / "engines.sock"))
    try:
        exchange = await client.open(frames.WATCH, None)
        try:
            _kind, payload = await exchange.next()
        finally:
            exchange.close()
        return msgspec.json.decode(payload)
    finally:
        await client.close()


def _stats(status: dict, model_id: str) -> dict:
    return next(m for m in status["status"] if m["model_id"] == model_id)["stats"]


@pytest.mark.slow
async def test_two_workers_share_one_engine_host(tmp_path, data_dir):
    config = tmp_path / "gateway.yaml"
    config.write_text(f"local_models_include: [{E5}, {MINILM}, {SMOLLM}]\n")
    gw = Gateway(tmp_path, "w", workers=2, data_dir=data_dir / "gateway",
                 extra_env={"INFERENCE_PROXY_LOCAL_MODELS": "1", "INFERENCE_PROXY_CONFIG": str(config)})
    sessions: dict[int, aiohttp.ClientSession] = {}
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 300
            while True:
                assert gw.proc.poll() is None, gw.log()
                assert time.monotonic() < deadline, gw.log()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(gw.base + "/_ready") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.2)
        sessions = {pid: p.session for pid, p in (await pin_workers(gw.base, seconds=30, timeout=120)).items()}
        status = await _host_status(gw.data_dir)
        host = status["pid"]
        workers = set(sessions)
        assert _children(gw.proc.pid) >= workers | {host} and host not in workers

        # every worker answers every kind of request, from the one host
        for pid, s in sessions.items():
            for ep in (E5_EP, MINILM_EP):
                async with s.post(f"{gw.base}/_inference/{ep}", json={"input": ["hello", "world"]}) as resp:
                    assert resp.status == 200, await resp.text()
                    assert [len(e["embedding"]) for e in (await resp.json())["text_embedding"]] == [384, 384]
            rerank = {"query": "capital of France", "input": ["Bananas are yellow.", "Paris is in France."]}
            async with s.post(f"{gw.base}/_inference/rerank/{RERANK}", json=rerank) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["rerank"][0]["index"] == 1
            chat = {"messages": [{"role": "user", "content": "What is the capital of France?"}],
                    "max_completion_tokens": 12}
            async with s.post(f"{gw.base}/_inference/chat_completion/{CHAT}/_stream", json=chat) as resp:
                assert resp.status == 200
                events = [line async for line in resp.content if line.startswith(b"data: {")]
            assert len(events) > 3 and "Paris" in b"".join(events).decode()

        # only the host holds the models: the weights file and torch are mapped there and nowhere else
        weights = next(m for m in builtin_models() if m.model_id == SMOLLM).path
        f16 = [str(p) for p in (gw.data_dir / "models").glob("*.gguf")]
        for pid in workers | {host}:
            holds = any(_maps(pid, w) for w in [weights, *f16]) or _maps(pid, "libtorch_cpu")
            assert holds == (pid == host), pid
        rss = {pid: _rss_mb(pid) for pid in workers | {host}}
        print(f"RSS: host {rss[host]:.0f} MB, workers " + ", ".join(f"{rss[p]:.0f} MB" for p in workers))
        assert all(rss[p] < rss[host] / 3 for p in workers), rss

        # the host's batcher takes both workers' requests: concurrent requests through the two share passes
        before = _stats(await _host_status(gw.data_dir), MINILM)
        texts = [f"sentence number {i} about the weather in a town by the sea" * 4 for i in range(16)]

        async def embed(s: aiohttp.ClientSession, n: int) -> None:
            async with s.post(f"{gw.base}/_inference/{MINILM_EP}", json={"input": texts[n:n + 4]}) as resp:
                assert resp.status == 200

        extra = [aiohttp.ClientSession() for _ in range(6)]  # more connections, on whichever worker
        try:
            await asyncio.gather(*(embed(s, n) for n, s in enumerate([*sessions.values(), *extra])))
        finally:
            for s in extra:
                await s.close()
        after = _stats(await _host_status(gw.data_dir), MINILM)
        assert after["items_done"] - before["items_done"] == 8 * 4
        passes = after["forward_passes"] - before["forward_passes"]
        print(f"8 concurrent requests through 2 workers: {passes} forward passes in the host")
        assert passes < 8

        # a client that leaves through a worker stops the generation in the host
        before = _stats(await _host_status(gw.data_dir), SMOLLM)
        s = next(iter(sessions.values()))
        body = {"messages": [{"role": "user", "content": "Write a very long story about a cat and a dog."}],
                "max_completion_tokens": 1500}
        async with s.post(f"{gw.base}/_inference/chat_completion/{CHAT}/_stream", json=body) as resp:
            seen = 0
            async for line in resp.content:
                seen += line.startswith(b"data: {")
                if seen >= 5:
                    break
            resp.connection.transport.abort()
        deadline = time.monotonic() + 15
        while True:
            stats = _stats(await _host_status(gw.data_dir), SMOLLM)
            if stats["active"] == 0 and stats["cancelled"] > before["cancelled"]:
                break
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.1)
        assert stats["tokens_generated"] - before["tokens_generated"] < 400

        # a host that dies is restarted; the workers answer 503 meanwhile, then connect to the new one
        os.kill(host, signal.SIGKILL)
        deadline = time.monotonic() + 120
        s = next(iter(sessions.values()))
        statuses = set()
        while True:
            async with s.post(f"{gw.base}/_inference/{E5_EP}", json={"input": "hi"}) as resp:
                statuses.add(resp.status)
                if resp.status == 200:
                    break
                assert resp.status == 503, await resp.text()
            assert time.monotonic() < deadline, gw.log()
            await asyncio.sleep(0.05)
        assert "the engine host (pid" in gw.log() and "restarting it" in gw.log()
        host = (await _host_status(gw.data_dir))["pid"]
    finally:
        for s in sessions.values():
            await s.close()
    everyone = _children(gw.proc.pid)
    gw.proc.terminate()
    assert gw.proc.wait(timeout=60) == 0, gw.log()
    gw.close()
    deadline = time.monotonic() + 10  # the resource tracker leaves once the supervisor's pipe closes
    while left := [p for p in everyone if Path(f"/proc/{p}").exists()]:
        assert time.monotonic() < deadline, [Path(f"/proc/{p}/cmdline").read_bytes() for p in left]
        await asyncio.sleep(0.1)
    assert not (gw.data_dir / "engines.sock").exists()


@pytest.mark.slow
def test_an_engine_host_that_cannot_start_stops_the_supervisor(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # another gateway's host on this data directory
    squatter.bind(str(data / "engines.sock"))
    squatter.listen()
    try:
        gw = Gateway(tmp_path, "w", workers=2, data_dir=data, extra_env={"INFERENCE_PROXY_LOCAL_MODELS": "1"})
        assert gw.proc.wait(timeout=60) == 2
        log = gw.log()
        gw.close()
    finally:
        squatter.close()
    assert "another engine host is serving" in log and "before it listened; stopping" in log
    assert "serving on http" not in log  # no worker was started
