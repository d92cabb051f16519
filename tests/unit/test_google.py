"""The Gemini family (Google AI Studio and Vertex AI) on recorded request and response bodies."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.base import SSEEvent, StreamCut
from adapters.google import GeminiStreamParser, GoogleAiStudioAdapter, gemini_chat_body, google_error, parse_gemini_chat
from adapters.vertex import GoogleVertexAiAdapter, load_service_account, signed_jwt
from proxy.errors import GatewayError, UpstreamError
from proxy.sse import SSEDecoder
from proxy.types import (ChatMessage, ChatRequest, EmbedRequest, FunctionCall, InputType, RerankRequest, TaskType,
                         ToolCall, Usage)
from tests.canonical import typed

T = TaskType

# Recorded Gemini API answers (gemini-2.5-flash), from junjihashimoto/louter test-data/gemini, shortened
FUNCTION_CALL_RESPONSE = (
    b'{"candidates": [{"content": {"parts": [{"functionCall": {"name": "getWeather","args": {"location": "Tokyo"}},'
    b'"thoughtSignature": "CikBcsjafFK168Ib"}],"role": "model"},"finishReason": "STOP","index": 0,'
    b'"finishMessage": "Model generated function call(s)."}],"usageMetadata": {"promptTokenCount": 83,'
    b'"candidatesTokenCount": 14,"totalTokenCount": 201,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 83}],'
    b'"thoughtsTokenCount": 104},"modelVersion": "gemini-2.5-flash","responseId": "qpc2afWVFJK4vr0Pq6WiyAU"}')

STREAM = (
    'data: {"candidates": [{"content": {"parts": [{"text": "Okay, let\'s create a Tetris game \\u00e9\\u6f22"}],'
    '"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 49,'
    '"totalTokenCount": 2095,"thoughtsTokenCount": 2042},"modelVersion": "gemini-2.5-flash",'
    '"responseId": "IZI2acSKMoWl0-kPmYj2yQc"}\r\n\r\n'
    'data: {"candidates": [{"content": {"parts": [{"text": "` is primarily for Unix \xe2\x82\xac"}],"role": "model"},'
    '"index": 0}],"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 97,"totalTokenCount": 2143,'
    '"thoughtsTokenCount": 2042},"modelVersion": "gemini-2.5-flash","responseId": "IZI2acSKMoWl0-kPmYj2yQc"}\r\n\r\n'
    'data: {"candidates": [{"content": {"parts": [{"text": ", hold functionality, sound, high scores, etc."}],'
    '"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 4,'
    '"candidatesTokenCount": 5947,"totalTokenCount": 7993,"thoughtsTokenCount": 2042},'
    '"modelVersion": "gemini-2.5-flash","responseId": "IZI2acSKMoWl0-kPmYj2yQc"}\r\n\r\n').encode("latin-1")

TOOL_STREAM = (b'data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "getWeather",'
               b'"args": {"location": "Tokyo", "n": 1.50}},"thoughtSignature": "Cik"}],"role": "model"},'
               b'"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 83,'
               b'"candidatesTokenCount": 14,"totalTokenCount": 201,"thoughtsTokenCount": 104},'
               b'"modelVersion": "gemini-2.5-flash","responseId": "qpc2a"}\n\n')


def endpoint(service: str, task: TaskType, settings: dict, secrets: dict, task_settings: dict | None = None):
    return SimpleNamespace(inference_id="ep", task_type=task, service=service, service_settings=settings,
                           task_settings=task_settings or {}, secrets=secrets)


def studio(task=T.CHAT_COMPLETION, **settings) -> GoogleAiStudioAdapter:
    return GoogleAiStudioAdapter(endpoint("googleaistudio", task, {"model_id": "gemini-2.5-flash", **settings},
                                          {"api_key": "AIza/key+1"}))


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def replay(parser, raw: bytes, split: int | None = None) -> list:
    """Feed `raw` through the SSE decoder in two pieces cut at `split` (or whole)."""
    decoder = SSEDecoder()
    pieces = [raw] if split is None else [raw[:split], raw[split:]]
    out = []
    for piece in pieces:
        for frame in decoder.feed(piece):
            out.extend(parser.feed(frame))
    for frame in decoder.close():
        out.extend(parser.feed(frame))
    out.extend(parser.finish())
    return out


# ------------------------------------------------------------------------------ AI Studio requests


def test_embedding_request_url_key_and_body():
    a = studio(T.TEXT_EMBEDDING, model_id="text-embedding-004", dimensions=256)
    up = a.embed_request(EmbedRequest(inputs=["a", "b"], input_type=InputType.SEARCH))
    assert up.url == "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:batchEmbedContents"
    assert not up.explicit_url and up.headers["x-goog-api-key"] == "AIza/key+1"  # in a header, never the URL
    assert json.loads(up.body) == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": t}], "role": "user"}, "taskType": "RETRIEVAL_QUERY",
         "outputDimensionality": 256} for t in ("a", "b")]}


@pytest.mark.parametrize("input_type, task_type", [(InputType.INGEST, "RETRIEVAL_DOCUMENT"),
                                                   (InputType.SEARCH, "RETRIEVAL_QUERY"),
                                                   (InputType.CLASSIFICATION, "CLASSIFICATION"),
                                                   (InputType.CLUSTERING, "CLUSTERING"), (None, None)])
def test_input_type_mapping(input_type, task_type):
    body = json.loads(studio(T.TEXT_EMBEDDING).embed_request(EmbedRequest(inputs=["x"], input_type=input_type)).body)
    assert body["requests"][0].get("taskType") == task_type
    vertex = vertex_adapter(T.TEXT_EMBEDDING)
    body = json.loads(vertex.embed_request(EmbedRequest(inputs=["x"], input_type=input_type)).body)
    assert body["instances"][0].get("task_type") == task_type


def test_embedding_user_and_request_dimensions():
    a = studio(T.TEXT_EMBEDDING)
    with pytest.raises(GatewayError, match=r"does not support the \[user\] parameter"):
        a.embed_request(EmbedRequest(inputs=["x"], user="u"))
    body = json.loads(a.embed_request(EmbedRequest(inputs=["x"], dimensions=64)).body)
    assert body["requests"][0]["outputDimensionality"] == 64


def test_embedding_response_vectors_are_passed_raw():
    a = studio(T.TEXT_EMBEDDING)
    body = b'{"embeddings": [{"values": [0.1, -0.25]}, {"values": [1e-3, 2]}]}'
    result = a.parse_embed(EmbedRequest(inputs=["a", "b"]), body)
    assert [bytes(v) for v in result.vectors] == [b"[0.1, -0.25]", b"[1e-3, 2]"]
    with pytest.raises(UpstreamError, match="malformed"):
        a.parse_embed(EmbedRequest(inputs=["a"]), body)
    assert a.embed_batch_size == 100
    assert [len(p.inputs) for p in a.split_embed(EmbedRequest(inputs=["x"] * 250))] == [100, 100, 50]


def test_chat_and_stream_urls():
    a = studio()
    up = a.chat_request(ChatRequest(messages=[user("hi")]))
    assert up.url.endswith("/v1beta/models/gemini-2.5-flash:generateContent")
    up = a.chat_request(ChatRequest(messages=[user("hi")], stream=True, model="models/gemini-pro"))
    assert up.url.endswith("/v1beta/models/gemini-pro:streamGenerateContent?alt=sse")


def test_completion_body_like_es():
    body = json.loads(studio(T.COMPLETION).chat_request(ChatRequest(messages=[user("a"), user("b")])).body)
    assert body == {"contents": [{"role": "user", "parts": [{"text": "a"}]},
                                 {"role": "user", "parts": [{"text": "b"}]}]}


def test_full_chat_translation_with_tools():
    args = '{"city":  "Paris", "n": 1.50}'  # odd spacing and float text must survive unchanged
    req = ChatRequest(
        messages=[
            ChatMessage(role="system", content="be brief"),
            ChatMessage(role="user", content=[
                {"type": "text", "text": "weather?"}, {"type": "text", "text": ""},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}}]),
            ChatMessage(role="assistant", content="", tool_calls=[
                ToolCall(id="get_weather", function=FunctionCall(name="get_weather", arguments=args)),
                ToolCall(id="call-7", function=FunctionCall(name="get_time", arguments=None))]),
            ChatMessage(role="tool", tool_call_id="get_weather", content='{"temp": 21}'),
            ChatMessage(role="tool", tool_call_id="call-7", content="noon"),
            ChatMessage(role="developer", content=[{"type": "text", "text": "no emojis"}]),
            ChatMessage(role="assistant", content="It is 21C."),
        ],
        max_tokens=100, temperature=0.5, top_p=0.9, stop=["END"], seed=7, response_format={"type": "json_object"},
        tools=[{"type": "function", "function": {"name": "get_weather", "description": "d",
                                                 "parameters": {"type": "object"}}},
               {"type": "function", "function": {"name": "get_time", "parameters": {}}}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    raw = studio().chat_request(typed(req)).body
    assert b'"args":{"city":  "Paris", "n": 1.50}' in raw
    body = json.loads(raw)
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "weather?"}, {"inlineData": {"mimeType": "image/png", "data": "AAA="}}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "n": 1.5}},
             "thoughtSignature": "skip_thought_signature_validator"},
            {"functionCall": {"name": "get_time", "args": {}, "id": "call-7"}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
            {"functionResponse": {"name": "get_time", "id": "call-7", "response": {"output": "noon"}}}]},
        {"role": "model", "parts": [{"text": "It is 21C."}]}]
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}, {"text": "no emojis"}]}
    assert body["generationConfig"] == {"maxOutputTokens": 100, "temperature": 0.5, "topP": 0.9,
                                        "stopSequences": ["END"], "seed": 7, "responseMimeType": "application/json"}
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "d", "parametersJsonSchema": {"type": "object"}}, {"name": "get_time"}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}


@pytest.mark.parametrize("choice, config", [("auto", None), ("none", {"functionCallingConfig": {"mode": "NONE"}}),
                                            ("required", {"functionCallingConfig": {"mode": "ANY"}})])
def test_tool_choice_strings(choice, config):
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = gemini_chat_body(typed(ChatRequest(messages=[user("x")], tools=tools, tool_choice=choice)),
                            "googleaistudio")
    assert body.get("toolConfig") == config


@pytest.mark.parametrize("req, message", [
    (ChatRequest(messages=[user("x")], user="u"), r"does not support the \[user\] parameter"),
    (ChatRequest(messages=[ChatMessage(role="user", content="x", name="bob")]), r"\[messages.name\]"),
    (ChatRequest(messages=[ChatMessage(role="critic", content="x")]), r"Role \[critic\] not supported"),
    (ChatRequest(messages=[ChatMessage(role="system", content="")]), "System message cannot be empty"),
    (ChatRequest(messages=[ChatMessage(role="system", content="only system")]), "at least one non-system"),
    (ChatRequest(messages=[ChatMessage(role="tool", content="x")]), r"require a \[tool_call_id\]"),
    (ChatRequest(messages=[ChatMessage(role="assistant", tool_calls=[
        ToolCall(id="1", function=FunctionCall(name="f", arguments="[1]"))])]), "must be a JSON object"),
    (ChatRequest(messages=[ChatMessage(role="user", content=[{"type": "image_url", "image_url": {
        "url": "https://x/y.png"}}])]), "Only base64 data URLs"),
    (ChatRequest(messages=[ChatMessage(role="user", content=[{"type": "input_audio", "input_audio": {
        "data": "AAA=", "format": "wav"}}])]), r"Type \[input_audio\]"),
    (ChatRequest(messages=[user("x")], tools=[{"type": "function", "function": {"name": "f", "strict": True}}]),
     r"\[tools.function.strict\]"),
    (ChatRequest(messages=[user("x")], tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="maybe"),
     r"Tool choice value \[maybe\]"),
    (ChatRequest(messages=[user("x")], tool_choice="auto"), r"\[tool_choice\] needs \[tools\]"),
    (ChatRequest(messages=[user("x")], response_format={"type": "grammar"}), r"Response format type \[grammar\]"),
])
def test_unsupported_parameters_are_rejected(req, message):
    with pytest.raises(GatewayError, match=message) as exc:
        studio().chat_request(typed(req))
    assert exc.value.status == 400


def test_json_schema_response_format():
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    body = gemini_chat_body(ChatRequest(messages=[user("x")], response_format=fmt), "googleaistudio")
    assert body["generationConfig"]["responseJsonSchema"] == {"type": "object"}


# ------------------------------------------------------------------------------ responses


def test_recorded_function_call_response():
    result = parse_gemini_chat(FUNCTION_CALL_RESPONSE, "fallback")
    assert result.id == "qpc2afWVFJK4vr0Pq6WiyAU" and result.model == "gemini-2.5-flash"
    assert result.content is None and result.finish_reason == "tool_calls"
    assert result.tool_calls == [ToolCall(id="getWeather", function=FunctionCall(name="getWeather",
                                                                                 arguments='{"location": "Tokyo"}'))]
    assert result.usage == Usage(prompt_tokens=83, completion_tokens=118, total_tokens=201, reasoning_tokens=104)


def test_text_response_skips_thoughts_and_maps_finish():
    body = (b'{"candidates":[{"content":{"parts":[{"text":"thinking...","thought":true},{"text":"Hel"},{"text":"lo"}],'
            b'"role":"model"},"finishReason":"MAX_TOKENS","index":0}],"usageMetadata":{"promptTokenCount":2,'
            b'"candidatesTokenCount":3,"totalTokenCount":5}}')
    result = parse_gemini_chat(body, "gemini-x")
    assert (result.content, result.finish_reason, result.model) == ("Hello", "length", "gemini-x")
    blocked = parse_gemini_chat(b'{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":2,'
                                b'"totalTokenCount":2}}', "m")
    assert blocked.finish_reason == "content_filter" and blocked.content is None
    with pytest.raises(UpstreamError, match="malformed"):
        parse_gemini_chat(b'{"candidates": 3}', "m")


def test_error_bodies():
    body = (b'{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED",'
            b'"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"22s"}]}}')
    err = google_error(body)
    assert (err.message, err.type, err.code) == ("Resource has been exhausted", "RESOURCE_EXHAUSTED", "429")
    assert google_error(b'[' + body + b']').message == "Resource has been exhausted"
    oauth = google_error(b'{"error":"invalid_grant","error_description":"Invalid JWT Signature."}')
    assert (oauth.message, oauth.type) == ("Invalid JWT Signature.", "invalid_grant")
    assert google_error(b"upstream connect error").message == "upstream connect error"
    assert google_error(b"") is None


# ------------------------------------------------------------------------------ streams


def _expected_stream() -> list:
    return replay(GeminiStreamParser("m"), STREAM)


def test_recorded_stream_deltas_and_usage_once():
    deltas = _expected_stream()
    texts = [d.content for d in deltas if d.content]
    assert "".join(texts) == ("Okay, let's create a Tetris game \u00e9\u6f22` is primarily for Unix \u20ac, hold "
                              "functionality, sound, high scores, etc.")
    assert deltas[0].role == "assistant" and all(d.role is None for d in deltas[1:])
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    usages = [d.usage for d in deltas if d.usage]
    # cumulative usage repeated in every chunk: only the last, once, thinking tokens included
    assert usages == [Usage(prompt_tokens=4, completion_tokens=5947 + 2042, total_tokens=7993, reasoning_tokens=2042)]
    assert deltas[-1].usage is not None and all(d.id == "IZI2acSKMoWl0-kPmYj2yQc" for d in deltas)


def test_stream_split_at_every_byte_boundary_gives_identical_deltas():
    expected = _expected_stream()
    for split in range(1, len(STREAM)):
        assert replay(GeminiStreamParser("m"), STREAM, split) == expected, split


def test_tool_call_stream_keeps_arguments_intact():
    expected = replay(GeminiStreamParser("m"), TOOL_STREAM)
    call = expected[0].tool_calls[0]
    assert (call.index, call.id, call.type, call.function.name) == (0, "getWeather", "function", "getWeather")
    assert call.function.arguments == '{"location": "Tokyo", "n": 1.50}'
    assert [d.finish_reason for d in expected if d.finish_reason] == ["tool_calls"]
    for split in range(1, len(TOOL_STREAM)):
        assert replay(GeminiStreamParser("m"), TOOL_STREAM, split) == expected


def test_stream_without_finish_reason_is_cut():
    cut = STREAM[:STREAM.rindex(b"data:")]
    with pytest.raises(StreamCut):
        replay(GeminiStreamParser("m"), cut)
    with pytest.raises(StreamCut):
        replay(GeminiStreamParser("m"), b"")


def test_in_stream_error_object_is_an_upstream_error():
    parser = GeminiStreamParser("m")
    with pytest.raises(UpstreamError, match=r"reported an error in the stream: \[Internal error encountered.\]"):
        parser.feed(SSEEvent('{"error": {"code": 500, "message": "Internal error encountered.", '
                             '"status": "INTERNAL"}}'))
    with pytest.raises(UpstreamError, match="malformed stream event"):
        GeminiStreamParser("m").feed(SSEEvent("{not json"))


# ------------------------------------------------------------------------------ Vertex AI

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption()).decode()
ACCOUNT = json.dumps({"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com", "private_key": PEM,
                      "private_key_id": "k1", "token_uri": "https://oauth2.example/token"})


def vertex_adapter(task=T.CHAT_COMPLETION, task_settings=None, **settings) -> GoogleVertexAiAdapter:
    base = {"model_id": "gemini-2.5-flash", "project_id": "proj"}
    return GoogleVertexAiAdapter(endpoint("googlevertexai", task, {**base, **settings},
                                          {"service_account_json": ACCOUNT}, task_settings))


def test_vertex_urls_follow_the_location():
    up = vertex_adapter(T.TEXT_EMBEDDING, model_id="text-embedding-005").embed_request(EmbedRequest(inputs=["x"]))
    assert up.url == ("https://aiplatform.googleapis.com/v1/projects/proj/locations/global/publishers/google/models/"
                      "text-embedding-005:predict") and not up.explicit_url
    a = vertex_adapter(location="us-central1")
    assert a.chat_request(ChatRequest(messages=[user("x")])).url == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/proj/locations/us-central1/publishers/google/"
        "models/gemini-2.5-flash:generateContent")
    assert a.chat_request(ChatRequest(messages=[user("x")], stream=True, model="gemini-pro")).url.endswith(
        "/models/gemini-pro:streamGenerateContent?alt=sse")
    rr = vertex_adapter(T.RERANK, location="europe-west1").rerank_request(RerankRequest(query="q", documents=["d"]))
    assert rr.url == ("https://discoveryengine.googleapis.com/v1/projects/proj/locations/global/rankingConfigs/"
                      "default_ranking_config:rank")
    assert "Authorization" not in a.chat_request(ChatRequest(messages=[user("x")])).headers


def test_vertex_own_urls_are_explicit_and_one_serves_both():
    a = vertex_adapter(url="https://garden.example/predict")
    for stream in (False, True):
        up = a.chat_request(ChatRequest(messages=[user("x")], stream=stream))
        assert (up.url, up.explicit_url) == ("https://garden.example/predict", True)
    b = vertex_adapter(url="https://g/plain", streaming_url="https://g/stream")
    assert b.chat_request(ChatRequest(messages=[user("x")], stream=True)).url == "https://g/stream"
    assert b.chat_request(ChatRequest(messages=[user("x")])).url == "https://g/plain"


def test_vertex_embeddings_body_parse_and_batch_size():
    a = vertex_adapter(T.TEXT_EMBEDDING, {"auto_truncate": True}, dimensions=128, max_batch_size=5)
    body = json.loads(a.embed_request(EmbedRequest(inputs=["a b", "c"], input_type=InputType.INGEST)).body)
    assert body == {"instances": [{"content": "a b", "task_type": "RETRIEVAL_DOCUMENT"},
                                  {"content": "c", "task_type": "RETRIEVAL_DOCUMENT"}],
                    "parameters": {"autoTruncate": True, "outputDimensionality": 128}}
    req = EmbedRequest(inputs=["a", "b"], task_settings={"auto_truncate": False})
    assert json.loads(a.embed_request(req).body)["parameters"]["autoTruncate"] is False
    resp = (b'{"predictions":[{"embeddings":{"statistics":{"truncated":false,"token_count":2},"values":[0.5,1]}},'
            b'{"embeddings":{"statistics":{"truncated":false,"token_count":1},"values":[2,3]}}],"metadata":{}}')
    result = a.parse_embed(req, resp)
    assert [bytes(v) for v in result.vectors] == [b"[0.5,1]", b"[2,3]"]
    assert result.usage == Usage(prompt_tokens=3, total_tokens=3)
    assert [len(p.inputs) for p in a.split_embed(EmbedRequest(inputs=["x"] * 12))] == [5, 5, 2]
    assert vertex_adapter(T.TEXT_EMBEDDING).embed_batch_size == 250
    assert "parameters" not in json.loads(vertex_adapter(T.TEXT_EMBEDDING).embed_request(EmbedRequest(
        inputs=["x"])).body)


def test_vertex_rerank_body_and_parse():
    a = vertex_adapter(T.RERANK, model_id="semantic-ranker-512@latest")
    req = RerankRequest(query="q", documents=["d0", "d1"], top_n=1, return_documents=False)
    assert json.loads(a.rerank_request(req).body) == {
        "model": "semantic-ranker-512@latest", "query": "q", "records": [{"id": "0", "content": "d0"},
                                                                         {"id": "1", "content": "d1"}],
        "topN": 1, "ignoreRecordDetailsInResponse": True}
    assert "ignoreRecordDetailsInResponse" not in json.loads(a.rerank_request(RerankRequest(query="q",
                                                                                          documents=["d"])).body)
    result = a.parse_rerank(req, b'{"records":[{"id":"1","score":0.93,"content":"d1"},{"id":"0","score":0.1}]}')
    assert [(d.index, d.relevance_score, d.text) for d in result.ranked] == [(1, 0.93, "d1"), (0, 0.1, None)]
    with pytest.raises(UpstreamError, match="malformed"):
        a.parse_rerank(req, b'{"records":[{"id":"one","score":1}]}')


def test_vertex_gemini_task_settings():
    a = vertex_adapter(T.COMPLETION, {"max_tokens": 50, "thinking_config": {"thinking_budget": 256}})
    body = json.loads(a.chat_request(ChatRequest(messages=[user("x")])).body)
    assert body["generationConfig"] == {"maxOutputTokens": 50,
                                        "thinkingConfig": {"thinkingBudget": 256}}
    body = json.loads(a.chat_request(ChatRequest(messages=[user("x")], max_tokens=9)).body)
    assert body["generationConfig"]["maxOutputTokens"] == 9


def test_vertex_anthropic_body_and_urls():
    a = vertex_adapter(provider="anthropic", model_id="claude-sonnet-4@20250514", location="us-east5")
    up = a.chat_request(ChatRequest(messages=[ChatMessage(role="system", content="s"), user("hi")]))
    assert up.url == ("https://us-east5-aiplatform.googleapis.com/v1/projects/proj/locations/us-east5/publishers/"
                      "anthropic/models/claude-sonnet-4@20250514:rawPredict")
    body = json.loads(up.body)
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert body["max_tokens"] == 1024 and "stream" not in body and body["system"] == "s"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    up = a.chat_request(ChatRequest(messages=[user("hi")], stream=True, max_tokens=5))
    assert up.url.endswith(":streamRawPredict") and json.loads(up.body)["max_tokens"] == 5
    assert json.loads(up.body)["stream"] is True


def test_vertex_openai_shaped_partners_need_a_url():
    with pytest.raises(GatewayError, match=r"needs \[url\] or \[streaming_url\]"):
        vertex_adapter(provider="meta").chat_request(ChatRequest(messages=[user("x")]))
    a = vertex_adapter(provider="mistral", url="https://x/v1/chat/completions")
    body = json.loads(a.chat_request(ChatRequest(messages=[user("x")], max_tokens=3)).body)
    assert body["messages"] == [{"role": "user", "content": "x"}] and body["max_tokens"] == 3


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_signed_jwt_verifies_with_the_public_key():
    account = load_service_account(ACCOUNT)
    jwt = signed_jwt(account, 1_700_000_000)
    head, claims, sig = jwt.split(".")
    assert json.loads(_unb64(head)) == {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    assert json.loads(_unb64(claims)) == {"iss": "sa@p.iam.gserviceaccount.com",
                                          "scope": "https://www.googleapis.com/auth/cloud-platform",
                                          "aud": "https://oauth2.example/token", "iat": 1_700_000_000,
                                          "exp": 1_700_003_600}
    KEY.public_key().verify(_unb64(sig), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())


def test_bad_service_account_never_echoes_the_secret():
    with pytest.raises(GatewayError) as exc:
        load_service_account('{"client_email": "x", "private_key": "-----BEGIN PRIVATE KEY-----SECRET"')
    assert "SECRET" not in exc.value.reason
    with pytest.raises(GatewayError, match="could not be read") as exc:
        signed_jwt(load_service_account({"client_email": "x", "private_key": "SECRET"}), 0)
    assert "SECRET" not in exc.value.reason
    assert msgspec.json.decode(ACCOUNT)["private_key_id"] == "k1"


def test_retry_delay_from_retry_info_details():
    from adapters.google import google_error

    body = (b'{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED","details":['
            b'{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}}')
    assert google_error(body).retry_after == 1.5
    assert google_error(b'{"error":{"code":500,"message":"x"}}').retry_after is None


def test_reasoning_becomes_a_thinking_config_and_thoughts_come_back():
    """ai.google.dev/gemini-api/docs/thinking: thinkingBudget, includeThoughts, parts marked `thought`."""
    req = ChatRequest(messages=[user("hi")], reasoning={"max_tokens": 512})
    assert gemini_chat_body(req, "googleaistudio")["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 512, "includeThoughts": True}
    off = ChatRequest(messages=[user("hi")], reasoning={"enabled": False, "max_tokens": None})
    assert gemini_chat_body(msgspec.structs.replace(off, reasoning={"enabled": True, "exclude": True}),
                            "googleaistudio")["generationConfig"]["thinkingConfig"] == {"thinkingBudget": -1}
    with pytest.raises(GatewayError, match=r"\[reasoning.effort\]"):
        gemini_chat_body(ChatRequest(messages=[user("hi")], reasoning={"effort": "low"}), "googleaistudio")
    answer = {"candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
        {"text": "Thinking about it.", "thought": True}, {"text": "Hello"}]}}], "modelVersion": "gemini-2.5-flash"}
    result = parse_gemini_chat(json.dumps(answer).encode(), "gemini-2.5-flash")
    assert result.reasoning == "Thinking about it." and result.content == "Hello"
    parser = GeminiStreamParser("gemini-2.5-flash")
    deltas = parser.feed(SSEEvent(json.dumps({"candidates": [{"index": 0, "content": {"parts": [
        {"text": "Hmm.", "thought": True}]}}]})))
    assert [d.reasoning for d in deltas] == ["Hmm."] and deltas[0].content is None
