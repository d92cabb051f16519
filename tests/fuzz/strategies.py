"""Hypothesis strategies for requests to the gateway: paths, query strings, headers and bodies.

Structured bodies come from the same catalogue the gateway validates against (`proxy.catalogue`),
so most fields have the right names and mostly the right types, and `junk()` swaps any value for
an arbitrary JSON value: that reaches deep into validation and the adapters' request builders,
where a plain random body would stop at the first parse error.
"""

from __future__ import annotations

import json
import urllib.parse

from hypothesis import strategies as st

from proxy.catalogue import SERVICES, Setting
from proxy.types import TaskType

TASKS = [t.value for t in TaskType]
FIXTURE_IDS = ["emb", "comp", "chat", "rr", "co-emb", "anth", "anth-comp", "gai", "voy", "voy-emb", "jina", "osai"]

# ---------------------------------------------------------------------- values

_text = st.text(max_size=24)
_big_ints = st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
_scalars = (st.none() | st.booleans() | st.integers(-3, 10) | _big_ints
            | st.floats(allow_nan=False, allow_infinity=False) | _text)


def junk(max_leaves: int = 6) -> st.SearchStrategy:
    """Any JSON value."""
    return st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=max_leaves)


def maybe(typed: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly the expected type, sometimes (1 in 8) anything."""
    return st.one_of(*[typed] * 7, junk())


TIME_VALUES = st.sampled_from(["30s", "5s", "1ms", "0s", "0ms", "1d", "-1s", "1.5s", "10", "s", "", " 5s", "5S",
                               "99999999999999999999999999d", "2m", "1h", "100nanos", "7micros"]) | _text
ID_LIKE = st.from_regex(r"[a-z0-9][a-z0-9_\-.]{0,12}[a-z0-9]", fullmatch=True)
IDS = st.sampled_from(FIXTURE_IDS + ["missing", "_all", "*", "_services", "_stream", "_update", ".elser-2"]) | ID_LIKE
TASK_WORDS = st.sampled_from(TASKS + ["bogus", "TEXT_EMBEDDING", "Rerank", "any", "_all"])


# ---------------------------------------------------------------------- paths and query strings


def encode_segment(raw: str, keep: str) -> str:
    return urllib.parse.quote(raw, safe=keep)


SEGMENTS = st.one_of(IDS, TASK_WORDS, st.text(max_size=16))
_SAFE = st.sampled_from(["", "-._~", "-._~:@!$&'()*+,;=", "-._~%"])


@st.composite
def segments(draw, min_size: int = 0, max_size: int = 4) -> str:
    parts = draw(st.lists(SEGMENTS, min_size=min_size, max_size=max_size))
    keep = draw(_SAFE)
    return "".join("/" + encode_segment(p, keep) for p in parts)


QUERY_KEYS = st.sampled_from(["timeout", "dry_run", "force", "error_trace", "filter_path", "human", "pretty",
                              "format", "unknown_param", "TIMEOUT"]) | st.text(min_size=1, max_size=8)
QUERY_VALUES = st.sampled_from(["true", "false", "", "1", "yes", "30s", "0s", "TRUE"]) | TIME_VALUES | _text


@st.composite
def query_strings(draw) -> str:
    pairs = draw(st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=3))
    if not pairs:
        return ""
    return "?" + urllib.parse.urlencode(pairs)


# ---------------------------------------------------------------------- headers

_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=30)
CONTENT_TYPES = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/vnd.elasticsearch+json; compatible-with=8",
    "application/vnd.elasticsearch+json; compatible-with=9", "application/x-ndjson", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/cbor", "application/smile",
    "application/yaml", "APPLICATION/JSON", "",
]) | _header_text
ACCEPTS = st.sampled_from([
    "application/json", "*/*", "text/event-stream", "application/vnd.elasticsearch+json; compatible-with=8",
    "application/vnd.elasticsearch+json;compatible-with=9", "application/vnd.elasticsearch+json; compatible-with=",
    "text/html", "",
]) | st.builds(lambda v: f"application/vnd.elasticsearch+json; compatible-with={v}", _header_text)
EXTRA_HEADERS = st.dictionaries(
    st.sampled_from(["X-Request-Id", "X-Opaque-Id", "Authorization", "X-Elastic-Product-Origin", "User-Agent",
                     "X-Forwarded-For", "Origin", "Cookie", "traceparent"]),
    _header_text, max_size=3)


@st.composite
def headers(draw, json_body: bool = True) -> dict[str, str]:
    # no `Expect`: aiohttp answers an unknown expectation (417, text/plain) before any middleware, as
    # ES's HTTP layer does (without its envelope): a transport matter, not the API's
    out = dict(draw(EXTRA_HEADERS))
    if draw(st.integers(0, 9)) < 8:
        out["Content-Type"] = "application/json" if json_body and draw(st.booleans()) else draw(CONTENT_TYPES)
    if draw(st.booleans()):
        out["Accept"] = draw(ACCEPTS)
    return out


# ---------------------------------------------------------------------- bodies


EDGE_BODIES = st.sampled_from([
    b"", b" ", b"\n", b"{", b"}", b"[]", b"null", b"0", b'""', b"{}", b'{"input":', b"\xef\xbb\xbf{}",
    b'{"a":1}{"b":2}', b"NaN", b'{"input": NaN}', b'{"input": "\xff"}', b'{"input": "\\ud800"}',
    b'{"input": 1e999}', b'{"top_n": 1e400}', b'{"input": "x", "input": ["y"]}', b"\x00", b'{"\x00": 1}',
    b"[" * 2000 + b"]" * 2000, b'{"messages": ' + b"[" * 1000 + b"]" * 1000 + b"}",
])


def json_bytes(values: st.SearchStrategy) -> st.SearchStrategy:
    return values.map(lambda v: json.dumps(v).encode())


ANY_BODY = st.one_of(json_bytes(junk(10)), EDGE_BODIES, st.binary(max_size=48), st.none())


def _value_for(setting: Setting, stub: str) -> st.SearchStrategy:
    if setting.choices is not None:
        typed = st.sampled_from(list(setting.choices) + [c.upper() for c in setting.choices] + ["bogus"])
    elif setting.kind == "int":
        typed = st.integers(-2, 5000) | _big_ints
    elif setting.kind == "float":
        typed = st.floats(-2, 2, allow_nan=False) | st.integers(-2, 5)
    elif setting.kind == "bool":
        typed = st.booleans()
    elif setting.kind == "map":
        typed = st.dictionaries(st.text(max_size=8), _text | junk(), max_size=3)
    elif setting.kind == "list":
        typed = st.lists(_text, max_size=3)
    elif setting.kind == "object" and setting.fields:
        typed = st.fixed_dictionaries({}, optional={f.name: _value_for(f, stub) for f in setting.fields})
    elif setting.name in ("url", "streaming_url", "token_url"):
        typed = st.sampled_from([f"{stub}/x", "not a url", "", "ftp://x", "http://[::1", f"{stub}/x?key=secret"])
    else:
        typed = _text
    return maybe(typed)


@st.composite
def settings_map(draw, settings: tuple[Setting, ...], stub: str) -> dict:
    out = {}
    for s in settings:
        if draw(st.integers(0, 3)) > 0 or s.required:
            if draw(st.integers(0, 9)) == 0:
                continue  # sometimes a required setting goes missing
            out[s.name] = draw(_value_for(s, stub))
    if draw(st.integers(0, 5)) == 0:
        out[draw(st.text(min_size=1, max_size=10))] = draw(junk())
    return out


CHUNKING = st.one_of(
    st.none(),
    st.fixed_dictionaries({"strategy": maybe(st.sampled_from(["sentence", "word", "recursive", "none", "WORD",
                                                              "bogus"]))},
                          optional={"max_chunk_size": maybe(st.integers(-5, 400)),
                                    "sentence_overlap": maybe(st.integers(-1, 2)),
                                    "overlap": maybe(st.integers(-1, 300)),
                                    "separators": maybe(st.lists(_text, max_size=3)),
                                    "separator_group": maybe(st.sampled_from(["plaintext", "markdown", "bogus"]))}),
    junk(),
)


def _valid_value_for(setting: Setting, stub: str) -> st.SearchStrategy:
    if setting.choices is not None:
        return st.sampled_from(list(setting.choices))
    if setting.kind == "int":
        return st.integers(1, 5000)
    if setting.kind == "float":
        return st.floats(0, 1)
    if setting.kind == "bool":
        return st.booleans()
    if setting.kind == "map":
        return st.dictionaries(st.text(min_size=1, max_size=8), _text, max_size=2)
    if setting.kind == "list":
        return st.lists(st.text(min_size=1, max_size=8), max_size=2)
    if setting.kind == "object" and setting.fields:
        return st.fixed_dictionaries({f.name: _valid_value_for(f, stub) for f in setting.fields if f.required},
                                     optional={f.name: _valid_value_for(f, stub) for f in setting.fields
                                               if not f.required})
    if setting.name in ("url", "streaming_url", "token_url"):
        return st.just(f"{stub}/x")
    return st.text(min_size=1, max_size=16)


@st.composite
def _valid_settings(draw, spec, settings: tuple[Setting, ...], task: TaskType, stub: str, scope: str) -> dict:
    """Values the catalogue accepts: required ones, some optional ones, one of each `one_of` group."""
    grouped = {n for g in spec.one_of if g.scope in (scope, "secret_settings") and scope == "service_settings"
               for n in g.names}
    out = {}
    for s in settings:
        if not s.applies_to(task) or s.name in grouped:
            continue
        if s.required or draw(st.booleans()):
            out[s.name] = draw(_valid_value_for(s, stub))
    if scope == "service_settings":
        for group in spec.one_of:
            name = draw(st.sampled_from(list(group.names)))
            setting = next((x for x in settings if x.name == name), None)
            if setting is not None:
                out[name] = draw(_valid_value_for(setting, stub))
    return out


@st.composite
def endpoint_configs(draw, stub: str) -> tuple[str | None, dict]:
    """(task in the URL or None, PUT body) for a create. Half of them follow the catalogue exactly
    (most are accepted); the others bend it anywhere: junk values, unknown keys, wrong tasks."""
    if draw(st.booleans()):
        spec = SERVICES[draw(st.sampled_from(sorted(SERVICES)))]
        task = draw(st.sampled_from(sorted(spec.tasks, key=lambda t: t.value)))
        body = {"service": spec.name,
                "service_settings": draw(_valid_settings(spec, spec.service_settings, task, stub,
                                                         "service_settings"))}
        if spec.task_settings and draw(st.booleans()):
            body["task_settings"] = draw(_valid_settings(spec, spec.task_settings, task, stub, "task_settings"))
        in_body = draw(st.booleans())
        if in_body:
            body["task_type"] = task.value
        return (None if in_body and draw(st.booleans()) else task.value), body
    name = draw(st.sampled_from(sorted(SERVICES)) | st.text(max_size=10))
    spec = SERVICES.get(name)
    tasks = sorted(t.value for t in spec.tasks) if spec else TASKS
    task = draw(st.sampled_from(tasks) | TASK_WORDS)
    body: dict = {}
    if draw(st.integers(0, 9)) > 0:
        body["service"] = name if draw(st.integers(0, 9)) > 0 else draw(junk())
    if spec is not None:
        body["service_settings"] = draw(settings_map(spec.service_settings, stub)) if draw(
            st.integers(0, 9)) > 0 else draw(junk())
        if draw(st.booleans()):
            body["task_settings"] = draw(settings_map(spec.task_settings, stub)) if draw(
                st.integers(0, 9)) > 0 else draw(junk())
    if draw(st.integers(0, 3)) == 0:
        body["chunking_settings"] = draw(CHUNKING)
    url_task: str | None = task
    if draw(st.integers(0, 3)) == 0:
        body["task_type"] = task if draw(st.booleans()) else draw(TASK_WORDS | junk())
        url_task = None if draw(st.booleans()) else draw(TASK_WORDS)
    if draw(st.integers(0, 7)) == 0:
        body[draw(st.text(min_size=1, max_size=8))] = draw(junk())
    return url_task, body


@st.composite
def update_bodies(draw, service: str, stub: str) -> dict:
    spec = SERVICES[service]
    body: dict = {}
    if draw(st.booleans()):
        body["service_settings"] = draw(settings_map(spec.service_settings, stub))
    if draw(st.booleans()):
        body["task_settings"] = draw(settings_map(spec.task_settings, stub))
    if draw(st.integers(0, 5)) == 0:
        body["service"] = draw(st.sampled_from([service, "openai", "bogus"]) | junk())
    if draw(st.integers(0, 5)) == 0:
        body["task_type"] = draw(TASK_WORDS | junk())
    if draw(st.integers(0, 7)) == 0:
        body["chunking_settings"] = draw(CHUNKING)
    if draw(st.integers(0, 7)) == 0:
        body[draw(st.text(min_size=1, max_size=8))] = draw(junk())
    return body


def task_settings_for(service: str, stub: str) -> st.SearchStrategy:
    return settings_map(SERVICES[service].task_settings, stub)


_tool_call = st.fixed_dictionaries({"id": maybe(_text), "type": maybe(st.just("function")),
                                    "function": maybe(st.fixed_dictionaries(
                                        {"name": maybe(_text)}, optional={"arguments": maybe(_text)}))})
_content_part = st.fixed_dictionaries({"type": maybe(st.sampled_from(["text", "image_url", "bogus"]))},
                                      optional={"text": maybe(_text)})
MESSAGE = st.fixed_dictionaries(
    {"role": maybe(st.sampled_from(["user", "assistant", "system", "tool", "developer", "bogus"]))},
    optional={"content": maybe(_text | st.lists(_content_part, max_size=2) | st.none()),
              "tool_call_id": maybe(_text), "tool_calls": maybe(st.lists(_tool_call, max_size=2)),
              "name": maybe(_text)})
TOOL = st.fixed_dictionaries({"type": maybe(st.just("function")),
                              "function": maybe(st.fixed_dictionaries(
                                  {"name": maybe(_text)}, optional={"parameters": junk(), "description": _text}))})
TOOL_CHOICE = maybe(st.sampled_from(["auto", "none", "required", "bogus"])
                    | st.fixed_dictionaries({"type": st.just("function"),
                                             "function": st.fixed_dictionaries({"name": _text})}))
INPUTS = maybe(_text | st.lists(_text, max_size=4))


def es_inference_body(service: str, stub: str) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={
        "input": INPUTS, "query": maybe(_text), "top_n": maybe(st.integers(-3, 10)),
        "return_documents": maybe(st.booleans()),
        "input_type": maybe(st.sampled_from(["ingest", "search", "classification", "clustering", "INGEST",
                                             "internal_search", "bogus"])),
        "task_settings": maybe(task_settings_for(service, stub)), "timeout": maybe(TIME_VALUES),
    })


ES_CHAT_BODY = st.fixed_dictionaries({}, optional={
    "messages": maybe(st.lists(MESSAGE, max_size=3)), "model": maybe(_text),
    "max_completion_tokens": maybe(st.integers(-5, 10 ** 6) | _big_ints), "stop": maybe(_text | st.lists(_text)),
    "temperature": maybe(st.floats(-1, 3)), "top_p": maybe(st.floats(-1, 2)), "tool_choice": TOOL_CHOICE,
    "tools": maybe(st.lists(TOOL, max_size=2)), "timeout": maybe(TIME_VALUES),
})

MODELS = st.one_of(st.sampled_from(FIXTURE_IDS), st.sampled_from(["missing", ""]), junk())
CHAT_MODELS = st.one_of(*[st.sampled_from(["chat", "comp", "anth", "anth-comp", "gai"])] * 3, MODELS)
EMBED_MODELS = st.one_of(*[st.sampled_from(["emb", "co-emb", "voy-emb", "jina"])] * 3, MODELS)
RERANK_MODELS = st.one_of(*[st.sampled_from(["rr", "voy", "osai"])] * 3, MODELS)
_UNSUPPORTED = st.fixed_dictionaries({}, optional={
    "frequency_penalty": maybe(st.sampled_from([0, 0.5])), "logprobs": maybe(st.booleans()),
    "parallel_tool_calls": maybe(st.booleans()), "best_of": maybe(st.integers(0, 3)), "echo": maybe(st.booleans()),
    "store": maybe(st.booleans()), "metadata": junk(), "suffix": maybe(_text)})
_SOMETIMES_UNSUPPORTED = st.one_of(st.just({}), st.just({}), st.just({}), _UNSUPPORTED)
_STREAM = {"stream": maybe(st.booleans()),
           "stream_options": maybe(st.fixed_dictionaries({}, optional={"include_usage": maybe(st.booleans())}))}


def shaped(required: dict, optional: dict, extra: st.SearchStrategy | None = None) -> st.SearchStrategy:
    """Half the time every required field is there; the other half any field may be missing."""
    body = st.one_of(st.fixed_dictionaries(required, optional=optional),
                     st.fixed_dictionaries({}, optional={**required, **optional}))
    if extra is None:
        return body
    return st.builds(lambda a, b: {**a, **b}, body, extra)


_V1_CHAT_BENT = shaped({"model": CHAT_MODELS, "messages": maybe(st.lists(MESSAGE, min_size=1, max_size=3))}, {
    "max_tokens": maybe(st.integers(-2, 100)),
    "max_completion_tokens": maybe(st.integers(-2, 100)), "temperature": maybe(st.floats(-1, 3)),
    "top_p": maybe(st.floats(-1, 2)), "stop": maybe(_text | st.lists(_text)), "seed": maybe(_big_ints),
    "n": maybe(st.integers(-1, 3)), "tools": maybe(st.lists(TOOL, max_size=2)), "tool_choice": TOOL_CHOICE,
    "response_format": maybe(st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "x"])})),
    "user": maybe(_text), **_STREAM}, _SOMETIMES_UNSUPPORTED)
_V1_COMPLETIONS_BENT = shaped({"model": CHAT_MODELS,
                         "prompt": maybe(_text | st.lists(_text, max_size=2) | st.lists(st.integers(0, 9)))}, {
    "max_tokens": maybe(st.integers(-2, 100)), "n": maybe(st.integers(-1, 3)), "stop": maybe(_text),
    "seed": maybe(st.integers()), "user": maybe(_text), **_STREAM}, _SOMETIMES_UNSUPPORTED)
_V1_EMBEDDINGS_BENT = shaped({"model": EMBED_MODELS, "input": maybe(
    _text | st.lists(_text, max_size=3) | st.lists(st.integers(0, 9), max_size=3)
    | st.lists(st.lists(st.integers(0, 9), max_size=3), max_size=2))}, {
    "encoding_format": maybe(st.sampled_from(["float", "base64", "bogus"])),
    "dimensions": maybe(st.integers(-2, 4096) | _big_ints), "user": maybe(_text)})
_V1_RERANK_BENT = shaped({"model": RERANK_MODELS, "query": maybe(_text),
                    "documents": maybe(st.lists(_text | st.fixed_dictionaries({"text": maybe(_text)}), max_size=3))},
                   {"top_n": maybe(st.integers(-2, 5) | _big_ints), "return_documents": maybe(st.booleans())})

# Well-formed bodies, so the success paths (rendering, streaming) are fuzzed too: the stub answers
# OpenAI-format embeddings and chat, and any rerank.
_CLEAN_TEXT = st.text(min_size=1, max_size=24)
_CLEAN_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                        "content": _CLEAN_TEXT})
_CLEAN_TOOL = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": st.from_regex(r"[a-z_]{1,10}", fullmatch=True)}, optional={"parameters": st.just({"type": "object"}),
                                                                         "description": _text})})
_CLEAN_STREAM = {"stream": st.booleans(), "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()})}
_V1_CHAT_CLEAN = st.fixed_dictionaries(
    {"model": st.sampled_from(["chat", "comp"]), "messages": st.lists(_CLEAN_MESSAGE, min_size=1, max_size=3)},
    optional={"max_tokens": st.integers(1, 100), "max_completion_tokens": st.integers(1, 100),
              "temperature": st.floats(0, 2), "top_p": st.floats(0, 1), "stop": _CLEAN_TEXT | st.lists(_CLEAN_TEXT,
                                                                                                   max_size=2),
              "seed": st.integers(0, 2 ** 31), "n": st.just(1), "user": _text, "tools": st.lists(_CLEAN_TOOL, max_size=2),
              "tool_choice": st.sampled_from(["auto", "none"]), "response_format": st.just({"type": "text"}),
              "presence_penalty": st.just(0), **_CLEAN_STREAM})
_V1_COMPLETIONS_CLEAN = st.fixed_dictionaries(
    {"model": st.sampled_from(["chat", "comp"]), "prompt": _CLEAN_TEXT | st.lists(_CLEAN_TEXT, min_size=1, max_size=1)},
    optional={"max_tokens": st.integers(1, 100), "temperature": st.floats(0, 2), "stop": _CLEAN_TEXT,
              "seed": st.integers(0, 2 ** 31), "user": _text, "echo": st.just(False), **_CLEAN_STREAM})
_V1_EMBEDDINGS_CLEAN = st.fixed_dictionaries(
    {"model": st.just("emb"), "input": _CLEAN_TEXT | st.lists(_CLEAN_TEXT, min_size=1, max_size=4)},
    optional={"encoding_format": st.sampled_from(["float", "base64"]), "dimensions": st.integers(1, 3),
              "user": _text})
_V1_RERANK_CLEAN = st.fixed_dictionaries(
    {"model": st.sampled_from(["rr", "voy", "osai"]), "query": _CLEAN_TEXT,
     "documents": st.lists(_CLEAN_TEXT | st.fixed_dictionaries({"text": _CLEAN_TEXT}), min_size=1, max_size=4)},
    optional={"top_n": st.integers(1, 6), "return_documents": st.booleans()})

V1_CHAT = st.one_of(_V1_CHAT_CLEAN, _V1_CHAT_BENT)
V1_COMPLETIONS = st.one_of(_V1_COMPLETIONS_CLEAN, _V1_COMPLETIONS_BENT)
V1_EMBEDDINGS = st.one_of(_V1_EMBEDDINGS_CLEAN, _V1_EMBEDDINGS_BENT)
V1_RERANK = st.one_of(_V1_RERANK_CLEAN, _V1_RERANK_BENT)


def es_clean_body(task: str) -> st.SearchStrategy:
    """A well-formed `/_inference` body for an endpoint of `task`."""
    inputs = _CLEAN_TEXT | st.lists(_CLEAN_TEXT, min_size=1, max_size=3)
    if task == "chat_completion":
        return st.fixed_dictionaries({"messages": st.lists(_CLEAN_MESSAGE, min_size=1, max_size=3)},
                                     optional={"max_completion_tokens": st.integers(1, 50),
                                               "temperature": st.floats(0, 1), "timeout": st.just("10s")})
    if task == "rerank":
        return st.fixed_dictionaries({"input": st.lists(_CLEAN_TEXT, min_size=1, max_size=4), "query": _CLEAN_TEXT},
                                     optional={"top_n": st.integers(1, 5), "return_documents": st.booleans()})
    return st.fixed_dictionaries({"input": inputs}, optional={"timeout": st.just("10s")})
