"""The console's HTTP side: public static files under a strict policy, JSON routes behind the API's keys,
the loopback rule, no secret in any answer, and the files shipped in the built wheel."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import aiohttp
import pytest

from proxy import appkeys
from proxy.keys import encoded
from proxy.server import create_app
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
ASSETS = sorted(p.name for p in (ROOT / "proxy" / "console").iterdir())


@pytest.fixture
async def http(gateway):
    async with aiohttp.ClientSession(base_url=str(gateway.make_url("/"))) as session:
        yield session


@pytest.fixture
async def keys(gateway):
    ring = gateway.app[appkeys.KEYS]
    return {"admin": encoded(*await ring.create("ops", "ops", roles=["inference_admin"])),
            "user": encoded(*await ring.create("app", "app", roles=["inference_user"]))}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {key}"}


async def test_static_files_are_public_and_under_a_strict_policy(http, keys):
    async with http.get("/_console", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/_console/"
    for name in ["", *ASSETS]:
        async with http.get(f"/_console/{name}") as resp:  # no key: the browser loads these before signing in
            assert resp.status == 200, name
            csp = resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            body = await resp.read()
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe" not in csp and "http" not in csp
        if name.endswith(".js"):
            assert resp.content_type == "text/javascript"  # module scripts need a JavaScript type
        # offline: nothing is fetched from anywhere but the gateway itself
        assert not re.search(rb"(src|href)\s*=\s*[\"']?(https?:)?//", body), name
        assert b"@import" not in body and b"url(http" not in body
        etag = resp.headers["ETag"]
        async with http.get(f"/_console/{name}", headers={"If-None-Match": etag}) as again:
            assert again.status == 304
    async with http.get("/_console/../_inference") as resp:  # normalized to /_inference: needs a key
        assert resp.status == 401
    async with http.get("/_console/missing.js") as resp:
        assert resp.status in (400, 404)
        assert "Content-Security-Policy" in resp.headers


async def test_the_html_has_no_inline_script_or_style(http):
    async with http.get("/_console/") as resp:
        html = await resp.text()
    assert "<script" in html and not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html and "style=" not in html
    assert not re.search(r"\son[a-z]+=", html)


async def test_json_routes_need_a_key_and_say_who_is_signed_in(http, keys):
    for route in ("session", "catalogue", "status", "metrics"):
        async with http.get(f"/_console/api/{route}") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["type"] == "security_exception"
        async with http.get(f"/_console/api/{route}", headers=auth(keys["user"])) as resp:
            assert resp.status == 200
    async with http.get("/_console/api/session", headers=auth(keys["admin"])) as resp:
        assert await resp.json() == {"auth": True, "name": "ops", "roles": ["inference_admin"], "admin": True}
    async with http.get("/_console/api/session", headers={"Authorization": f"Bearer {keys['user']}"}) as resp:
        assert await resp.json() == {"auth": True, "name": "app", "roles": ["inference_user"], "admin": False}


async def test_open_on_loopback_without_keys(http):
    async with http.get("/_console/api/session") as resp:
        assert resp.status == 200
        assert await resp.json() == {"auth": False, "name": None, "roles": [], "admin": True}


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent; this picks the outgoing interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def test_without_keys_the_console_does_not_open_to_other_hosts(tmp_path, aiohttp_server):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    server = await aiohttp_server(create_app(make_settings(tmp_path)), host=address)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{address}:{server.port}/_console/api/session") as resp:
            assert resp.status == 403
            assert "only on loopback" in (await resp.json())["error"]["reason"]


async def test_catalogue_describes_the_forms(http):
    async with http.get("/_console/api/catalogue") as resp:
        catalogue = await resp.json()
    services = {s["name"]: s for s in catalogue["services"]}
    openai = services["openai"]
    assert "chat_completion" in openai["tasks"] and "chat_completion" in openai["streaming"]
    settings = {s["name"]: s for s in openai["service_settings"]}
    assert settings["api_key"]["secret"] and settings["api_key"]["updatable"]
    assert settings["model_id"]["required"] and not settings["model_id"]["updatable"]
    assert openai["one_of"] == [["api_key", "client_secret"]]
    assert [f["name"] for f in settings["rate_limit"]["fields"]] == ["requests_per_minute"]
    assert settings["similarity"]["choices"] == ["cosine", "dot_product", "l2_norm"]
    assert settings["similarity"]["tasks"] == ["text_embedding"]
    assert set(catalogue["task_types"]) >= {"text_embedding", "sparse_embedding", "rerank", "completion",
                                              "chat_completion"}


async def test_no_secret_in_any_console_answer(http, upstream):
    secret = "sk-console-secret-0123456789"
    upstream.api_key = secret
    body = {"service": "openai", "service_settings": {"api_key": secret, "model_id": "m",
                                                      "url": f"{upstream.url}/v1/chat/completions"}}
    async with http.put("/_inference/chat_completion/c", json=body) as resp:
        assert resp.status == 200
    async with http.post("/_inference/chat_completion/c/_stream",
                         json={"messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.status == 200
        await resp.read()
    for path in ["/_console/", *(f"/_console/{a}" for a in ASSETS),
                 *(f"/_console/api/{r}" for r in ("session", "catalogue", "status", "metrics"))]:
        async with http.get(path) as resp:
            assert secret.encode() not in await resp.read(), path


async def test_status_and_metrics_snapshot(http, upstream):
    body = {"service": "openai", "service_settings": {"api_key": upstream.api_key, "model_id": "m",
                                                      "url": f"{upstream.url}/v1/embeddings"}}
    async with http.put("/_inference/text_embedding/e", json=body) as resp:
        assert resp.status == 200
    for inputs in (["a", "b"], 7):
        async with http.post("/_inference/text_embedding/e", json={"input": inputs}) as resp:
            await resp.read()
    async with http.get("/_console/api/status") as resp:
        status = await resp.json()
    assert status["endpoints"] == {"e": {"state": "ready"}}
    assert status["local_models"] == {"total": 0, "loading": 0, "ready": 0}
    for _ in range(3):  # the console's own polling is not inference traffic
        async with http.get("/_console/api/metrics") as resp:
            snap = await resp.json()
    assert snap["endpoints"]["e"]["requests"] == 2 and snap["endpoints"]["e"]["errors"] == 1
    assert list(snap["endpoints"]) == ["e"]
    # cumulative buckets of inference requests only, ending with +Inf (null in JSON)
    assert snap["latency"][-1][0] is None and snap["latency"][-1][1] == 2
    counts = [c for _, c in snap["latency"]]
    assert counts == sorted(counts)
    # the same counts Prometheus scrapes
    async with http.get("/metrics") as resp:
        text = await resp.text()
    scraped = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("inference_proxy_requests_total{") and 'endpoint="e"' in line)
    assert scraped == 2


@pytest.mark.slow
def test_the_built_wheel_ships_the_console(tmp_path):
    """A non-editable install has the files: they are package data of `proxy`."""
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the working tree
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for package in ("proxy", "adapters", "engines"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(source)], check=True, cwd=tmp_path, capture_output=True)
    wheel = next(tmp_path.glob("inference_proxy-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"proxy/console/{a}" for a in ASSETS} <= names
    assert set(ASSETS) == {p.name for p in (resources.files("proxy") / "console").iterdir()}


async def test_a_key_limited_to_some_endpoints_sees_only_theirs(gateway, http, upstream):
    ring = gateway.app[appkeys.KEYS]
    admin = encoded(*await ring.create("ops", "ops", roles=["inference_admin"]))
    scoped = {"team-a": {"cluster": ["monitor_inference"], "applications": [
        {"application": "inference-proxy", "privileges": ["*"], "resources": ["team-a-*"]}]}}
    team_a = encoded(*await ring.create("svc", "ops", role_descriptors=scoped))
    for name in ("team-a-emb", "team-b-emb"):
        body = {"service": "openai", "service_settings": {"api_key": upstream.api_key, "model_id": "m",
                                                          "url": f"{upstream.url}/v1/embeddings"}}
        async with http.put(f"/_inference/text_embedding/{name}", json=body, headers=auth(admin)) as resp:
            assert resp.status == 200
        async with http.post(f"/_inference/text_embedding/{name}", json={"input": "x"}, headers=auth(admin)) as r:
            assert r.status == 200
    async with http.get("/_console/api/session", headers=auth(team_a)) as resp:
        assert await resp.json() == {"auth": True, "name": "svc", "roles": ["team-a"], "admin": False}
    async with http.get("/_console/api/status", headers=auth(team_a)) as resp:
        assert list((await resp.json())["endpoints"]) == ["team-a-emb"]
    async with http.get("/_console/api/metrics", headers=auth(team_a)) as resp:
        assert list((await resp.json())["endpoints"]) == ["team-a-emb"]
    async with http.get("/_console/api/metrics", headers=auth(admin)) as resp:
        assert sorted((await resp.json())["endpoints"]) == ["team-a-emb", "team-b-emb"]
