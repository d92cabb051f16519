"""`amazonbedrock` through `/_inference` (official `elasticsearch` client, raw SSE) and `/v1` (official
`openai` SDK), in front of a simulated Bedrock Runtime that verifies every SigV4 signature and
answers ConverseStream with real event-stream frames; reached through the gateway's origin override."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import aiohttp
import msgspec
import openai
import pydantic
import pytest
from elasticsearch import ApiError, BadRequestError

from adapters.amazonbedrock import AmazonBedrockAdapter
from proxy.types import ChatMessage, ChatRequest, TaskType
from tests.conftest import make_settings
from tests.fakes.aws_upstream import TOOL_INPUT, FakeBedrock, fake_vector
from tests.sse import parse_sse

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
async def bedrock(serve_fake):
    return await serve_fake(FakeBedrock(region="eu-west-1"))


@pytest.fixture
def gateway_settings(tmp_path, bedrock):
    return make_settings(tmp_path, upstreams={"amazonbedrock": bedrock.url})


def settings(bedrock, model=CLAUDE, provider="anthropic", **kw) -> dict:
    return {"access_key": bedrock.key.access_key, "secret_key": bedrock.key.secret_key, "region": bedrock.region,
            "model": model, "provider": provider, **kw}


async def put(es, task: str, inference_id: str, service_settings: dict, **extra) -> dict:
    resp = await es.inference.put(task_type=task, inference_id=inference_id, inference_config={
        "service": "amazonbedrock", "service_settings": service_settings, **extra})
    body = resp.body
    assert body["service"] == "amazonbedrock"
    assert "fake/secret" not in json.dumps(body)  # secrets are never returned
    return body


# ------------------------------------------------------------------------------ embeddings


async def test_titan_embeddings_one_signed_call_per_text(es, bedrock):
    await put(es, "text_embedding", "titan", settings(bedrock, "amazon.titan-embed-text-v2:0", "amazontitan"))
    texts = ["The sky above the port", "was the color of television", "tuned to a dead channel"]
    resp = await es.inference.text_embedding(inference_id="titan", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    for vec, text in zip(vectors, texts):
        assert vec == pytest.approx(fake_vector(text), abs=1e-6)
    assert sorted(r["inputText"] for r in bedrock.requests) == sorted(texts)
    assert all(set(r) == {"inputText"} for r in bedrock.requests)
    seen = bedrock.seen[-1]
    assert seen["path"] == "/model/amazon.titan-embed-text-v2%3A0/invoke"  # as signed, as boto3 sends it
    assert seen["headers"]["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={bedrock.key.access_key}/")
    assert "/eu-west-1/bedrock/aws4_request" in seen["headers"]["authorization"]


async def test_cohere_embeddings_batches_of_96_with_input_type(es, bedrock):
    await put(es, "text_embedding", "coh", settings(bedrock, "cohere.embed-english-v3", "cohere",
                                                    rate_limit={"requests_per_minute": 6000}))
    texts = [f"sentence {i}" for i in range(100)]
    resp = await es.inference.text_embedding(inference_id="coh", input=texts)
    vectors = [item["embedding"] for item in resp.body["text_embedding"]]
    assert len(vectors) == 100
    assert vectors[99] == pytest.approx(fake_vector("search_d:" + texts[99]), abs=1e-6)
    assert sorted(len(r["texts"]) for r in bedrock.requests) == [4, 96]
    assert {r["input_type"] for r in bedrock.requests} == {"search_document"}
    resp = await es.inference.text_embedding(inference_id="coh", input="query", input_type="search")
    assert resp.body["text_embedding"][0]["embedding"] == pytest.approx(fake_vector("search_q:query"), abs=1e-6)


async def test_a_family_without_embeddings_is_a_clear_400(es, bedrock):
    await put(es, "text_embedding", "bad", settings(bedrock, "meta.llama3-8b-instruct-v1:0", "meta"))
    with pytest.raises(BadRequestError) as exc:
        await es.inference.text_embedding(inference_id="bad", input="x")
    assert exc.value.body["error"]["reason"] == "The [text_embedding] task type for provider [meta] is not available"
    assert bedrock.requests == []


# ------------------------------------------------------------------------------ completion and chat


async def test_completion_with_task_settings(es, bedrock):
    await put(es, "completion", "comp", settings(bedrock),
              task_settings={"max_new_tokens": 64, "temperature": 0.5, "top_k": 40})
    resp = await es.inference.completion(inference_id="comp", input="what is elastic?")
    assert resp.body == {"completion": [{"result": "WHAT IS ELASTIC?"}]}
    sent = bedrock.requests[-1]
    assert sent == {"messages": [{"role": "user", "content": [{"text": "what is elastic?"}]}],
                    "inferenceConfig": {"maxTokens": 64, "temperature": 0.5},
                    "additionalModelRequestFields": {"top_k": 40}}
    assert bedrock.seen[-1]["path"] == f"/model/{CLAUDE.replace(':', '%3A')}/converse"


async def test_completion_stream(http, es, bedrock):
    await put(es, "completion", "comp", settings(bedrock))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "abcdefgh"}) as resp:
        assert resp.status == 200
        events = parse_sse((await resp.read()).decode())
    assert events[-1] == ("message", "[DONE]")
    deltas = [json.loads(d)["completion"][0]["delta"] for _, d in events[:-1]]
    assert "".join(deltas) == "ABCDEFGH" and len(deltas) == 3
    assert bedrock.seen[-1]["path"] == f"/model/{CLAUDE.replace(':', '%3A')}/converse-stream"


async def test_chat_tool_call_round_trip_keeps_arguments_intact(es, bedrock):
    await put(es, "chat_completion", "chat", settings(bedrock))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}}]
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "weather?"}],
            "tools": tools, "tool_choice": "auto"}
    headers = {"content-type": "application/json", "accept": "application/json"}
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat", body=body, headers=headers)
    choice = resp.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == TOOL_INPUT
    sent = bedrock.requests[-1]
    assert sent["system"] == [{"text": "Be brief."}]
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": tools[0]["function"]["parameters"]}
    assert sent["toolConfig"]["toolChoice"] == {"auto": {}}
    # second turn: the assistant's call and the tool's result go back as toolUse / toolResult blocks
    body["messages"] += [choice["message"], {"role": "tool", "tool_call_id": call["id"], "content": "18C, sunny"}]
    resp = await es.perform_request("POST", "/_inference/chat_completion/chat", body=body, headers=headers)
    assert resp.body["choices"][0]["message"]["content"] == "Result: 18C, sunny"
    sent = bedrock.requests[-1]
    assert sent["messages"][1]["content"][-1] == {"toolUse": {"toolUseId": call["id"], "name": "get_weather",
                                                              "input": TOOL_INPUT}}
    assert sent["messages"][2] == {"role": "user", "content": [{"toolResult": {
        "toolUseId": call["id"], "content": [{"text": "18C, sunny"}]}}]}
    assert resp.body["usage"]["total_tokens"] == resp.body["usage"]["prompt_tokens"] + \
        resp.body["usage"]["completion_tokens"]


async def test_chat_stream_tool_calls_and_usage(http, es, bedrock):
    await put(es, "chat_completion", "chat", settings(bedrock))
    body = {"messages": [{"role": "user", "content": "weather?"}], "max_completion_tokens": 50,
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    async with http.post("/_inference/chat_completion/chat/_stream", json=body) as resp:
        assert resp.status == 200
        events = parse_sse((await resp.read()).decode())
    assert events[-1] == ("message", "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    deltas = [ch["delta"] for c in chunks for ch in c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check."
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["id"] == "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q" and calls[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(tc["function"].get("arguments", "") for tc in calls)) == TOOL_INPUT
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")] == ["tool_calls"]
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert len(usage) == 1 and usage[0]["total_tokens"] == usage[0]["prompt_tokens"] + usage[0]["completion_tokens"]
    assert bedrock.requests[-1]["inferenceConfig"] == {"maxTokens": 50}


# ------------------------------------------------------------------------------ faults


async def test_bad_signature_is_403_with_the_es_message(es, bedrock):
    wrong = settings(bedrock)
    wrong["secret_key"] = "not-the-secret"
    await put(es, "completion", "comp", wrong)
    with pytest.raises(ApiError) as exc:
        await es.inference.completion(inference_id="comp", input="x")
    assert exc.value.meta.status == 403
    assert exc.value.body["error"]["type"] == "status_exception"
    assert exc.value.body["error"]["reason"] == (
        "Received a permission denied error status code for request from inference entity id [comp] status [403]. "
        "Error message: [The request signature we calculated does not match the signature you provided. Check your "
        "AWS Secret Access Key and signing method. Consult the service documentation for details.]")
    assert "not-the-secret" not in json.dumps(exc.value.body)
    assert len(bedrock.requests) == 1  # not retried


async def test_throttling_429_is_retried(es, bedrock):
    await put(es, "completion", "comp", settings(bedrock))
    bedrock.fail_next(429, "ThrottlingException", "Too many requests, please wait before trying again.")
    resp = await es.inference.completion(inference_id="comp", input="hello")
    assert resp.body == {"completion": [{"result": "HELLO"}]}
    assert len(bedrock.requests) == 2
    # each attempt is signed afresh
    assert all(s["headers"]["authorization"].startswith("AWS4-HMAC-SHA256") for s in bedrock.seen)


async def test_validation_error_keeps_status_and_message(es, bedrock):
    await put(es, "completion", "comp", settings(bedrock))
    bedrock.fail_next(400, "ValidationException", "The provided model identifier is invalid.")
    with pytest.raises(BadRequestError) as exc:
        await es.inference.completion(inference_id="comp", input="x")
    assert exc.value.body["error"]["reason"] == (
        "Received a bad request status code for request from inference entity id [comp] status [400]. "
        "Error message: [The provided model identifier is invalid.]")


@pytest.mark.parametrize("model, status", [("exception-stream", 424), ("cut-stream", 502), ("partial-frame", 502)])
async def test_broken_streams_end_with_an_in_band_error(http, es, bedrock, model, status):
    await put(es, "completion", "comp", settings(bedrock, model=model))
    async with http.post("/_inference/completion/comp/_stream", json={"input": "abcdefghijkl"}) as resp:
        assert resp.status == 200
        events = parse_sse((await resp.read()).decode())
    assert events[0][0] == "message" and events[-1][0] == "error"
    assert ("message", "[DONE]") not in events
    err = json.loads(events[-1][1])
    assert err["status"] == (status if status < 500 else 502)
    if model == "exception-stream":
        assert "modelStreamErrorException: The model stream failed" in err["error"]["reason"]


# ------------------------------------------------------------------------------ the /v1 facade


async def test_openai_sdk_embeddings_and_chat(es, client, bedrock):
    await put(es, "text_embedding", "titan", settings(bedrock, "amazon.titan-embed-text-v2:0", "amazontitan"))
    await put(es, "chat_completion", "chat", settings(bedrock))
    emb = await client.embeddings.create(model="titan", input=["one", "two"])
    assert [d.index for d in emb.data] == [0, 1]
    assert emb.data[1].embedding == pytest.approx(fake_vector("two"), abs=1e-6)
    chat = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi there"}])
    assert chat.choices[0].message.content == "HI THERE" and chat.choices[0].finish_reason == "stop"
    assert bedrock.seen[-1]["path"] == f"/model/{CLAUDE.replace(':', '%3A')}/converse"  # not the endpoint id
    stream = await client.chat.completions.create(model="chat", stream=True,
                                                  messages=[{"role": "user", "content": "streaming works"}])
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "STREAMING WORKS"


# ------------------------------------------------------------------------------ signing details


async def test_an_inference_profile_arn_model_is_signed_and_routed(es, bedrock):
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0"
    await put(es, "completion", "arn", settings(bedrock, model=arn))
    resp = await es.inference.completion(inference_id="arn", input="profile")
    assert resp.body == {"completion": [{"result": "PROFILE"}]}
    # the id is one path segment, sent exactly as signed: ':' and '/' escaped, as boto3 sends them
    assert bedrock.seen[-1]["path"] == ("/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Ainference-profile%2F"
                                        "eu.anthropic.claude-3-haiku-20240307-v1%3A0/converse")


async def test_session_credentials_are_signed_with_their_token(bedrock):
    """Temporary credentials (a session token) through the adapter's own authorize(), checked by the fake."""
    bedrock.key.session_token = "FwoGZXIvYXdzEXAMPLE//token=="
    ep = SimpleNamespace(inference_id="tmp", task_type=TaskType.COMPLETION, service="amazonbedrock",
                         service_settings={"region": bedrock.region, "model": CLAUDE, "provider": "anthropic"},
                         task_settings={}, secrets={"access_key": bedrock.key.access_key,
                                                    "secret_key": bedrock.key.secret_key,
                                                    "session_token": bedrock.key.session_token})
    adapter = AmazonBedrockAdapter(ep)
    up = adapter.chat_request(ChatRequest(messages=[ChatMessage(role="user", content="temp")]))
    routed = bedrock.url + up.url.split(".amazonaws.com", 1)[1]
    async with aiohttp.ClientSession() as session:
        signed = await adapter.authorize(msgspec.structs.replace(up, url=routed), session)
        async with session.post(routed, data=signed.body, headers=signed.headers) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["output"]["message"]["content"] == [{"text": "TEMP"}]
        # without the token the same keys are refused
        ep.secrets.pop("session_token")
        unsigned = await AmazonBedrockAdapter(ep).authorize(msgspec.structs.replace(up, url=routed), session)
        async with session.post(routed, data=unsigned.body, headers=unsigned.headers) as resp:
            assert resp.status == 403
            assert resp.headers["x-amzn-ErrorType"].startswith("UnrecognizedClientException")


class Forecast(pydantic.BaseModel):
    city: str
    sky: str


async def test_structured_output_and_strict_tools_as_boto3_sends_them(es, client, bedrock):
    await put(es, "chat_completion", "chat", settings(bedrock))
    parsed = await client.chat.completions.parse(model="chat", response_format=Forecast,
                                                 messages=[{"role": "user", "content": "paris"}])
    assert parsed.choices[0].message.parsed == Forecast(city="PARIS", sky="PARIS")
    gateway_sent = bedrock.requests[-1]
    tool = {"type": "function", "function": {"name": "get_weather", "strict": True, "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}}}
    await client.chat.completions.create(model="chat", tools=[tool], messages=[{"role": "user", "content": "w?"}])
    gateway_tools = bedrock.requests[-1]["toolConfig"]["tools"]

    # the oracle: boto3's own Converse request with the same structured output and a strict tool
    import boto3

    parsed_format = openai.lib._parsing._completions.type_to_response_format_param(Forecast)
    rt = boto3.client("bedrock-runtime", region_name=bedrock.region, endpoint_url=bedrock.url,
                      aws_access_key_id=bedrock.key.access_key, aws_secret_access_key=bedrock.key.secret_key)
    schema = parsed_format["json_schema"]
    await asyncio.to_thread(rt.converse, modelId=CLAUDE, messages=[{"role": "user", "content": [{"text": "paris"}]}],
                            outputConfig={"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
                                "schema": json.dumps(schema["schema"]), "name": schema["name"]}}}},
                            toolConfig={"tools": [{"toolSpec": {
                                "name": "get_weather", "inputSchema": {"json": tool["function"]["parameters"]},
                                "strict": True}}]})
    boto_sent = bedrock.requests[-1]
    assert json.loads(gateway_sent["outputConfig"]["textFormat"]["structure"]["jsonSchema"].pop("schema")) == \
        json.loads(boto_sent["outputConfig"]["textFormat"]["structure"]["jsonSchema"].pop("schema"))
    assert gateway_sent["outputConfig"] == boto_sent["outputConfig"]
    assert gateway_tools == boto_sent["toolConfig"]["tools"]


async def test_what_converse_cannot_express_is_refused_by_name(es, client, bedrock):
    await put(es, "chat_completion", "chat", settings(bedrock))
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}],
                                             response_format={"type": "json_object"})
    assert exc.value.param == "response_format" and "amazonbedrock" in exc.value.message
    assert bedrock.requests == []


async def test_parallel_tool_calls_false_keeps_the_first_call_where_converse_has_no_switch(es, client, bedrock):
    await put(es, "chat_completion", "chat", settings(bedrock))
    tools = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
             for name in ("get_weather", "get_time")]
    ask = {"model": "chat", "messages": [{"role": "user", "content": "weather and time?"}], "tools": tools}
    both = (await client.chat.completions.create(**ask)).choices[0].message.tool_calls
    assert [c.function.name for c in both] == ["get_weather", "get_time"]

    one = (await client.chat.completions.create(**ask, parallel_tool_calls=False)).choices[0]
    assert [c.function.name for c in one.message.tool_calls] == ["get_weather"] and one.finish_reason == "tool_calls"
    assert "parallel" not in json.dumps(bedrock.requests[-1])  # Converse has no such field: nothing is sent

    calls: dict[int, dict] = {}
    async for chunk in await client.chat.completions.create(**ask, parallel_tool_calls=False, stream=True):
        for d in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(d.index, {"name": "", "arguments": ""})
            call["name"] += (d.function.name or "") if d.function else ""
            call["arguments"] += (d.function.arguments or "") if d.function else ""
    assert [c["name"] for c in calls.values()] == ["get_weather"]
    assert json.loads(calls[min(calls)]["arguments"]) == json.loads(one.message.tool_calls[0].function.arguments)
