"""API keys and roles on both surfaces, request ids, access log, metrics, health, and request limits."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import openai
import pytest
from elasticsearch import AsyncElasticsearch, AuthenticationException, AuthorizationException

from proxy import appkeys
from proxy.access_log import FLUSH_S
from proxy.keys import encoded
from proxy.server import create_app
from tests.conftest import make_settings

CHAT = {"service": "openai", "service_settings": {"api_key": "sk-test-key", "model_id": "m"}}


@pytest.fixture
async def keys(gateway):
    ring = gateway.app[appkeys.KEYS]  # what the CLI does, through the running gateway's own key ring
    admin = encoded(*await ring.create("admin", "admin", roles=["inference_admin"]))
    user = encoded(*await ring.create("app", "app", roles=["inference_user"]))
    return {"admin": admin, "user": user, "ring": ring}


def es_client(gateway, api_key=None):
    return AsyncElasticsearch(str(gateway.make_url("/")).rstrip("/"), api_key=api_key, max_retries=0)


async def test_roles_on_the_elasticsearch_surface(gateway, keys):
    async with es_client(gateway, keys["admin"]) as admin, es_client(gateway, keys["user"]) as user, \
            es_client(gateway) as anonymous:
        await admin.inference.put(task_type="completion", inference_id="c", inference_config=CHAT)
        assert (await user.inference.get(inference_id="c")).body["endpoints"][0]["inference_id"] == "c"
        with pytest.raises(AuthorizationException) as denied:
            await user.inference.delete(inference_id="c")
        assert denied.value.body["error"]["type"] == "security_exception"
        assert "cluster:admin/xpack/inference/delete" in denied.value.body["error"]["reason"]
        with pytest.raises(AuthenticationException) as missing:
            await anonymous.inference.get()
        assert missing.value.body["error"]["reason"] == ("missing authentication credentials for REST request "
                                                         "[/_inference]")
        assert missing.value.meta.headers["WWW-Authenticate"].startswith("ApiKey")
    async with es_client(gateway, "bm90OmFrZXk=") as wrong:
        with pytest.raises(AuthenticationException):
            await wrong.inference.get()


async def test_bearer_keys_on_the_openai_surface(gateway, keys):
    base = str(gateway.make_url("/v1"))
    async with openai.AsyncOpenAI(base_url=base, api_key=keys["user"], max_retries=0) as ok:
        assert (await ok.models.list()).data == []
    async with openai.AsyncOpenAI(base_url=base, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as exc:
            await bad.models.list()
    assert exc.value.code == "invalid_api_key"


async def test_revoked_keys_stop_working(gateway, keys):
    record_id = next(k.id for k in keys["ring"].find() if k.name == "app")
    assert (await keys["ring"].invalidate([record_id]))[0] == [record_id]
    async with es_client(gateway, keys["user"]) as user:
        with pytest.raises(AuthenticationException):
            await user.inference.get()


async def test_health_needs_no_key_and_ready_reports(gateway, keys):
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.make_url("/_health")) as resp:
            assert resp.status == 200 and (await resp.json()) == {"status": "green"}
        async with http.get(gateway.make_url("/_ready")) as resp:
            assert resp.status == 200


async def test_request_id_is_echoed_or_generated(gateway):
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.make_url("/_inference"), headers={"X-Request-Id": "abc-123"}) as resp:
            assert resp.headers["X-Request-Id"] == "abc-123"
        async with http.get(gateway.make_url("/_inference/missing")) as resp:
            assert resp.status == 404 and len(resp.headers["X-Request-Id"]) == 32


async def test_metrics_and_access_log_without_secrets(gateway, upstream, caplog):
    caplog.set_level(logging.INFO, logger="proxy.access")
    secret = upstream.api_key
    async with aiohttp.ClientSession() as http:
        body = {"service": "openai", "service_settings": {"api_key": secret, "model_id": "m",
                                                          "url": f"{upstream.url}/v1/chat/completions"}}
        async with http.put(gateway.make_url("/_inference/completion/c"), json=body) as resp:
            assert resp.status == 200
        async with http.post(gateway.make_url("/_inference/completion/c/_stream"), json={"input": "hi"}) as resp:
            await resp.read()
        async with http.post(gateway.make_url("/_inference/completion/c"), json={"input": "hi"}) as resp:
            assert resp.status == 200
        async with http.get(gateway.make_url("/metrics")) as resp:
            text = await resp.text()
    assert 'inference_proxy_requests_total{endpoint="c",route="/_inference/{first}/{second}",service="openai",' \
           'status="200",task="completion"} 1.0' in text
    assert 'inference_proxy_time_to_first_token_seconds_count{service="openai",task="completion"} 1.0' in text
    # the stream reported 5 completion tokens in its usage chunk, the plain call 1
    assert 'inference_proxy_tokens_total{direction="out",endpoint="c"} 6.0' in text, \
        [line for line in text.splitlines() if "tokens_total" in line]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "proxy.access"]
    assert {(line["method"], line["status"]) for line in lines} >= {("PUT", 200), ("POST", 200)}
    assert all(secret not in r.getMessage() for r in caplog.records)


async def test_access_log_lines_with_the_gateways_own_logging_setup(gateway):
    """With the CLI's set-up (one stream handler on the root logger) lines are written in batches, formatted
    as logging would; a handler of anyone else's turns that off."""
    fmt = "%(asctime)s %(levelname)s w3 %(name)s %(message)s"  # a worker's format (proxy/workers.py)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt))
    root, access = logging.getLogger(), logging.getLogger("proxy.access")
    saved, level = root.handlers[:], access.level
    root.handlers[:] = [handler]
    access.setLevel(logging.INFO)
    factory = logging.getLogRecordFactory()
    records = []
    logging.setLogRecordFactory(lambda *a, **kw: records.append(factory(*a, **kw)) or records[-1])
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/_inference", "/v1/models", "/nowhere"):
                async with http.get(gateway.make_url(path), headers={"X-Request-Id": f"id{len(path)}"}) as resp:
                    await resp.read()
            assert stream.getvalue() == ""  # written together, soon
            await asyncio.sleep(FLUSH_S * 2)
            batched = stream.getvalue()
            assert not [r for r in records if r.name == "proxy.access"]  # no LogRecord was made
            capture = logging.Handler()
            capture.records = []
            capture.emit = capture.records.append
            root.handlers.append(capture)  # now two handlers: ordinary records for both
            async with http.get(gateway.make_url("/_inference"), headers={"X-Request-Id": "plain"}) as resp:
                await resp.read()
    finally:
        logging.setLogRecordFactory(factory)
        root.handlers[:] = saved
        access.setLevel(level)
    lines = batched.splitlines()
    assert len(lines) == 3
    for line, rid in zip(lines, ("id11", "id10", "id8")):
        date, clock, rest = line.split(" ", 2)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", date) and re.fullmatch(r"\d\d:\d\d:\d\d,\d{3}", clock), line
        assert rest.startswith("INFO w3 proxy.access {")
        assert json.loads(rest.split(" ", 3)[3])["request_id"] == rid
    assert [json.loads(r.getMessage())["request_id"] for r in capture.records] == ["plain"]
    assert stream.getvalue().splitlines()[3].endswith(capture.records[0].getMessage())  # formatted by logging


async def test_input_limits(aiohttp_server, tmp_path, upstream):
    server = await aiohttp_server(create_app(make_settings(tmp_path, max_inputs=3, max_input_chars=10,
                                                           max_body_bytes=2000)))
    async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as http:
        body = {"service": "openai", "service_settings": {"api_key": "k", "model_id": "m",
                                                          "url": f"{upstream.url}/v1/embeddings"}}
        async with http.put("/_inference/text_embedding/e", json=body) as resp:
            assert resp.status == 200
        async with http.post("/_inference/e", json={"input": ["a", "b", "c", "d"]}) as resp:
            assert resp.status == 413 and "Too many inputs" in (await resp.json())["error"]["reason"]
        async with http.post("/_inference/e", json={"input": "x" * 11}) as resp:
            assert resp.status == 413
        async with http.post("/v1/embeddings", json={"model": "e", "input": "x" * 3000}) as resp:
            assert resp.status == 413 and (await resp.json())["error"]["type"] == "invalid_request_error"


def test_refuses_a_public_bind_without_keys(tmp_path):
    out = subprocess.run([sys.executable, "-m", "proxy", "serve", "--host", "0.0.0.0", "--data-dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--insecure" in out.stderr


def test_keys_cli_shows_the_secret_once(tmp_path):
    run = [sys.executable, "-m", "proxy", "keys", "--data-dir", str(tmp_path)]
    created = subprocess.run(run + ["create", "--role", "inference_user", "--name", "svc"], capture_output=True,
                             text=True, check=True).stdout
    encoded = created.split("api_key:")[1].split()[0]
    listed = subprocess.run(run + ["list"], capture_output=True, text=True, check=True).stdout
    assert "svc" in listed and encoded not in listed
    assert encoded.encode() not in (tmp_path / "endpoints.db").read_bytes()
    key_id = listed.split()[0]
    assert subprocess.run(run + ["revoke", key_id], capture_output=True).returncode == 0
    assert "revoked" in subprocess.run(run + ["list"], capture_output=True, text=True).stdout


def test_keys_cli_takes_the_data_dir_before_or_after_its_subcommand(tmp_path):
    keys = [sys.executable, "-m", "proxy", "keys"]
    # run from tmp_path, so a data dir left to its default (./data) would appear there
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env = {k: v for k, v in env.items() if k != "INFERENCE_PROXY_DATA_DIR"}
    where = str(tmp_path / "d")

    def run(*args: str) -> str:
        out = subprocess.run(keys + list(args), capture_output=True, text=True, cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    run("create", "--role", "inference_user", "--name", "after", "--data-dir", where)
    listed = run("--data-dir", where, "list")
    assert "after" in listed
    assert run("list", "--data-dir", where) == listed
    assert not (tmp_path / "data").exists()
