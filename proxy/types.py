"""Canonical types: what every surface decodes into and every backend answers with.

Routes never see provider types and adapters never see surface wire types; these Structs are
the only thing the two sides share.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class TaskType(str, enum.Enum):
    TEXT_EMBEDDING = "text_embedding"
    SPARSE_EMBEDDING = "sparse_embedding"
    RERANK = "rerank"
    COMPLETION = "completion"
    CHAT_COMPLETION = "chat_completion"
    EMBEDDING = "embedding"

    @classmethod
    def parse(cls, value: str) -> "TaskType | None":
        try:
            return cls(value.lower())
        except ValueError:
            return None


EMBEDDING_TASKS = frozenset({TaskType.TEXT_EMBEDDING, TaskType.SPARSE_EMBEDDING, TaskType.EMBEDDING})


class InputType(str, enum.Enum):
    """ES `InputType`: what the text is for. Providers map it to their own vocabulary."""

    INGEST = "ingest"
    SEARCH = "search"
    CLASSIFICATION = "classification"
    CLUSTERING = "clustering"


class Base(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Shared policy for canonical Structs."""


# ---------------------------------------------------------------------------------- requests


class EmbedPart(Base, kw_only=True):
    """One item of an `embedding` input (ES `InferenceString`): `text`, or an `image` as base64 / data URI."""

    type: str
    value: str


class EmbedRequest(Base, kw_only=True):
    inputs: list[str]
    input_type: InputType | None = None
    dimensions: int | None = None
    task_settings: dict[str, Any] = {}
    user: str | None = None
    # the `embedding` task with images or grouped items: one list of parts per embedding (ES
    # `InferenceStringGroup`), `inputs` then holding each group's text; None when every input is one text
    contents: list[list[EmbedPart]] | None = None
    # the inputs as the client sent them when it sent token ids (`input: [[15339, 1917]]` on /v1/embeddings); `inputs`
    # then holds their text (proxy/token_ids.py), for upstreams that do not take ids (`Adapter.takes_token_ids`)
    token_ids: list[list[int]] | None = None


class RerankRequest(Base, kw_only=True):
    query: str
    documents: list[str]
    top_n: int | None = None
    return_documents: bool | None = None
    task_settings: dict[str, Any] = {}


class FunctionCall(Base, kw_only=True):
    name: str | None = None
    arguments: str | None = None


class ToolCall(Base, kw_only=True):
    id: str | None = None
    type: str = "function"
    function: FunctionCall


# Content parts and tools in OpenAI's Chat Completions shapes (platform.openai.com/docs/api-reference/chat/create),
# which every surface converts to. Tagged: the `type` is always written, so a pass-through sends what came in.


class TextPart(Base, kw_only=True, tag="text", tag_field="type"):
    text: str


class ImageURL(Base, kw_only=True):
    url: str  # https: or a data: URI
    detail: str | None = None  # auto | low | high


class ImagePart(Base, kw_only=True, tag="image_url", tag_field="type"):
    image_url: ImageURL | str  # some clients send the URL bare

    @property
    def url(self) -> str:
        return self.image_url if isinstance(self.image_url, str) else self.image_url.url


class InputAudio(Base, kw_only=True):
    data: str  # base64
    format: str  # wav | mp3


class AudioPart(Base, kw_only=True, tag="input_audio", tag_field="type"):
    input_audio: InputAudio


class FileRef(Base, kw_only=True):
    file_data: str | None = None  # base64, or a data: URI
    file_id: str | None = None
    filename: str | None = None


class FilePart(Base, kw_only=True, tag="file", tag_field="type"):
    file: FileRef


class RefusalPart(Base, kw_only=True, tag="refusal", tag_field="type"):
    """An earlier assistant turn's refusal."""

    refusal: str


ContentPart = TextPart | ImagePart | AudioPart | FilePart | RefusalPart


def part_type(part: ContentPart) -> str:
    """A content part's `type` as the client wrote it."""
    return str(part.__struct_config__.tag)


class FunctionDef(Base, kw_only=True):
    """A tool's function; also a legacy `functions` entry."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema
    strict: bool | None = None


class Tool(Base, kw_only=True, tag="function", tag_field="type"):
    function: FunctionDef


class FunctionName(Base, kw_only=True):
    name: str


class NamedToolChoice(Base, kw_only=True, tag="function", tag_field="type"):
    """`tool_choice` naming the one function to call."""

    function: FunctionName


ToolChoice = str | NamedToolChoice  # auto | none | required, or a named function


class ChatMessage(Base, kw_only=True):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None
    # an assistant turn's reasoning as a provider returned it (ES `Message.reasoning`, `reasoning_details`)
    reasoning: str | None = None
    reasoning_details: list[dict[str, Any]] | None = None


class ChatRequest(Base, kw_only=True):
    """Chat and completion requests. A `completion` input becomes one user message."""

    messages: list[ChatMessage]
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    # ES `Reasoning`: effort (xhigh..none) | max_tokens, summary, exclude, enabled
    reasoning: dict[str, Any] | None = None
    stream: bool = False
    task_settings: dict[str, Any] = {}
    # Standard parameters that not every provider has. A backend maps the ones it can and refuses the
    # others by name (`proxy.chat_params`), so none is dropped.
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None  # none | minimal | low | medium | high
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # Fields with no canonical meaning (OpenAI-only parameters, a client's `extra_body`): sent verbatim to
    # upstreams that speak OpenAI's format, refused by name elsewhere unless a backend maps one (`top_k`)
    extra: dict[str, Any] = {}


CanonicalRequest = EmbedRequest | RerankRequest | ChatRequest


# ---------------------------------------------------------------------------------- results


class Usage(Base, kw_only=True):
    """Token counts. Surfaces render them with their own Structs, so a count of 0 is never omitted there."""

    prompt_tokens: int = 0  # all prompt tokens, cached ones included (OpenAI's meaning)
    completion_tokens: int = 0  # reasoning tokens included
    total_tokens: int = 0
    cached_tokens: int | None = None  # prompt tokens read from the provider's prompt cache
    cache_write_tokens: int | None = None  # prompt tokens written to it (Anthropic, Bedrock)
    reasoning_tokens: int | None = None


class EmbedResult(Base, kw_only=True):
    """Dense vectors in input order. `raw` vectors are JSON bytes spliced into responses unparsed."""

    vectors: list[msgspec.Raw] | list[list[float]]
    element_type: str = "float"  # float | byte | bit
    usage: Usage | None = None


class SparseEmbedResult(Base, kw_only=True):
    embeddings: list[dict[str, float]]
    truncated: list[bool] = []
    usage: Usage | None = None


class RankedDoc(Base, kw_only=True):
    index: int
    relevance_score: float
    text: str | None = None


class RerankResult(Base, kw_only=True):
    ranked: list[RankedDoc]
    usage: Usage | None = None


class ChatResult(Base, kw_only=True):
    id: str
    model: str
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = "stop"
    usage: Usage | None = None
    created: int = 0
    logprobs: msgspec.Raw | None = None  # OpenAI's `choices[0].logprobs`, passed on as sent


class ToolCallDelta(Base, kw_only=True):
    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionCall | None = None


class ChatDelta(Base, kw_only=True):
    """One streamed step. The last delta of a stream carries `finish_reason` and/or `usage`."""

    content: str | None = None
    role: str | None = None
    refusal: str | None = None
    reasoning: str | None = None  # a piece of the model's reasoning (ES chunk `delta.reasoning`)
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    id: str | None = None
    model: str | None = None
    logprobs: msgspec.Raw | None = None


CanonicalResult = EmbedResult | SparseEmbedResult | RerankResult | ChatResult
