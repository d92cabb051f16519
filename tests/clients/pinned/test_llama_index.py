"""LlamaIndex on the gateway (its own venv: it pins an older openai; `make test` builds .venv-clients-pinned)."""

from __future__ import annotations

import pydantic
import pytest

pytest.importorskip("llama_index.llms.openai_like")
from llama_index.core.llms import ChatMessage  # noqa: E402
from llama_index.embeddings.openai import OpenAIEmbedding  # noqa: E402
from llama_index.llms.openai_like import OpenAILike  # noqa: E402

from tests.fakes.openai_upstream import fake_vector  # noqa: E402


class get_weather(pydantic.BaseModel):  # noqa: N801: the tool name structured_predict asks for
    """Weather in a city."""

    city: str


def llm(base, model="chat"):
    return OpenAILike(model=model, api_base=f"{base}/v1", api_key="unused", is_chat_model=True,
                      is_function_calling_model=True, max_retries=0)


async def test_chat_complete_and_stream(base):
    assert (await llm(base).acomplete("hello")).text == "HELLO"
    reply = await llm(base).achat([ChatMessage(role="system", content="be loud"),
                                   ChatMessage(role="user", content="hi")])
    assert reply.message.content == "BE LOUD HI"
    pieces = [r.delta async for r in await llm(base).astream_chat([ChatMessage(role="user", content="abc")])]
    assert "".join(pieces) == "<0>A<1>B<2>C<3><4>"


async def test_structured_predict(base, upstream):
    from llama_index.core.prompts import PromptTemplate

    found = await llm(base, "agent").astructured_predict(get_weather, PromptTemplate("weather in {city}?"),
                                                         city="Paris")
    assert found.model_dump() == {"city": "Paris"}
    assert upstream.requests[-1]["parallel_tool_calls"] is False


async def test_embeddings(base):
    emb = OpenAIEmbedding(model_name="emb", api_base=f"{base}/v1", api_key="unused", max_retries=0)
    vector = await emb.aget_text_embedding("hello world")
    assert vector == pytest.approx(fake_vector("hello world"), abs=1e-6)
