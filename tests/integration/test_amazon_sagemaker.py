"""`amazon_sagemaker` through `/_inference` (official `elasticsearch` client, raw SSE) and `/v1` (official
`openai` SDK), for both payload APIs (`openai`, `elastic`), in front of a simulated SageMaker Runtime
that verifies every SigV4 signature and streams real event-stream `PayloadPart` frames."""

from __future__ import annotations

import json

import openai
import pytest
from elasticsearch import ApiError

from tests.conftest import make_settings
from tests.fakes.aws_upstream import TOOL_INPUT, FakeSageMaker, fake_vector
from tests.sse import parse_sse


@pytest.fixture
async def sagemaker(serve_fake):
    return await serve_fake(FakeSageMaker(region="us-west-2", session_token=None))


@pytest.fixture
def gateway_settings(tmp_path, sagemaker):
    return make_settings(tmp_path, upstreams={"amazon_sagemaker": sagemaker.url})


def settings(sm, endpoint: str, api: str, **kw) -> dict:
    return {"access_key": sm.key.access_key, "secret_key": sm.key.secret_key, "region": sm.region,
            "endpoint_name": endpoint, "api": api, **kw}


async def put(es, task: str, inference_id: str, service_settings: dict, **extra) -> dict:
    resp = await es.inference.put(task_type=task, inference_id=inference_id, inference_config={
        "service": "amazon_sagemaker", "service_settings": service_settings, **extra})
    assert resp.body["service"] == "amazon_sagemaker"
    assert "fake/secret" not in json.dumps(resp.body)
    return resp.body


# ------------------------------------------------------------------------------ api=openai


async def test_openai_embeddings_with_headers_from_settings(es, sagemaker):
    await put(es, "text_embedding", "emb", settings(sagemaker, "openai-embed", "openai", dimensions=4,
                                                    inference_component_name="ic-e5"),
              task_settings={"custom_attributes": "c000b4f9-df62-4c85-a0bf-7c525f9104a4", "target_variant": "blue",
                             "session_id": "sess-1", "user": "u-7"})
    texts = ["first text", "second text"]
    resp = await es.inference.text_embedding(inference_id="emb", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    for vec, text in zip(vectors, texts):  # the fake answers out of order: `index` restores it
        assert vec == pytest.approx(fake_vector(text, 4), abs=1e-6)
    assert sagemaker.requests[-1] == {"input": texts, "user": "u-7", "dimensions": 4}
    seen = sagemaker.seen[-1]
    assert seen["path"] == "/endpoints/openai-embed/invocations"
    h = seen["headers"]
    assert h["x-amzn-sagemaker-custom-attributes"] == "c000b4f9-df62-4c85-a0bf-7c525f9104a4"
    assert (h["x-amzn-sagemaker-target-variant"], h["x-amzn-sagemaker-session-id"],
            h["x-amzn-sagemaker-inference-component"]) == ("blue", "sess-1", "ic-e5")
    assert "/us-west-2/sagemaker/aws4_request" in h["authorization"]
    # the SageMaker headers are under the signature, so a hop cannot change the routing
    assert "x-amzn-sagemaker-target-variant" in h["authorization"]
    await es.inference.text_embedding(inference_id="emb", input="one", task_settings={"target_variant": "green"})
    assert sagemaker.requests[-1]["input"] == "one"
    assert sagemaker.seen[-1]["headers"]["x-amzn-sagemaker-target-variant"] == "green"


async def test_openai_completion_and_chat(es, sagemaker):
    await put(es, "completion", "comp", settings(sagemaker, "openai-chat", "openai"))
    resp = await es.inference.completion(inference_id="comp", input="hello sagemaker")
    assert resp.body == {"completion": [{"result": "HELLO SAGEMAKER"}]}
    assert sagemaker.requests[-1]["messages"] == [{"role": "user", "content": "hello sagemaker"}]
    assert "model" not in sagemaker.requests[-1]
    await put(es, "chat_completion", "chat", settings(sagemaker, "openai-chat", "openai"))
    body = {"messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat", body=body,
                                    headers={"content-type": "application/json", "accept": "application/json"})
    call = resp.body["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == TOOL_INPUT


async def test_openai_chat_stream_reassembles_sse_across_payload_parts(http, es, sagemaker):
    await put(es, "chat_completion", "chat", settings(sagemaker, "openai-chat", "openai"),
              task_settings={"custom_attributes": "trace=1"})
    body = {"messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    async with http.post("/_inference/chat_completion/chat/_stream", json=body) as resp:
        assert resp.status == 200
        events = parse_sse((await resp.read()).decode())
    assert events[-1] == ("message", "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    args = "".join(tc["function"].get("arguments", "") for c in chunks for ch in c["choices"]
                   for tc in ch["delta"].get("tool_calls", []))
    assert json.loads(args) == TOOL_INPUT
    assert [c["usage"] for c in chunks if c.get("usage")] == [{"prompt_tokens": 5, "completion_tokens": 2,
                                                               "total_tokens": 7}]
    seen = sagemaker.seen[-1]
    assert seen["path"] == "/endpoints/openai-chat/invocations-response-stream"
    assert seen["headers"]["x-amzn-sagemaker-accept"] == "application/json"
    assert seen["headers"]["x-amzn-sagemaker-custom-attributes"] == "trace=1"


async def test_openai_completion_stream(http, es, sagemaker):
    await put(es, "completion", "comp", settings(sagemaker, "openai-chat", "openai"))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "abcdefg"}) as resp:
        events = parse_sse((await resp.read()).decode())
    assert events[-1] == ("message", "[DONE]")
    assert "".join(json.loads(d)["completion"][0]["delta"] for _, d in events[:-1]) == "ABCDEFG"


async def test_openai_api_has_no_rerank(es, sagemaker):
    await put(es, "rerank", "rr", settings(sagemaker, "openai-rerank", "openai"))
    with pytest.raises(ApiError) as exc:
        await es.inference.rerank(inference_id="rr", input=["a"], query="q")
    assert exc.value.meta.status == 405
    assert exc.value.body["error"]["reason"] == ("Task [rerank] is not compatible for service [sagemaker] and api "
                                                 "[openai]. Supported tasks: [chat_completion, completion, "
                                                 "text_embedding]")


# ------------------------------------------------------------------------------ api=elastic


@pytest.mark.parametrize("element, key", [("float", "text_embedding"), ("byte", "text_embedding_bytes")])
async def test_elastic_text_embedding(es, sagemaker, element, key):
    await put(es, "text_embedding", "emb", settings(sagemaker, f"elastic-embed-{element}", "elastic",
                                                    element_type=element, similarity="cosine"))
    resp = await es.inference.text_embedding(inference_id="emb", input=["a b", "c"], input_type="ingest")
    assert list(resp.body) == [key]
    got = [item["embedding"] for item in resp.body[key]]
    if element == "float":
        assert got[0] == pytest.approx(fake_vector("a b"), abs=1e-6)
    else:
        assert got[1] == [int(x * 200) for x in fake_vector("c")]
    assert sagemaker.requests[-1] == {"input": ["a b", "c"], "input_type": "ingest"}


async def test_elastic_sparse_embedding(es, sagemaker):
    await put(es, "sparse_embedding", "sp", settings(sagemaker, "elastic-sparse", "elastic"))
    resp = await es.inference.sparse_embedding(inference_id="sp", input="Hello sparse World")
    assert resp.body == {"sparse_embedding": [{"is_truncated": False, "embedding": {
        "hello": 1.0, "sparse": 0.5, "world": 0.333}}]}


async def test_elastic_rerank(es, sagemaker):
    await put(es, "rerank", "rr", settings(sagemaker, "elastic-rerank", "elastic"))
    docs = ["luke", "star wars main character", "leia", "wars"]
    resp = await es.inference.rerank(inference_id="rr", input=docs, query="star wars main character", top_n=2,
                                     return_documents=True)
    assert resp.body["rerank"][0] == {"index": 1, "relevance_score": 1.0, "text": "star wars main character"}
    assert [r["index"] for r in resp.body["rerank"]] == [1, 3]
    assert sagemaker.requests[-1] == {"input": docs, "query": "star wars main character", "return_documents": True,
                                      "top_n": 2}


async def test_elastic_completion_and_stream(http, es, sagemaker):
    await put(es, "completion", "comp", settings(sagemaker, "elastic-completion", "elastic"))
    resp = await es.inference.completion(inference_id="comp", input="hello")
    assert resp.body == {"completion": [{"result": "HELLO"}]}
    assert sagemaker.requests[-1] == {"input": "hello"}
    async with http.post("/_inference/completion/comp/_stream", json={"input": "streamed"}) as resp:
        events = parse_sse((await resp.read()).decode())
    assert events[-1] == ("message", "[DONE]")
    assert "".join(json.loads(d)["completion"][0]["delta"] for _, d in events[:-1]) == "STREAMED"


async def test_elastic_chat_stream(http, es, sagemaker):
    await put(es, "chat_completion", "chat", settings(sagemaker, "elastic-chat", "elastic"))
    body = {"messages": [{"role": "user", "content": "abc"}], "max_completion_tokens": 9}
    async with http.post("/_inference/chat_completion/chat/_stream", json=body) as resp:
        events = parse_sse((await resp.read()).decode())
    assert events[-1] == ("message", "[DONE]")
    text = "".join(ch["delta"].get("content") or "" for _, d in events[:-1] for ch in json.loads(d)["choices"])
    assert text == "ABC"
    assert sagemaker.requests[-1] == {"messages": [{"role": "user", "content": "abc"}], "max_completion_tokens": 9,
                                      "stream": True}


# ------------------------------------------------------------------------------ faults


async def test_bad_signature_is_403(es, sagemaker):
    wrong = settings(sagemaker, "openai-embed", "openai")
    wrong["secret_key"] = "wrong-secret"
    await put(es, "text_embedding", "emb", wrong)
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="emb", input="x")
    assert exc.value.meta.status == 403
    assert exc.value.body["error"]["reason"].startswith(
        "Received a permission denied error status code for request from inference entity id [emb] status [403]. "
        "Error message: [The request signature we calculated does not match")
    assert "wrong-secret" not in json.dumps(exc.value.body)


async def test_model_not_ready_429_is_retried_and_model_error_is_424(es, sagemaker):
    await put(es, "text_embedding", "emb", settings(sagemaker, "openai-embed", "openai"))
    sagemaker.fail_next(429, "ModelNotReadyException", "Model is not ready to serve inference requests.")
    resp = await es.inference.text_embedding(inference_id="emb", input="x")
    assert len(resp.body["text_embedding"]) == 1 and len(sagemaker.requests) == 2
    await put(es, "text_embedding", "broken", settings(sagemaker, "model-error", "openai"))
    with pytest.raises(ApiError) as exc:
        await es.inference.text_embedding(inference_id="broken", input="x")
    assert exc.value.meta.status == 424
    assert exc.value.body["error"]["reason"].endswith(
        "status [424]. Error message: [Received client error (400) from primary with message \"bad input\".]")


@pytest.mark.parametrize("endpoint, status", [("openai-chat-streamerror", 424), ("openai-chat-cut", 502)])
async def test_broken_streams_end_with_an_in_band_error(http, es, sagemaker, endpoint, status):
    await put(es, "completion", "comp", settings(sagemaker, endpoint, "openai"))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "a long enough answer"}) as resp:
        assert resp.status == 200
        events = parse_sse((await resp.read()).decode())
    assert events[-1][0] == "error" and ("message", "[DONE]") not in events
    assert json.loads(events[-1][1])["status"] == status


# ------------------------------------------------------------------------------ the /v1 facade


async def test_openai_sdk_embeddings_and_chat_stream(es, gateway, sagemaker):
    await put(es, "text_embedding", "emb", settings(sagemaker, "openai-embed", "openai"))
    await put(es, "chat_completion", "chat", settings(sagemaker, "openai-chat", "openai"))
    async with openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key="unused", max_retries=0) as client:
        emb = await client.embeddings.create(model="emb", input="vector please")
        assert emb.data[0].embedding == pytest.approx(fake_vector("vector please"), abs=1e-6)
        stream = await client.chat.completions.create(model="chat", stream=True,
                                                      messages=[{"role": "user", "content": "sdk stream"}])
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "SDK STREAM"
