"""Gateway routing settings: per-service origin overrides, an outbound proxy and TLS options."""

from __future__ import annotations

import datetime
import ipaddress

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy import settings as settings_mod
from proxy.server import create_app
from tests.conftest import make_settings
from tests.fakes.http_proxy import ForwardProxy
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import LiveServer


@pytest.fixture
async def fake(serve_fake):
    return await serve_fake(FakeOpenAI())


@pytest.fixture
async def other_fake(serve_fake):
    return await serve_fake(FakeOpenAI())


async def _gateway(aiohttp_server, tmp_path, **settings):
    server = await aiohttp_server(create_app(make_settings(tmp_path, **settings)))
    return aiohttp.ClientSession(base_url=str(server.make_url("/")))


async def _embed(http, inference_id: str, settings: dict) -> tuple[int, dict]:
    async with http.put(f"/_inference/text_embedding/{inference_id}",
                        json={"service": "openai", "service_settings": settings}) as resp:
        assert resp.status == 200, await resp.text()
    async with http.post(f"/_inference/text_embedding/{inference_id}?timeout=3s", json={"input": "hi"}) as resp:
        return resp.status, await resp.json()


async def test_override_reaches_a_service_without_url_and_never_leaks(aiohttp_server, tmp_path, fake):
    http = await _gateway(aiohttp_server, tmp_path, upstreams={"openai": fake.url})
    async with http:
        status, body = await _embed(http, "emb", {"api_key": fake.api_key, "model_id": "m"})
        assert status == 200, body
        assert fake.requests[-1]["model"] == "m"  # default path /v1/embeddings kept on the new origin
        async with http.get("/_inference/emb") as resp:
            listed = await resp.text()
    assert fake.url not in listed and "upstreams" not in listed


async def test_endpoint_url_beats_the_override(aiohttp_server, tmp_path, fake, other_fake):
    http = await _gateway(aiohttp_server, tmp_path, upstreams={"openai": fake.url})
    async with http:
        status, _ = await _embed(http, "emb", {"api_key": other_fake.api_key, "model_id": "m",
                                              "url": f"{other_fake.url}/v1/embeddings"})
    assert status == 200
    assert len(other_fake.requests) == 1 and fake.requests == []


async def test_requests_pass_through_the_outbound_proxy(aiohttp_server, tmp_path, fake):
    proxy = await ForwardProxy().start()
    try:
        http = await _gateway(aiohttp_server, tmp_path, upstream_proxy=proxy.url)
        async with http:
            status, body = await _embed(http, "emb", {"api_key": fake.api_key, "model_id": "m",
                                                      "url": f"{fake.url}/v1/embeddings"})
    finally:
        await proxy.stop()
    assert status == 200, body
    assert proxy.seen == [f"{fake.url}/v1/embeddings"]


def test_environment_settings():
    env = {"INFERENCE_PROXY_UPSTREAM_ANTHROPIC": "http://127.0.0.1:8081",
           "INFERENCE_PROXY_UPSTREAM_ALIBABACLOUD_AI_SEARCH": "http://127.0.0.1:8082",
           "HTTPS_PROXY": "http://127.0.0.1:3128"}
    s = settings_mod.load({}, env)
    assert s.upstreams == {"anthropic": "http://127.0.0.1:8081", "alibabacloud_ai_search": "http://127.0.0.1:8082"}
    assert s.upstream_proxy == "http://127.0.0.1:3128"
    assert settings_mod.load({"upstream_proxy": "http://p:1"}, env).upstream_proxy == "http://p:1"


def test_config_file_routing(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("upstreams:\n  cohere: https://eu.cohere.example\nupstream_ca_bundles:\n  cohere: /etc/ca.pem\n")
    s = settings_mod.load({"config": str(path)}, {})
    assert s.upstreams == {"cohere": "https://eu.cohere.example"}
    assert s.upstream_ca_bundles == {"cohere": "/etc/ca.pem"}


# ------------------------------------------------------------------------------ TLS


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
async def tls_fake(tmp_path):
    cert, key = _self_signed(tmp_path)
    upstream = FakeOpenAI()
    server = await LiveServer(upstream.app(), ssl_certfile=str(cert), ssl_keyfile=str(key)).start()
    upstream.url = server.url  # type: ignore[attr-defined]
    upstream.ca = str(cert)  # type: ignore[attr-defined]
    yield upstream
    await server.stop()


async def test_tls_needs_the_ca_bundle(aiohttp_server, tmp_path, tls_fake):
    settings = {"api_key": tls_fake.api_key, "model_id": "m", "url": f"{tls_fake.url}/v1/embeddings"}
    http = await _gateway(aiohttp_server, tmp_path / "a")
    async with http:
        status, body = await _embed(http, "emb", settings)
    assert status == 502 and "certificate" in body["error"]["reason"].lower()
    assert tls_fake.requests == []
    http = await _gateway(aiohttp_server, tmp_path / "b", upstream_ca_bundles={"openai": tls_fake.ca})
    async with http:
        status, body = await _embed(http, "emb", settings)
    assert status == 200, body


async def test_tls_verification_can_be_disabled_with_a_warning(aiohttp_server, tmp_path, tls_fake, caplog):
    http = await _gateway(aiohttp_server, tmp_path, upstream_insecure=["openai"])
    async with http:
        status, body = await _embed(http, "emb", {"api_key": tls_fake.api_key, "model_id": "m",
                                                  "url": f"{tls_fake.url}/v1/embeddings"})
    assert status == 200, body
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)
