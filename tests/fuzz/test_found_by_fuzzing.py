"""Concrete failures the properties found, kept as ordinary tests.

While a bug is open its test is a strict xfail and `harness.known_bug` tolerates it inside the
properties, so they keep looking for new ones; once fixed, both go.

- invalid UTF-8 inside a JSON string: msgspec raises UnicodeDecodeError (a ValueError), which the
  body decoders (httputil.read_object, wire/es.decode_strict, routes/openai._decode) did not catch:
  every JSON route answered 500. Fixed; now a 400 in each surface's format.
"""

from __future__ import annotations

import pytest

from .harness import Req, ThreadedGateway, check_reply


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    with ThreadedGateway(tmp_path_factory.mktemp("fuzz-found")) as gateway:
        yield gateway


INVALID_UTF8 = [
    ("PUT", "/_inference/emb", b'{"input": "\xff"}'),
    ("PUT", "/_inference/text_embedding/fresh", b'{"service": "openai\xff"}'),
    ("PUT", "/_inference/emb/_update", b'{"task_settings": {"user": "\xff"}}'),
    ("POST", "/_inference/emb", b'{"input": "\xff"}'),
    ("POST", "/_inference/chat/_stream", b'{"messages": [{"role": "user", "content": "\xc3"}]}'),
    ("POST", "/v1/embeddings", b'{"model": "emb", "input": "\xff"}'),
    ("POST", "/v1/chat/completions", b'{"model": "chat", "messages": [{"role": "user", "content": "\xff"}]}'),
    ("POST", "/v1/rerank", b'{"model": "rr", "query": "\xed\xa0\x80", "documents": ["a"]}'),
]


@pytest.mark.parametrize("method, path, body", INVALID_UTF8, ids=[f"{m} {p}" for m, p, _ in INVALID_UTF8])
def test_invalid_utf8_in_a_json_string_is_a_400(gw, method, path, body):
    reply = gw.exchange(Req(method, path, body, {"Content-Type": "application/json"}))
    assert reply.status == 400, reply
    check_reply(Req(method, path, b"{}"), reply)  # the surface's error format
