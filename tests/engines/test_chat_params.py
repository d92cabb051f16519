"""Chat Completions parameters on a local model (SmolLM2 in llama.cpp, real weights), through the openai SDK:
what llama.cpp's sampler can honour changes the answer or comes back, the rest is refused by name."""

from __future__ import annotations

import openai
import pydantic
import pytest

CHAT = ".smollm2-135m-instruct-chat-elasticsearch"
ASK = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture
async def client(local_gateway):
    async with openai.AsyncOpenAI(base_url=local_gateway.url + "/v1", api_key="unused", max_retries=0,
                                  timeout=120) as c:
        yield c


async def _text(client, **kwargs) -> str:
    resp = await client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=12, temperature=0, **kwargs)
    return resp.choices[0].message.content


async def test_sampling_parameters_reach_the_sampler(client):
    greedy = await _text(client)
    assert await _text(client) == greedy  # greedy decoding repeats itself: any change below is the parameter's
    assert await _text(client, frequency_penalty=2.0, presence_penalty=2.0) != greedy
    assert await _text(client, extra_body={"repetition_penalty": 2.0}) != greedy
    first = (await client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=1, temperature=0,
                                                  logprobs=True)).choices[0].logprobs.content[0]
    assert first.token == greedy[:len(first.token)]
    banned = await _text(client, logit_bias={str(first.id): -100})  # llama.cpp adds each token's id
    assert not banned.startswith(first.token)
    # top_k 1 is greedy whatever the temperature
    assert await _text(client, extra_body={"top_k": 1, "min_p": 0.5}, seed=3) == greedy


async def test_logprobs_come_back_plain_and_streamed(client):
    resp = await client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=5, temperature=0,
                                                logprobs=True, top_logprobs=2)
    tokens = resp.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == resp.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in tokens)
    assert tokens[0].top_logprobs[0].logprob == pytest.approx(tokens[0].logprob)
    stream = await client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=5, temperature=0,
                                                  logprobs=True, top_logprobs=2, stream=True)
    streamed = [t.token async for c in stream if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content]
    assert streamed == [t.token for t in tokens]


class Colour(pydantic.BaseModel):
    name: str


async def test_structured_output_by_grammar(client):
    resp = await client.chat.completions.parse(model=CHAT, messages=ASK, max_tokens=30, temperature=0,
                                               response_format=Colour)
    assert isinstance(resp.choices[0].message.parsed, Colour)
    resp = await client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=20, temperature=0,
                                                response_format={"type": "json_object"})
    assert resp.choices[0].message.content.lstrip().startswith("{")


async def test_what_llama_cpp_cannot_honour_is_refused_by_name(client):
    for kwargs, name in (({"reasoning_effort": "low"}, "reasoning_effort"),
                         ({"extra_body": {"prompt_cache_key": "k"}}, "prompt_cache_key")):
        with pytest.raises(openai.BadRequestError) as exc:
            await _text(client, **kwargs)
        assert f"[{name}]" in exc.value.message
