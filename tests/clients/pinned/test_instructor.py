"""instructor on the gateway (its own venv: it pins an older openai; `make test` builds .venv-clients-pinned)."""

from __future__ import annotations

import pydantic
import pytest

instructor = pytest.importorskip("instructor")
import openai  # noqa: E402


class get_weather(pydantic.BaseModel):  # noqa: N801: instructor names the tool after the model
    city: str


@pytest.fixture
async def client(base):
    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0) as c:
        yield c


async def test_structured_extraction_by_tool_call(client, upstream):
    patched = instructor.from_openai(client, mode=instructor.Mode.TOOLS)
    found = await patched.chat.completions.create(model="agent", response_model=get_weather, max_retries=0,
                                                  messages=[{"role": "user", "content": "weather in Paris?"}])
    assert found.model_dump() == {"city": "Paris"}  # instructor answers with its own subclass of the model
    assert upstream.requests[-1]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


async def test_json_schema_mode(client):
    class Shout(pydantic.BaseModel):
        CITY: str

    patched = instructor.from_openai(client, mode=instructor.Mode.JSON_SCHEMA)
    found = await patched.chat.completions.create(model="chat", response_model=Shout, max_retries=0,
                                                  messages=[{"role": "user", "content": '{"city": "paris"}'}])
    assert found.model_dump() == {"CITY": "PARIS"}
