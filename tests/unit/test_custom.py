"""The `custom` service: its template engine, ES's JSON-path extractor and response parsers, and the
adapter's request building, with ES's messages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters import adapter_class
from adapters.custom import (CustomAdapter, CustomRequestError, TemplateError, extract, json_value, parse_completion,
                             parse_rerank, parse_sparse_embeddings, parse_text_embeddings, substitute)
from proxy.errors import RequestValidationError, StatusError, UpstreamError
from proxy.types import ChatMessage, ChatRequest, EmbedRequest, InputType, RerankRequest, TaskType

LEFTOVER = ("Found placeholder [{}] in field [{}] after replacement call, please check that all templates have a "
            "corresponding field definition.")


# ------------------------------------------------------------------------------ templates


def test_substitute_replaces_known_names():
    assert substitute("Bearer ${api_key}", {"api_key": "k"}, "header.Authorization") == "Bearer k"
    assert substitute("${a}${b} ${a}", {"a": "1", "b": "2"}, "f") == "12 1"
    assert substitute("no placeholders", {}, "f") == "no placeholders"


@pytest.mark.parametrize("source, field, placeholder", [
    ("x ${missing} y", "request", "${missing}"),
    ('{"a": ${input}, "b": ${b}}', "request", "${b}"),
    ("https://h/${region}/v1", "url", "${region}"),
    ("$${input}", "request", "${input}"),  # escaped: left as text, which ES then reports
])
def test_leftover_placeholder_is_the_es_error(source, field, placeholder):
    with pytest.raises(TemplateError) as exc:
        substitute(source, {"input": "[]"}, field)
    assert str(exc.value) == LEFTOVER.format(placeholder, field)


def test_defaults_and_unclosed_prefix():
    assert substitute("${model:-small}", {}, "request") == "small"
    assert substitute("${model:-small}", {"model": '"big"'}, "request") == '"big"'
    assert substitute("price ${ 5", {}, "request") == "price ${ 5"


def test_values_are_not_substituted_again():
    # StringSubstitutor would expand `${api_key}` inside an input; a user text must never pull in a secret
    params = {"input": json_value(["tell me ${api_key}"]), "api_key": '"s3cret"'}
    out = substitute('{"texts": ${input}}', params, "request")
    assert out == '{"texts": ["tell me ${api_key}"]}' and "s3cret" not in out


def test_json_value_matches_es_tojson():
    assert json_value("a \"q\"\né") == '"a \\"q\\"\\né"'
    assert json_value(["a", "b"]) == '["a","b"]'
    assert (json_value(3), json_value(0.5), json_value(True)) == ("3", "0.5", "true")


# ------------------------------------------------------------------------------ paths (ES MapPathExtractor tests)


ALIBABA = {"request_id": "B4AB89C8", "latency": 38, "usage": {"token_count": 3072},
           "result": {"embeddings": [{"index": 0, "embedding": [2, 4]}, {"index": 1, "embedding": [1, 2]}]}}


def test_extract_fields_and_lists():
    result = extract(ALIBABA, "$.result.embeddings[*].embedding")
    assert result.value == [[2, 4], [1, 2]]
    assert result.fields == ["result.embeddings", "result.embeddings.embedding"]
    assert extract(ALIBABA, "$.usage.token_count").value == 3072
    nested = {"result": [{"key": [{"a": 1.1}, {"a": 2.2}]}, {"key": [{"a": 3.3}, {"a": 4.4}]}]}
    # unlike JSONPath, inner lists are kept
    assert extract(nested, "$.result[*].key[*].a").value == [[1.1, 2.2], [3.3, 4.4]]
    assert extract({}, "$.a") is None


@pytest.mark.parametrize("path, message", [
    ("result.embeddings", "Path [result.embeddings] must start with a dollar sign ($)"),
    ("$.result.missing", "Unable to find field [missing] in map"),
    ("$.latency.x", "Current path [.x] matched the dot field pattern but the current object is not a map, found "
                    "invalid type [Integer] instead."),
    ("$.usage[*]", "Current path [[*]] matched the array field pattern but the current object is not a list, found "
                   "invalid type [HashMap] instead."),
    ("$.result[0]", "Invalid path received [[0]], unable to extract a field name."),
])
def test_extract_errors(path, message):
    with pytest.raises(ValueError) as exc:
        extract(ALIBABA, path)
    assert str(exc.value) == message


# ------------------------------------------------------------------------------ response parsers


def test_text_embeddings_parser():
    data = {"data": [{"embedding": [0.1, -0.2]}, {"embedding": [1, 2]}]}
    assert parse_text_embeddings(data, "$.data[*].embedding") == ([[0.1, -0.2], [1.0, 2.0]], "float")
    assert parse_text_embeddings({"e": [[1, -128], [127, 0]]}, "$.e", "byte") == ([[1, -128], [127, 0]], "byte")
    assert parse_text_embeddings({"e": [[1, 5]]}, "$.e", "binary")[1] == "bit"
    with pytest.raises(ValueError) as exc:
        parse_text_embeddings({"data": [{"embedding": [0.1, "x"]}]}, "$.data[*].embedding")
    assert str(exc.value) == ("Failed to parse text embedding entry [0], error: Failed to parse list entry [1], error: "
                              "Unable to convert field [data.embedding] of type [String] to Number")
    with pytest.raises(ValueError) as exc:
        parse_text_embeddings({"data": {"embedding": 1}}, "$.data")
    assert str(exc.value) == "Extracted field [data] is an invalid type, expected a list but received [HashMap]"
    with pytest.raises(ValueError):
        parse_text_embeddings({"e": [[300]]}, "$.e", "byte")


SPARSE = {"result": {"sparse_embeddings": [
    {"index": 0, "embedding": [{"token_id": 6, "weight": 0.101}, {"token_id": 163040, "weight": 0.284}]},
    {"index": 1, "embedding": [{"token_id": 9803, "weight": 0.195}]}]}}


def test_sparse_parser():
    out = parse_sparse_embeddings(SPARSE, "$.result.sparse_embeddings[*].embedding[*].token_id",
                                  "$.result.sparse_embeddings[*].embedding[*].weight")
    assert out == [{"6": 0.101, "163040": 0.284}, {"9803": 0.195}]
    uneven = {"t": [[1, 2]], "w": [[0.5]]}
    with pytest.raises(ValueError) as exc:
        parse_sparse_embeddings(uneven, "$.t", "$.w")
    assert str(exc.value) == ("Failed to parse sparse embedding entry [0], error: The extracted tokens list is size "
                              "[2] but the weights list is size [1]. The list sizes must be equal.")


def test_rerank_parser():
    data = {"results": [{"index": 2, "relevance_score": 0.9, "document": {"text": "c"}},
                        {"index": 0, "relevance_score": 0.1, "document": {"text": "a"}}]}
    ranked = parse_rerank(data, "$.results[*].relevance_score", "$.results[*].index", "$.results[*].document.text")
    assert [(d.index, d.relevance_score, d.text) for d in ranked] == [(2, 0.9, "c"), (0, 0.1, "a")]
    # without indices the list order is the index
    assert [d.index for d in parse_rerank({"s": [0.3, 0.7]}, "$.s")] == [0, 1]
    with pytest.raises(ValueError) as exc:
        parse_rerank({"s": [0.3, 0.7], "i": [1]}, "$.s", "$.i")
    assert str(exc.value) == "The number of index fields [1] was not the same as the number of scores [2]"
    with pytest.raises(ValueError) as exc:
        parse_rerank({"s": "high"}, "$.s")
    assert str(exc.value) == ("Failed to parse rerank scores, error: Extracted field [s] is an invalid type, "
                              "expected a list but received [String]")


def test_completion_parser():
    assert parse_completion({"choices": [{"message": {"content": "a"}}, {"message": {"content": "b"}}]},
                            "$.choices[*].message.content") == ["a", "b"]
    assert parse_completion({"result": {"text": "t"}}, "$.result.text") == ["t"]
    with pytest.raises(ValueError) as exc:
        parse_completion({"result": {"text": 3}}, "$.result.text")
    assert str(exc.value) == ("Extracted field [result.text] from path [$.result.text] is an invalid type, expected a "
                              "list or a string but received [Integer]")


# ------------------------------------------------------------------------------ the adapter


@dataclass
class Endpoint:
    task_type: TaskType
    service_settings: dict[str, Any]
    task_settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=lambda: {"secret_parameters": {"api_key": "sk-SECRET",
                                                                                  "org": "acme"}})
    inference_id: str = "ep"
    service: str = "custom"


def adapter(task=TaskType.TEXT_EMBEDDING, request='{"input": ${input}}', parser=None, task_settings=None, **settings):
    parser = parser or {"text_embeddings": "$.data[*].embedding"}
    base = {"url": "https://api.example.com/v1/embed", "request": request, "response": {"json_parser": parser}}
    return CustomAdapter(Endpoint(task, {**base, **settings}, task_settings or {}))


def test_registered_under_its_service_name():
    assert adapter_class("custom") is CustomAdapter


def test_url_query_and_headers_take_raw_strings():
    ad = adapter(url="https://api.example.com/${org}/embed?fixed=1",
                 query_parameters=[["key", "${api_key}"], ["q", "a b&c"]],
                 headers={"Authorization": "Bearer ${api_key}", "content-type": "text/plain", "X-N": "${n}"},
                 task_settings={"parameters": {"n": "7", "count": 3}})
    up = ad.embed_request(EmbedRequest(inputs=["a"]))
    assert up.url == "https://api.example.com/acme/embed?fixed=1&key=sk-SECRET&q=a+b%26c"
    assert up.headers == {"content-type": "text/plain", "Authorization": "Bearer sk-SECRET", "X-N": "7"}
    assert up.explicit_url is True
    # non-string parameters are not strings for the URL or headers (ES addStringParams)
    with pytest.raises(CustomRequestError) as exc:
        adapter(headers={"X-C": "${count}"}, task_settings={"parameters": {"count": 3}}).embed_request(
            EmbedRequest(inputs=["a"]))
    assert exc.value.caused_by.reason == LEFTOVER.format("${count}", "header.X-C")


def test_body_takes_json_values_and_request_values_last():
    template = '{"key": ${api_key}, "n": ${n}, "on": ${on}, "input": ${input}, "type": ${input_type}}'
    ad = adapter(request=template, input_type={"translation": {"INGEST": "doc"}, "default": "any"},
                 task_settings={"parameters": {"n": 2.5, "on": True, "input": "shadowed"}})
    sent = json.loads(ad.embed_request(EmbedRequest(inputs=["a", "b"], input_type=InputType.INGEST)).body)
    assert sent == {"key": "sk-SECRET", "n": 2.5, "on": True, "input": ["a", "b"], "type": "doc"}
    sent = json.loads(ad.embed_request(EmbedRequest(inputs=["a"], input_type=InputType.SEARCH)).body)
    assert sent["type"] == "any"
    assert json.loads(adapter(request='{"t": ${input_type}}').embed_request(EmbedRequest(inputs=["a"])).body) == {
        "t": ""}


def test_rerank_and_completion_values():
    rr = adapter(TaskType.RERANK, request='{"q": ${query}, "d": ${input}, "n": ${top_n}, "r": ${return_documents}}',
                 parser={"relevance_score": "$.s"})
    sent = json.loads(rr.rerank_request(RerankRequest(query='say "hi"', documents=["x"], top_n=1,
                                                     return_documents=False)).body)
    assert sent == {"q": 'say "hi"', "d": ["x"], "n": 1, "r": False}
    comp = adapter(TaskType.COMPLETION, request='{"prompt": ${input}}', parser={"completion_result": "$.t"})
    req = ChatRequest(messages=[ChatMessage(role="user", content="first"), ChatMessage(role="user", content="2nd")])
    assert json.loads(comp.chat_request(req).body) == {"prompt": "first"}  # ES: the first input only
    with pytest.raises(RequestValidationError):
        comp.chat_request(ChatRequest(messages=req.messages, temperature=0.2))
    with pytest.raises(StatusError) as exc:
        comp.chat_request(ChatRequest(messages=req.messages, stream=True))
    assert exc.value.status == 405


def test_template_errors_never_show_secret_values():
    ad = adapter(request='{"k": ${api_key}, "x": ${nope}}', url="https://h/${api_key}/${zone}")
    with pytest.raises(CustomRequestError) as exc:
        ad.embed_request(EmbedRequest(inputs=["a"]))
    assert exc.value.reason == "Failed to construct the custom service request" and exc.value.status == 400
    assert exc.value.caused_by.reason == LEFTOVER.format("${zone}", "url")
    assert "sk-SECRET" not in repr(exc.value.__dict__) and "sk-SECRET" not in str(exc.value)


def test_batch_size_setting():
    assert [len(p.inputs) for p in adapter().split_embed(EmbedRequest(inputs=["x"] * 25))] == [10, 10, 5]
    assert [len(p.inputs) for p in adapter(batch_size=4).split_embed(EmbedRequest(inputs=["x"] * 9))] == [4, 4, 1]


def test_dimensions_and_user_are_rejected():
    with pytest.raises(RequestValidationError):
        adapter().embed_request(EmbedRequest(inputs=["a"], dimensions=3))
    with pytest.raises(RequestValidationError):
        adapter().embed_request(EmbedRequest(inputs=["a"], user="u"))


def test_each_task_parser():
    emb = adapter().parse_embed(EmbedRequest(inputs=["a"]), b'{"data":[{"embedding":[0.5,1]}]}')
    assert emb.vectors == [[0.5, 1.0]] and emb.element_type == "float"
    sparse = adapter(TaskType.SPARSE_EMBEDDING, parser={
        "sparse_result": {"path": "$.result.sparse_embeddings[*]",
                          "value": {"sparse_token": "$.embedding[*].token_id",
                                    "sparse_weight": "$.embedding[*].weight"}}})
    assert sparse.parse_sparse(EmbedRequest(inputs=["a", "b"]), json.dumps(SPARSE).encode()).embeddings == [
        {"6": 0.101, "163040": 0.284}, {"9803": 0.195}]
    with pytest.raises(StatusError) as exc:
        adapter(TaskType.RERANK, parser={"reranked_index": "$.i"}).parse_rerank(
            RerankRequest(query="q", documents=[]), b"{}")
    assert exc.value.reason == ("[service_settings.response.json_parser] does not contain the required setting "
                                "[relevance_score]")
    with pytest.raises(UpstreamError) as exc:
        adapter().parse_embed(EmbedRequest(inputs=["a"]), b'{"data": 1}')
    assert exc.value.reason == ("Current path [[*].embedding] matched the array field pattern but the current object "
                                "is not a list, found invalid type [Integer] instead.")
