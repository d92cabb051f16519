"""LangChain (`langchain-openai`) against the gateway: chat, streams, tools, structured output, embeddings."""

from __future__ import annotations

import pydantic
import pytest

langchain_openai = pytest.importorskip("langchain_openai")
from tests.fakes.openai_upstream import fake_vector  # noqa: E402


class get_weather(pydantic.BaseModel):  # noqa: N801: the tool name the structured output asks for
    """Weather in a city."""

    city: str


def chat(base, model="chat", **kw):
    return langchain_openai.ChatOpenAI(model=model, base_url=f"{base}/v1", api_key="unused", max_retries=0, **kw)


async def test_invoke_and_stream(base):
    assert (await chat(base).ainvoke("hello")).content == "HELLO"
    pieces = [chunk.content async for chunk in chat(base).astream("abc")]
    assert "".join(pieces) == "<0>A<1>B<2>C<3><4>"


async def test_structured_output_by_function_calling(base, upstream):
    # LangChain sends parallel_tool_calls=false here, which the gateway used to refuse
    model = chat(base, "agent").with_structured_output(get_weather, method="function_calling")
    assert await model.ainvoke("weather in Paris?") == get_weather(city="Paris")
    assert upstream.requests[-1]["parallel_tool_calls"] is False


async def test_bound_tools_and_a_tool_message(base):
    from langchain_core.messages import HumanMessage, ToolMessage

    model = chat(base, "agent").bind_tools([get_weather])
    first = await model.ainvoke([HumanMessage("weather?")])
    call = first.tool_calls[0]
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    second = await model.ainvoke([HumanMessage("weather?"), first, ToolMessage("sunny", tool_call_id=call["id"])])
    assert second.content == "RESULT: sunny"


async def test_embeddings_with_token_ids_by_default(base, upstream, tiktoken_cache):
    # OpenAIEmbeddings tokenizes with tiktoken and sends token ids unless check_embedding_ctx_length=False
    import tiktoken

    emb = langchain_openai.OpenAIEmbeddings(model="emb", base_url=f"{base}/v1", api_key="unused", max_retries=0)
    texts = ["hello world", "grüße"]
    vectors = await emb.aembed_documents(texts)
    ids = [tiktoken.get_encoding("cl100k_base").encode(t) for t in texts]
    assert upstream.requests[-1]["input"] == ids  # OpenAI's API takes them as they are
    plain = langchain_openai.OpenAIEmbeddings(model="emb", base_url=f"{base}/v1", api_key="unused", max_retries=0,
                                              check_embedding_ctx_length=False)
    assert await plain.aembed_query("hello world") == pytest.approx(fake_vector("hello world"), abs=1e-6)
    assert upstream.requests[-1]["input"] == ["hello world"]
    assert vectors[0] != pytest.approx(fake_vector("hello world"), abs=1e-6)  # the fake embeds the ids it got
