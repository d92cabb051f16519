"""`googlevertexai` through `/_inference` (elasticsearch client) and `/v1` (openai SDK), in front of a
simulated Vertex AI that issues OAuth2 tokens only for JWTs signed by the service account's key."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from elasticsearch import ApiError

from adapters.vertex import GoogleVertexAiAdapter, TokenCache
from tests.conftest import make_settings
from tests.fakes.google_upstream import TOOL_ARGS, fake_vector, google_error, rate_limited
from tests.fakes.vertex_upstream import FakeVertex, make_key, service_account_json
from tests.sse import parse_sse

KEY = make_key()
OTHER_KEY = make_key()
EMAIL = "gateway@my-project.iam.gserviceaccount.com"


@pytest.fixture(autouse=True)
def fresh_token_cache(monkeypatch):
    # tokens are cached per adapter class: give each test its own cache (ports are reused between tests)
    monkeypatch.setattr(GoogleVertexAiAdapter, "tokens", TokenCache())


@pytest.fixture
async def upstream(serve_fake):
    return await serve_fake(FakeVertex(public_key=KEY.public_key(), client_email=EMAIL))


@pytest.fixture
def gateway_settings(tmp_path, upstream):
    # the API hosts are rewritten to the fake; the token endpoint comes from the service account itself
    return make_settings(tmp_path, upstreams={"googlevertexai": upstream.url})


async def put(http, upstream, task: str, inference_id: str, model: str = "gemini-2.5-flash", key=KEY,
              task_settings: dict | None = None, **settings):
    service_settings = {"service_account_json": service_account_json(key, EMAIL, upstream.token_uri),
                        "model_id": model, "project_id": "my-project", **settings}
    if task in ("completion", "chat_completion") and "provider" not in settings:
        service_settings.setdefault("location", "us-central1")  # ES requires it for Gemini (validateServiceSettings)
    body = {"service": "googlevertexai", "service_settings": service_settings}
    if task_settings:
        body["task_settings"] = task_settings
    async with http.put(f"/_inference/{task}/{inference_id}", json=body) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert "PRIVATE KEY" not in text
        return json.loads(text)


async def stream(http, path: str, body: dict) -> tuple[int, list[tuple[str, str]]]:
    async with http.post(path, json=body) as resp:
        return resp.status, parse_sse((await resp.read()).decode())


# ------------------------------------------------------------------------------ auth and the token cache


async def test_text_embedding_signs_in_once_and_sends_the_bearer_token(es, http, upstream):
    await put(http, upstream, "text_embedding", "emb", "text-embedding-005", location="us-central1", dimensions=5,
              task_settings={"auto_truncate": True})
    texts = ["alpha beta", "gamma"]
    for _ in range(3):
        resp = await es.inference.text_embedding(inference_id="emb", input=texts, input_type="ingest")
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    for vec, text in zip(vectors, texts):
        assert vec == pytest.approx(fake_vector(text, 5), abs=1e-6)
    assert upstream.exchanges == 1
    assert upstream.jwt_headers == [{"alg": "RS256", "typ": "JWT", "kid": "kid-1"}]
    paths = {(path, token) for path, token, _ in upstream.calls}
    assert paths == {("/v1/projects/my-project/locations/us-central1/publishers/google/models/"
                      "text-embedding-005:predict", "ya29.fake-token-1")}
    assert upstream.calls[-1][2] == {"instances": [{"content": t, "task_type": "RETRIEVAL_DOCUMENT"} for t in texts],
                                     "parameters": {"autoTruncate": True, "outputDimensionality": 5}}


async def test_concurrent_first_calls_share_one_token_exchange(es, http, upstream):
    await put(http, upstream, "text_embedding", "emb", "text-embedding-005")
    await put(http, upstream, "rerank", "rr", "semantic-ranker-512@latest")
    results = await asyncio.gather(*(es.inference.text_embedding(inference_id="emb", input=f"t{i}")
                                     for i in range(6)),
                                   es.inference.rerank(inference_id="rr", query="q", input=["q"]))
    assert len(results) == 7 and upstream.exchanges == 1
    assert {token for _, token, _ in upstream.calls} == {"ya29.fake-token-1"}


async def test_a_token_close_to_expiry_is_not_reused(es, http, upstream):
    upstream.expires_in = 299  # within the five-minute refresh margin: every call signs in again
    await put(http, upstream, "text_embedding", "emb", "text-embedding-005")
    for _ in range(2):
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert upstream.exchanges == 2
    assert [token for _, token, _ in upstream.calls] == ["ya29.fake-token-1", "ya29.fake-token-2"]


async def test_batches_follow_max_batch_size(es, http, upstream):
    await put(http, upstream, "text_embedding", "emb", "text-embedding-005", max_batch_size=4,
              rate_limit={"requests_per_minute": 60000})
    texts = [f"text {i}" for i in range(10)]
    resp = await es.inference.text_embedding(inference_id="emb", input=texts)
    assert [item["embedding"] for item in resp.body["text_embedding"]][9] == pytest.approx(fake_vector(texts[9]),
                                                                                          abs=1e-6)
    assert sorted(len(body["instances"]) for _, _, body in upstream.calls) == [2, 4, 4]
    assert upstream.exchanges == 1


async def test_a_key_that_is_not_the_accounts_fails_with_the_token_endpoint_message(es, http, upstream):
    await put(http, upstream, "text_embedding", "emb", "text-embedding-005", key=OTHER_KEY)
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"] == (
        f"Failed to obtain a Google OAuth2 access token for service account [{EMAIL}] for request from inference "
        f"entity id [emb] status [400]. Error message: [Invalid JWT Signature.]")
    assert "PRIVATE KEY" not in json.dumps(exc.value.body)
    assert upstream.exchanges == 0 and upstream.calls == []


async def test_a_revoked_token_is_401_and_the_next_call_signs_in_again(es, http, upstream):
    await put(http, upstream, "text_embedding", "emb", "text-embedding-005")
    await es.inference.text_embedding(inference_id="emb", input="x")
    upstream.issued.clear()  # the token is revoked upstream
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert exc.value.meta.status == 401
    assert exc.value.body["error"]["reason"].startswith(
        "Received an authentication error status code for request from inference entity id [emb] status [401]. "
        "Error message: [Request had invalid authentication credentials.")
    await es.inference.text_embedding(inference_id="emb", input="x")
    assert upstream.exchanges == 2 and upstream.calls[-1][1] == "ya29.fake-token-2"


async def test_429_is_retried(es, http, upstream):
    await put(http, upstream, "completion", "comp")
    upstream.fail_next(429, rate_limited("0s"))
    resp = await es.inference.completion(inference_id="comp", input="again")
    assert resp.body == {"completion": [{"result": "AGAIN"}]}
    assert len(upstream.calls) == 2 and upstream.exchanges == 1


async def test_403_keeps_its_status(es, http, upstream):
    await put(http, upstream, "completion", "comp")
    upstream.fail_next(403, google_error(403, "Permission 'aiplatform.endpoints.predict' denied", "PERMISSION_DENIED"))
    with pytest.raises(ApiError) as exc:
        await es.inference.completion(inference_id="comp", input="x")
    assert exc.value.meta.status == 403
    assert exc.value.body["error"]["reason"].endswith("Error message: [Permission 'aiplatform.endpoints.predict' "
                                                      "denied]")


# ------------------------------------------------------------------------------ rerank


async def test_rerank_with_the_es_client(es, http, upstream):
    await put(http, upstream, "rerank", "rr", "semantic-ranker-512@latest")
    docs = ["luke", "star wars main character", "leia", "wars"]
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="star wars main character", top_n=2,
                                     return_documents=True)
    assert resp.body["rerank"] == [{"index": 1, "relevance_score": 1.0, "text": "star wars main character"},
                                   {"index": 3, "relevance_score": 0.25, "text": "wars"}]
    path, _, body = upstream.calls[-1]
    assert path == "/v1/projects/my-project/locations/global/rankingConfigs/default_ranking_config:rank"
    assert body == {"model": "semantic-ranker-512@latest", "query": "star wars main character",
                    "records": [{"id": str(i), "content": d} for i, d in enumerate(docs)], "topN": 2,
                    "ignoreRecordDetailsInResponse": False}
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="leia")
    assert [r["index"] for r in resp.body["rerank"]][0] == 2 and all("text" not in r for r in resp.body["rerank"])


# ------------------------------------------------------------------------------ Gemini on Vertex


async def test_completion_and_streams(es, http, upstream):
    await put(http, upstream, "completion", "comp", location="europe-west4",
              task_settings={"max_tokens": 77, "thinking_config": {"thinking_budget": 0}})
    resp = await es.inference.completion(inference_id="comp", input="hello vertex")
    assert resp.body == {"completion": [{"result": "HELLO VERTEX"}]}
    assert upstream.calls[-1][0] == ("/v1/projects/my-project/locations/europe-west4/publishers/google/models/"
                                     "gemini-2.5-flash:generateContent")
    assert upstream.calls[-1][2]["generationConfig"] == {"maxOutputTokens": 77,
                                                         "thinkingConfig": {"thinkingBudget": 0}}
    status, events = await stream(http, "/_inference/completion/comp/_stream", {"input": "abcdefgh"})
    assert status == 200 and events[-1] == ("message", "[DONE]")
    assert "".join(json.loads(d)["completion"][0]["delta"] for _, d in events[:-1]) == "ABCDEFGH"
    assert upstream.calls[-1][0].endswith(":streamGenerateContent")


async def test_chat_completion_tool_call_round_trip(es, http, upstream):
    await put(http, upstream, "chat_completion", "chat", "tool-model")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    body = {"messages": messages, "tools": tools, "tool_choice": {"type": "function",
                                                                  "function": {"name": "get_weather"}}}
    status, events = await stream(http, "/_inference/chat_completion/chat/_stream", body)
    assert status == 200 and events[-1] == ("message", "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert calls == [{"index": 0, "id": "get_weather", "type": "function",
                      "function": {"name": "get_weather", "arguments": TOOL_ARGS}}]
    assert upstream.calls[-1][2]["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}

    call = {"id": calls[0]["id"], "type": "function", "function": calls[0]["function"]}
    messages += [{"role": "assistant", "content": None, "tool_calls": [call]},
                 {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat",
                                    headers={"content-type": "application/json", "accept": "application/json"},
                                    body={"messages": messages, "tools": tools})
    assert resp.body["choices"][0]["message"]["content"] == 'RESULT [{"output": "sunny"}]'
    assert resp.body["usage"]["total_tokens"] > 0
    contents = upstream.calls[-1][2]["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": json.loads(TOOL_ARGS)},
         "thoughtSignature": "skip_thought_signature_validator"}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}]}
    assert {token for _, token, _ in upstream.calls} == {"ya29.fake-token-1"}


async def test_stream_cut_is_an_in_band_error(http, upstream):
    await put(http, upstream, "chat_completion", "chat", "cut-stream")
    upstream.sim.stream_pieces = 5
    status, events = await stream(http, "/_inference/chat_completion/chat/_stream",
                                  {"messages": [{"role": "user", "content": "abcdefghij"}]})
    assert status == 200 and events[-1][0] == "error" and ("message", "[DONE]") not in events


async def test_own_urls_are_not_rewritten(es, http, upstream):
    # ES takes `url`/`streaming_url` from Model Garden providers only (validateServiceSettings)
    base = f"{upstream.url}/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/claude-own"
    await put(http, upstream, "completion", "comp", provider="anthropic", url=f"{base}:rawPredict",
              streaming_url=f"{base}:streamRawPredict")
    resp = await es.inference.completion(inference_id="comp", input="own url")
    assert resp.body == {"completion": [{"result": "OWN URL"}]}
    status, events = await stream(http, "/_inference/completion/comp/_stream", {"input": "abcd"})
    assert events[-1] == ("message", "[DONE]")
    assert [path.rsplit("/", 1)[1] for path, _, _ in upstream.calls] == ["claude-own:rawPredict",
                                                                         "claude-own:streamRawPredict"]


# ------------------------------------------------------------------------------ Anthropic on Vertex


async def test_anthropic_provider_uses_raw_predict(es, http, upstream):
    base = (f"{upstream.url}/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/"
            f"claude-sonnet-4@20250514")
    await put(http, upstream, "completion", "claude", "claude-sonnet-4@20250514", provider="anthropic",
              location="us-east5", url=f"{base}:rawPredict", streaming_url=f"{base}:streamRawPredict")
    resp = await es.inference.completion(inference_id="claude", input="hi claude")
    assert resp.body == {"completion": [{"result": "HI CLAUDE"}]}
    path, token, body = upstream.calls[-1]
    assert path == ("/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/"
                    "claude-sonnet-4@20250514:rawPredict") and token == "ya29.fake-token-1"
    assert body == {"anthropic_version": "vertex-2023-10-16", "messages": [{"role": "user", "content": "hi claude"}],
                    "max_tokens": 1024}  # no `stream: false` (AnthropicVertex sends none)
    status, events = await stream(http, "/_inference/completion/claude/_stream", {"input": "streamed"})
    assert status == 200 and events[-1] == ("message", "[DONE]")
    assert "".join(json.loads(d)["completion"][0]["delta"] for _, d in events[:-1]) == "STREAMED"
    assert upstream.calls[-1][0].endswith(":streamRawPredict") and upstream.calls[-1][2]["stream"] is True


# ------------------------------------------------------------------------------ the openai SDK on /v1


async def test_openai_sdk_embeddings_and_streamed_chat(gateway, http, upstream):
    await put(http, upstream, "text_embedding", "emb", "text-embedding-005")
    await put(http, upstream, "chat_completion", "chat")
    async with openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="x", max_retries=0) as client:
        resp = await client.embeddings.create(model="emb", input=["a b c"], encoding_format="float")
        assert resp.data[0].embedding == pytest.approx(fake_vector("a b c"), abs=1e-6)
        assert resp.usage.prompt_tokens == 3
        pieces = []
        async with await client.chat.completions.create(
                model="chat", messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "xyz"}],
                stream=True) as s:
            async for chunk in s:
                pieces.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(pieces) == "[sys] XYZ"
    assert upstream.exchanges == 1
