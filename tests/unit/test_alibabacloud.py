"""The Alibaba Cloud AI Search adapter's pure functions on recorded request and response bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters import adapter_class
from adapters.alibabacloud import AlibabaCloudSearchAdapter, alibaba_error, sparse_tokens
from proxy.errors import RequestValidationError, StatusError, UpstreamError, ValidationError
from proxy.types import ChatMessage, ChatRequest, EmbedRequest, InputType, RerankRequest, TaskType, Usage
from tests.tasks import request_for


@dataclass
class Endpoint:
    task_type: TaskType
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=lambda: {"api_key": "OS-key"})
    inference_id: str = "ep"
    service: str = "alibabacloud-ai-search"


def adapter(task=TaskType.TEXT_EMBEDDING, task_settings=None, **settings):
    base = {"service_id": "ops-text-embedding-001", "host": "default-j01.platform-cn-shanghai.opensearch.aliyuncs.com",
            "workspace": "default"}
    return AlibabaCloudSearchAdapter(Endpoint(task, {**base, **settings}, task_settings or {}))


def body(up) -> dict:
    return json.loads(up.body)


def test_registered_under_its_service_name():
    assert adapter_class("alibabacloud-ai-search") is AlibabaCloudSearchAdapter


@pytest.mark.parametrize("task, kind", [(TaskType.TEXT_EMBEDDING, "text-embedding"),
                                        (TaskType.SPARSE_EMBEDDING, "text-sparse-embedding"),
                                        (TaskType.RERANK, "ranker"), (TaskType.COMPLETION, "text-generation")])
def test_workspace_urls_and_auth(task, kind):
    req = {TaskType.RERANK: RerankRequest(query="q", documents=["d"]),
           TaskType.COMPLETION: ChatRequest(messages=[ChatMessage(role="user", content="x")])}.get(
        task, EmbedRequest(inputs=["a"]))
    up = request_for(adapter(task), req)
    assert up.url == (f"https://default-j01.platform-cn-shanghai.opensearch.aliyuncs.com/v3/openapi/workspaces/"
                      f"default/{kind}/ops-text-embedding-001")
    assert up.headers["Authorization"] == "Bearer OS-key" and up.explicit_url is True
    assert request_for(adapter(task, http_schema="http"), req).url.startswith("http://default-j01")


def test_embedding_bodies_and_input_type():
    assert body(adapter().embed_request(EmbedRequest(inputs=["a"]))) == {"input": ["a"]}
    ad = adapter(task_settings={"input_type": "ingest"})
    assert body(ad.embed_request(EmbedRequest(inputs=["a"])))["input_type"] == "document"
    assert body(ad.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.SEARCH)))["input_type"] == "query"
    with pytest.raises(ValidationError):
        ad.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.CLASSIFICATION))
    with pytest.raises(RequestValidationError):
        ad.embed_request(EmbedRequest(inputs=["a"], dimensions=3))
    sparse = adapter(TaskType.SPARSE_EMBEDDING, task_settings={"return_token": True})
    assert body(sparse.sparse_request(EmbedRequest(inputs=["a"]))) == {"input": ["a"], "return_token": True}
    assert body(sparse.sparse_request(EmbedRequest(inputs=["a"], task_settings={"return_token": False}))) == {
        "input": ["a"], "return_token": False}
    assert [len(p.inputs) for p in adapter().split_embed(EmbedRequest(inputs=["x"] * 40))] == [32, 8]


def test_rerank_and_completion_bodies():
    rr = adapter(TaskType.RERANK).rerank_request(RerankRequest(query="q", documents=["a", "b"], top_n=1,
                                                              return_documents=True))
    assert body(rr) == {"query": "q", "docs": ["a", "b"]}
    comp = adapter(TaskType.COMPLETION, task_settings={"parameters": {"temperature": 0.4}})
    req = ChatRequest(messages=[ChatMessage(role="user", content=t) for t in ("a", "b", "c")])
    assert body(comp.chat_request(req)) == {"messages": [{"role": "user", "content": "a"},
                                                          {"role": "assistant", "content": "b"},
                                                          {"role": "user", "content": "c"}],
                                             "parameters": {"temperature": 0.4}}
    with pytest.raises(RequestValidationError):
        comp.chat_request(ChatRequest(messages=req.messages, max_tokens=5))
    with pytest.raises(StatusError) as exc:
        comp.chat_request(ChatRequest(messages=req.messages, stream=True))
    assert exc.value.status == 405


# recorded: ES Alibaba*ResponseEntity javadoc examples
EMBED = (b'{"request_id":"B4AB89C8-B135-xxxx-A6F8-2BAB801A2CE4","latency":38,"usage":{"token_count":3072},'
         b'"result":{"embeddings":[{"index":1,"embedding":[0.5,-8.240503375418484E-4]},'
         b'{"index":0,"embedding":[-0.02868066355586052,0.022033605724573135]}]}}')
SPARSE = ('{"request_id":"DDC4306F","latency":25,"usage":{"token_count":11},"result":{"sparse_embeddings":['
          '{"index":0,"embedding":[{"token_id":6,"weight":0.1014404296875,"token":""},{"token_id":163040,'
          '"weight":0.2841796875,"token":"科学技术"},{"token_id":354,"weight":0.1431884765625,"token":"是"}]},'
          '{"index":1,"embedding":[{"token_id":9803,"weight":0.1949462890625},{"token_id":7,"weight":-0.1}]}]}}'
          ).encode()
RERANK = (b'{"request_id":"450fcb80","latency":564.903929,"usage":{"doc_count":2},'
          b'"result":{"scores":[{"index":1,"score":1.37},{"index":0,"score":-0.3}]}}')
COMPLETION = ('{"request_id":"450fcb80-f796-46c1-8d69-e1e86d29aa9f","latency":564.903929,"result":{"text":"郑州"},'
              '"usage":{"output_tokens":6320,"input_tokens":35,"total_tokens":6355}}').encode()


def test_parse_embeddings_in_index_order():
    result = adapter().parse_embed(EmbedRequest(inputs=["a", "b"]), EMBED)
    assert [json.loads(bytes(v)) for v in result.vectors] == [[-0.02868066355586052, 0.022033605724573135],
                                                             [0.5, -8.240503375418484e-4]]
    assert result.usage == Usage(prompt_tokens=3072, total_tokens=3072)


def test_parse_sparse_like_es():
    result = adapter(TaskType.SPARSE_EMBEDDING).parse_sparse(EmbedRequest(inputs=["a", "b"]), SPARSE)
    # the empty token and the negative weight are dropped; without `token` the id is the name
    assert result.embeddings == [{"科学技术": 0.2841796875, "是": 0.1431884765625}, {"9803": 0.1949462890625}]
    assert sparse_tokens([{"token": "a.b", "weight": 1.0}, {"token_id": 3, "weight": 0}]) == {}


def test_parse_rerank_and_completion():
    rr = adapter(TaskType.RERANK).parse_rerank(RerankRequest(query="q", documents=["a", "b"]), RERANK)
    assert [(d.index, d.relevance_score) for d in rr.ranked] == [(1, 1.37), (0, -0.3)]
    comp = adapter(TaskType.COMPLETION).parse_chat(ChatRequest(messages=[]), COMPLETION)
    assert comp.content == "郑州" and comp.usage == Usage(prompt_tokens=35, completion_tokens=6320, total_tokens=6355)
    with pytest.raises(UpstreamError):
        adapter(TaskType.RERANK).parse_rerank(RerankRequest(query="q", documents=[]), b'{"result":{}}')


def test_error_body():
    # recorded: ES AlibabaCloudSearchErrorResponseEntity javadoc
    err = alibaba_error(b'{"request_id":"651B3087-8A07-xxxx-xxxx-9C4E7B60F52D","latency":0,"code":"InvalidParameter",'
                        b'"message":"JSON parse error: Cannot deserialize value of type `InputType` from String '
                        b'\\"xxx\\""}')
    assert err.code == "InvalidParameter" and err.message.startswith("JSON parse error")
