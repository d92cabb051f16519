"""Property-based tests of the `Authorization` header on a gateway with API keys (access control on).

Generated credentials (missing, malformed, unknown, revoked, valid with too small a role, valid)
against routes of both surfaces: never a 5xx, errors in each surface's format, bad credentials
are 401 on every route (ES with `WWW-Authenticate`, OpenAI with `invalid_api_key`), a user key
cannot write (403), and the registry is unchanged after every refused write.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.keys import KeyRing, encoded
from proxy.store.sqlite import SqliteStore

from . import strategies as S
from .harness import Req, ThreadedGateway, is_openai_path

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("FUZZ_RANDOM"), print_blob=False,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-auth")
    async def make_keys():  # what `inference-proxy keys create` does, before the gateway starts
        store = SqliteStore(tmp / "data" / "endpoints.db")
        await store.open()
        try:
            ring = KeyRing(store)
            made = [await ring.create(name, name, roles=[role]) for name, role in
                    (("fuzz-admin", "inference_admin"), ("fuzz-user", "inference_user"),
                     ("fuzz-revoked", "inference_user"))]
            await ring.invalidate([made[2][0].id])
            return [(record, encoded(record, secret)) for record, secret in made]
        finally:
            await store.close()

    (admin_rec, admin), (user_rec, user), (_, gone) = asyncio.run(make_keys())
    with ThreadedGateway(tmp, auth=f"ApiKey {admin}") as gateway:
        gateway.keys = {"admin": admin, "user": user, "revoked": gone,  # type: ignore[attr-defined]
                        "admin_id": admin_rec.id, "user_id": user_rec.id}
        yield gateway


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


@st.composite
def credentials(draw, keys: dict) -> tuple[str, dict[str, str]]:
    """(kind, headers): kind is admin, user or bad."""
    scheme = draw(st.sampled_from(["ApiKey", "Bearer", "apikey", "BEARER"]))
    kind = draw(st.sampled_from(["admin", "user", "revoked", "none", "unknown-id", "wrong-secret", "not-base64",
                                 "no-colon", "empty", "other-scheme", "garbage", "bare"]))
    if kind == "none":
        return "bad", {}
    if kind in ("admin", "user"):
        return kind, {"Authorization": f"{scheme} {keys[kind]}"}
    value = {
        "revoked": lambda: f"{scheme} {keys['revoked']}",
        "unknown-id": lambda: f"{scheme} {b64(draw(st.text(max_size=20)) + ':' + draw(st.text(max_size=40)))}",
        "wrong-secret": lambda: f"{scheme} {b64(keys['admin_id'] + ':' + draw(st.text(max_size=40)))}",
        "not-base64": lambda: f"{scheme} {draw(S._header_text)}",
        "no-colon": lambda: f"{scheme} {b64(keys['admin_id'])}",
        "empty": lambda: f"{scheme} ",
        "other-scheme": lambda: f"{draw(st.sampled_from(['Basic', 'Digest', 'Token', '']))} {keys['admin']}",
        # printable latin-1 (no DEL: aiohttp's parser refuses it with a bare 400 before any middleware)
        "garbage": lambda: draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0xff,
                                                      blacklist_characters="\x7f"), max_size=40)),
        "bare": lambda: keys["admin"],
    }[kind]()
    return "bad", {"Authorization": value}


ROUTES = st.sampled_from([
    ("GET", "/_inference"), ("GET", "/_inference/emb"), ("GET", "/_inference/_services"),
    ("PUT", "/_inference/text_embedding/fz-new"), ("PUT", "/_inference/emb/_update"), ("DELETE", "/_inference/emb"),
    ("POST", "/_inference/emb"), ("POST", "/_inference/chat/_stream"), ("POST", "/_inference/nothing"),
    ("GET", "/v1/models"), ("POST", "/v1/embeddings"), ("POST", "/v1/chat/completions"), ("POST", "/v1/rerank"),
    ("GET", "/"), ("GET", "/nothing"), ("PUT", "/v1/models"),
])
BODIES = {
    "/_inference/text_embedding/fz-new": {"service": "openai", "service_settings": {"api_key": "k", "model_id": "m"}},
    "/_inference/emb/_update": {"task_settings": {"user": "someone"}},
    "/_inference/emb": {"input": "x"},
    "/_inference/chat/_stream": {"messages": [{"role": "user", "content": "x"}]},
    "/v1/embeddings": {"model": "emb", "input": "x"},
    "/v1/chat/completions": {"model": "chat", "messages": [{"role": "user", "content": "x"}]},
    "/v1/rerank": {"model": "rr", "query": "q", "documents": ["a"]},
}


@fuzz
@given(data=st.data())
def test_credentials_on_every_route(keyed, data):
    kind, headers = data.draw(credentials(keyed.keys), "credentials")
    method, path = data.draw(ROUTES, "route")
    body = BODIES.get(path)
    if body is not None:
        headers["Content-Type"] = "application/json"
    reply = keyed.exchange(Req(method, path, None if body is None else json.dumps(body).encode(), headers))
    if kind == "bad":
        assert reply.status == 401, (headers, method, path, reply)
        if is_openai_path(path):
            assert reply.json()["error"]["code"] == "invalid_api_key"
        else:
            assert reply.headers.get("www-authenticate", "").startswith("ApiKey"), reply.headers
            assert reply.json()["error"]["type"] == "security_exception"
    elif kind == "user" and method in ("PUT", "DELETE") and path.startswith("/_inference"):
        assert reply.status == 403, (method, path, reply)
    else:
        assert reply.status not in (401, 403), (kind, method, path, reply)
    secret_parts = [keyed.keys["admin"], keyed.keys["user"], keyed.keys["revoked"]]
    assert not any(p in reply.body.decode("utf-8", "replace") for p in secret_parts)
