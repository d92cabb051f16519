"""One contract for every adapter × every task it declares, picked up from the registry with no test code.

For each registered adapter and each task its catalogue entry lists:
- every canonical request parameter is mapped (the upstream request changes) or rejected with a
  gateway error, never silently dropped;
- streaming parsers treat a stream that ends before its terminator as an error;
- error parsing never raises on any body, and nothing an adapter renders carries a secret.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from adapters import ADAPTERS, adapter_class
from adapters.base import StreamCut, UpstreamRequest
from proxy.catalogue import SERVICES, Service, Setting
from proxy.errors import GatewayError
from proxy.endpoint import Endpoint
from proxy.types import ChatMessage, ChatRequest, EmbedRequest, FunctionDef, InputType, RerankRequest, TaskType, Tool
from tests.tasks import request_for

T = TaskType
SECRET_MARK = "SECRET-MARKER-{}"


def _value(setting: Setting, task: TaskType) -> Any:
    if setting.secret:
        if setting.kind == "map":
            return {"api_key": SECRET_MARK.format(setting.name)}
        if setting.name == "service_account_json":
            return json.dumps({"client_email": "x@example.iam", "private_key": SECRET_MARK.format(setting.name),
                               "token_uri": "http://127.0.0.1:9/token", "project_id": "p"})
        return SECRET_MARK.format(setting.name)
    if setting.choices:
        return setting.choices[0]
    if setting.kind == "int":
        return 8
    if setting.kind == "float":
        return 0.5
    if setting.kind == "bool":
        return True
    if setting.kind == "map":
        return {}
    if setting.kind == "list":
        return []
    if setting.kind == "object":
        return {f.name: _value(f, task) for f in setting.fields or () if f.required}
    if setting.kind == "str_or_object":  # a request template: give every parameter of the task a place
        if task == T.RERANK:
            return '{"query": ${query}, "documents": ${input}}'
        if task in (T.TEXT_EMBEDDING, T.SPARSE_EMBEDDING):
            return '{"input": ${input}, "input_type": ${input_type}}'
        return '{"input": ${input}}'
    if setting.name in ("url", "target", "host", "streaming_url"):
        return "http://127.0.0.1:9/x"
    return f"{setting.name}-value"


def endpoint_for(spec: Service, task: TaskType) -> Endpoint:
    """A minimal endpoint for the task; where a choice setting decides whether the task can be served
    (e.g. SageMaker's `api`), the first choice whose endpoint can build a request."""
    first = _endpoint(spec, task, {})
    cls = adapter_class(spec.name)
    if not isinstance(_build(cls(first), _base_request(task)), GatewayError):
        return first
    for s in spec.service_settings:
        if s.choices and s.required and s.applies_to(task):
            for choice in s.choices[1:]:
                candidate = _endpoint(spec, task, {s.name: choice})
                if not isinstance(_build(cls(candidate), _base_request(task)), GatewayError):
                    return candidate
    return first


def _endpoint(spec: Service, task: TaskType, chosen: dict[str, Any]) -> Endpoint:
    settings: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    skip = {n for group in spec.one_of for n in group.names[1:]}
    for s in spec.service_settings:
        if not s.applies_to(task) or s.name in skip:
            continue
        if s.required or s.secret or any(s.name == g.names[0] for g in spec.one_of):
            (secrets if s.secret else settings)[s.name] = chosen.get(s.name, _value(s, task))
    if spec.cross_check is not None:
        # settings a cross-setting rule asks for by name (e.g. Vertex's location/project_id/model_id for Gemini)
        wanted = " ".join(spec.cross_check(task, dict(settings)))
        for s in spec.service_settings:
            if s.applies_to(task) and not s.secret and s.name not in settings and f"'{s.name}'" in wanted:
                settings[s.name] = chosen.get(s.name, _value(s, task))
    task_settings = {s.name: _value(s, task) for s in spec.task_settings if s.required and s.applies_to(task)}
    return Endpoint(inference_id="conformance", task_type=task, service=spec.name, service_settings=settings,
                    task_settings=task_settings, secrets=secrets)


CASES = [(service, task) for service in sorted(ADAPTERS) for task in sorted(SERVICES[service].tasks, key=str)
         if task != T.EMBEDDING]


def _build(adapter, req) -> UpstreamRequest | GatewayError:
    """As the backend builds it (proxy/backends.py): a chat request is checked for what the adapter cannot map."""
    try:
        if adapter.task in (T.COMPLETION, T.CHAT_COMPLETION):
            adapter.check_chat(req)
        return request_for(adapter, req)
    except GatewayError as err:
        return err


def _fingerprint(up: UpstreamRequest | GatewayError) -> Any:
    if isinstance(up, GatewayError):
        return ("error", type(up).__name__)
    return (up.url, sorted(up.headers.items()), up.body)


CHAT_PARAMS: dict[str, Any] = {
    "max_tokens": 77, "temperature": 0.123, "top_p": 0.456, "stop": ["STOP-X"], "seed": 4242,
    "tools": [Tool(function=FunctionDef(name="probe_tool", parameters={"type": "object"}))],
    "tool_choice": "required", "response_format": {"type": "json_object"}, "user": "probe-user",
    "reasoning": {"max_tokens": 2048}, "reasoning=effort": {"effort": "high"},
}
EMBED_PARAMS: dict[str, Any] = {"dimensions": 3, "user": "probe-user"}


def _base_request(task: TaskType):
    if task in (T.TEXT_EMBEDDING, T.SPARSE_EMBEDDING):
        return EmbedRequest(inputs=["probe text"])
    if task == T.RERANK:
        return RerankRequest(query="probe query", documents=["doc one", "doc two"])
    return ChatRequest(messages=[ChatMessage(role="user", content="probe")])


def _params(task: TaskType) -> dict[str, Any]:
    if task in (T.TEXT_EMBEDDING, T.SPARSE_EMBEDDING):
        return {**EMBED_PARAMS, **{f"input_type={t.value}": t for t in InputType}}
    if task in (T.COMPLETION, T.CHAT_COMPLETION):
        return CHAT_PARAMS
    return {}  # rerank's top_n and return_documents are applied by the gateway itself after ranking


@pytest.mark.parametrize("service, task", CASES)
def test_every_parameter_is_mapped_or_rejected(service, task):
    adapter = adapter_class(service)(endpoint_for(SERVICES[service], task))
    base = _base_request(task)
    plain = _build(adapter, base)
    assert not isinstance(plain, GatewayError), f"{service}/{task.value}: a plain request failed: {plain}"
    # a parameter is accounted for when some value of it changes the request or is refused: one value
    # may equal the provider's default (e.g. input_type=search when unset means a search query)
    seen: dict[str, set] = {}
    for name, value in _params(task).items():
        field = name.split("=")[0]
        probe = _build(adapter, msgspec.structs.replace(base, **{field: value}))
        seen.setdefault(field, set()).add(repr(_fingerprint(probe)))
    dropped = sorted(f for f, prints in seen.items() if prints == {repr(_fingerprint(plain))})
    assert dropped == [], f"{service}/{task.value} silently drops {dropped}"


@pytest.mark.parametrize("service, task", [(s, t) for s, t in CASES if t in SERVICES[s].stream_tasks()])
def test_a_stream_without_its_terminator_is_an_error(service, task):
    adapter = adapter_class(service)(endpoint_for(SERVICES[service], task))
    req = msgspec.structs.replace(_base_request(task), stream=True)
    parser = adapter.stream_parser(req)
    with pytest.raises(StreamCut):
        parser.finish()


@pytest.mark.parametrize("service, task", CASES)
@pytest.mark.parametrize("body", [b"", b"<html>502 Bad Gateway</html>", b"\xff\xfe\x00", b"[]", b"null",
                                  b'{"error": {"message": "quota exceeded"}}', b'{"message": "quota exceeded"}'])
def test_error_parsing_never_raises(service, task, body):
    adapter = adapter_class(service)(endpoint_for(SERVICES[service], task))
    parsed = adapter.parse_error(429, {}, body)
    if parsed is not None and b"quota" in body:
        assert parsed.message and "quota exceeded" in parsed.message


@pytest.mark.parametrize("service, task", CASES)
def test_no_secret_in_reprs(service, task):
    adapter = adapter_class(service)(endpoint_for(SERVICES[service], task))
    up = request_for(adapter, _base_request(task))
    for text in (repr(up), str(up), repr(adapter.endpoint)):
        assert "SECRET-MARKER" not in text
