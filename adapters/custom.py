"""The ES `custom` service: a user-described HTTP API.

The endpoint gives a `url`, optional `headers` and `query_parameters`, a `request` body template and a
`response.json_parser` that says where the results are. Requests are built by placeholder substitution
(`${name}`) as ES's `CustomRequest` does:

* URL, query parameter values and header values are substituted with the *string* secret parameters and
  task `parameters`, inserted raw (so `Authorization: Bearer ${api_key}` works);
* the body template is substituted with every secret and task parameter *JSON-encoded*, then with the
  request's own values, also JSON-encoded: `${input}` (a list of strings; the first input as one string
  for completion), `${input_type}` (from the `input_type` translation, else its default), `${query}`,
  `${top_n}` and `${return_documents}` (rerank, only when given);
* a placeholder left over is an error with ES's message, and no error ever quotes a parameter's value.

Responses are read with ES's path syntax (`MapPathExtractor`: `$`, `.field`, `[*]`, inner lists kept)
and ES's parsers and messages. Sources: ES `services/custom/**`, `common/ValidatingSubstitutor.java`,
`common/MapPathExtractor.java` (all verified).
"""

from __future__ import annotations

import re
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec

from proxy.errors import IllegalArgumentError, StatusError, UpstreamError, ValidationError
from proxy.types import (CanonicalRequest, ChatRequest, ChatResult, EmbedRequest, EmbedResult, RankedDoc, RerankRequest,
                         RerankResult, SparseEmbedResult, TaskType)

from .base import Adapter, Framing, ProviderError, UpstreamRequest, generic_error, unsupported

T = TaskType
R = TypeVar("R")
SERVICE = "custom"
# verified: ES CustomServiceSettings DEFAULT_EMBEDDING_BATCH_SIZE = 10
DEFAULT_BATCH_SIZE = 10
_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


# ------------------------------------------------------------------------------ templates


class TemplateError(ValueError):
    """ES `IllegalArgumentException` from building a custom request; its text never holds a parameter value."""


# verified: ES ValidatingSubstitutor VARIABLE_PLACEHOLDER_PATTERN "\$\{.*?\}" (no newlines)
_PLACEHOLDER = re.compile(r"\$\{.*?\}")
_PREFIX, _SUFFIX, _ESCAPE, _DEFAULT = "${", "}", "$", ":-"


def substitute(source: str, params: Mapping[str, str], field: str) -> str:
    """ES `ValidatingSubstitutor.replace`: Apache `StringSubstitutor` with prefix `${`, suffix `}`, escape `$`
    (`$${x}` stays `${x}`) and default values (`${x:-default}`), then ES's check that no placeholder is left.

    One deliberate difference: values are not substituted again. StringSubstitutor resolves placeholders
    inside substituted values too, so an input text containing `${api_key}` would pull the secret into the
    body; here values are inserted verbatim and only the template's own text is checked for leftovers.
    """
    out: list[str] = []
    literal: list[str] = []  # the template's own text, for the leftover check
    i, n = 0, len(source)
    while i < n:
        j = source.find(_PREFIX, i)
        if j < 0:
            out.append(source[i:])
            literal.append(source[i:])
            break
        if j > i and source[j - 1] == _ESCAPE:
            # escaped: `$${x}` -> `${x}` (which ES's check then reports as a leftover placeholder)
            text = source[i:j - 1] + _PREFIX
            out.append(text)
            literal.append(text)
            i = j + len(_PREFIX)
            continue
        end = source.find(_SUFFIX, j + len(_PREFIX))
        if end < 0:
            out.append(source[i:])
            literal.append(source[i:])
            break
        before = source[i:j]
        out.append(before)
        literal.append(before)
        name = source[j + len(_PREFIX):end]
        default = None
        if _DEFAULT in name:
            name, default = name.split(_DEFAULT, 1)
        if name in params:
            out.append(params[name])
            literal.append("\n")  # a value separates literal text: no placeholder spans it
        elif default is not None:
            out.append(default)
            literal.append(default)
        else:
            unresolved = source[j:end + 1]
            out.append(unresolved)
            literal.append(unresolved)
        i = end + 1
    match = _PLACEHOLDER.search("".join(literal))
    if match is not None:
        raise TemplateError(f"Found placeholder [{match.group()}] in field [{field}] after replacement call, please "
                            f"check that all templates have a corresponding field definition.")
    return "".join(out)


def json_value(value: Any) -> str:
    """ES JsonUtils.toJson: the value as JSON text (strings quoted and escaped, non-ASCII kept)."""
    return _encoder.encode(value).decode()


def _java_type(value: Any) -> str:
    """The Java class name ES's messages show for a value parsed from JSON."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer" if -2**31 <= value < 2**31 else "Long"
    if isinstance(value, float):
        return "Double"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "ArrayList"
    if isinstance(value, dict):
        return "HashMap"
    return type(value).__name__


# ------------------------------------------------------------------------------ paths


class Extracted(NamedTuple):
    """ES MapPathExtractor.Result: the value and the field names met, in order."""

    value: Any
    fields: list[str]

    def field(self, index: int) -> str:
        return self.fields[index] if 0 <= index < len(self.fields) else "unknown"


# verified: ES MapPathExtractor DOT_FIELD_PATTERN / ARRAY_WILDCARD_PATTERN
_DOT_FIELD = re.compile(r"^\.([^.\[]+)(.*)", re.DOTALL)
_ARRAY_WILDCARD = re.compile(r"^\[\*\](.*)", re.DOTALL)


def extract(data: Any, path: str) -> Extracted | None:
    """ES MapPathExtractor.extract: `$` root, `.field`, `[*]` over lists; unlike JSONPath, inner lists are kept
    (`$.a[*].b[*].c` gives a list of lists)."""
    if not data or path is None or not path.strip():
        return None
    cleaned = path.strip()
    if not cleaned.startswith("$"):
        raise ValueError(f"Path [{cleaned}] must start with a dollar sign ($)")
    fields: dict[str, None] = {}
    return Extracted(_navigate(data, cleaned[1:], "", fields), list(fields))


def _join(current: str, name: str) -> str:
    return name if not current else f"{current}.{name}"


def _navigate(current: Any, remaining: str, where: str, fields: dict[str, None]) -> Any:
    if current is None or not remaining:
        return current
    dot = _DOT_FIELD.match(remaining)
    if dot is not None:
        name, rest = dot.group(1), dot.group(2)
        if not isinstance(current, dict):
            raise ValueError(f"Current path [{remaining}] matched the dot field pattern but the current object is not "
                             f"a map, found invalid type [{_java_type(current)}] instead.")
        value = current.get(name)
        if value is None:
            raise ValueError(f"Unable to find field [{name}] in map")
        if not rest:
            fields[_join(where, name)] = None
        return _navigate(value, rest, _join(where, name), fields)
    wildcard = _ARRAY_WILDCARD.match(remaining)
    if wildcard is not None:
        rest = wildcard.group(1)
        if not isinstance(current, list):
            raise ValueError(f"Current path [{remaining}] matched the array field pattern but the current object is "
                             f"not a list, found invalid type [{_java_type(current)}] instead.")
        fields[where] = None
        results = []
        for item in current:
            result = _navigate(item, rest, where, fields)
            if result is not None:
                results.append(result)
        return results
    raise ValueError(f"Invalid path received [{remaining}], unable to extract a field name.")


# ------------------------------------------------------------------------------ response parsers (ES messages)


def _non_null(value: Any, field: str) -> Any:
    if value is None:
        raise ValueError(f"Failed to parse field [{field}], extracted field was null")
    return value


def _as_list(value: Any, field: str) -> list[Any]:
    _non_null(value, field)
    if not isinstance(value, list):
        raise ValueError(f"Extracted field [{field}] is an invalid type, expected a list but received "
                         f"[{_java_type(value)}]")
    return value


def _number(value: Any, field: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Unable to convert field [{field}] of type [{_java_type(value)}] to Number")
    return value


def _cast_list(items: list[Any], convert: Any, field: str) -> list[Any]:
    out = []
    for i, item in enumerate(items):
        try:
            out.append(convert(item, field))
        except ValueError as exc:
            raise ValueError(f"Failed to parse list entry [{i}], error: {exc}") from None
    return out


def _to_float(value: Any, field: str) -> float:
    return float(_number(value, field))


def _to_int(value: Any, field: str) -> int:
    return int(_number(value, field))


def _to_byte(value: Any, field: str) -> int:
    number = _number(value, field)
    # unverified: the text of ES's byte range check (convertToListOfBytes was not found); the rule is Java's byte
    if number != int(number) or not -128 <= number <= 127:
        raise ValueError(f"Value [{value}] is out of range for a byte")
    return int(number)


def _to_str(value: Any, field: str) -> str:
    _non_null(value, field)
    if not isinstance(value, str):
        raise ValueError(f"Unable to convert field [{field}] of type [{_java_type(value)}] to [String]")
    return value


def _required(data: Any, path: str) -> Extracted:
    result = extract(data, path)
    if result is None:
        raise ValueError(f"Failed to parse field [{path}], extracted field was null")
    return result


def parse_text_embeddings(data: Any, path: str, embedding_type: str = "float") -> tuple[list[list[Any]], str]:
    """ES Dense/TextEmbeddingResponseParser: one list of numbers per input."""
    result = _required(data, path)
    entries = _as_list(result.value, result.field(0))
    convert = _to_float if embedding_type == "float" else _to_byte
    vectors = []
    for i, entry in enumerate(entries):
        try:
            vectors.append(_cast_list(_as_list(entry, result.field(1)), convert, result.field(1)))
        except ValueError as exc:
            raise ValueError(f"Failed to parse text embedding entry [{i}], error: {exc}") from None
    element = {"float": "float", "byte": "byte", "bit": "bit", "binary": "bit"}[embedding_type]
    return vectors, element


def _same_size(tokens: list[Any], weights: list[Any]) -> None:
    if len(tokens) != len(weights):
        raise ValueError(f"The extracted tokens list is size [{len(tokens)}] but the weights list is size "
                         f"[{len(weights)}]. The list sizes must be equal.")


def parse_sparse_embeddings(data: Any, token_path: str, weight_path: str) -> list[dict[str, float]]:
    """ES SparseEmbeddingResponseParser: two paths giving lists of lists of equal sizes; tokens become text."""
    token_result = _required(data, token_path)
    tokens = _as_list(token_result.value, token_result.field(0))
    weight_result = _required(data, weight_path)
    weights = _as_list(weight_result.value, weight_result.field(0))
    _same_size(tokens, weights)
    token_field, weight_field = token_result.field(1), weight_result.field(1)
    out = []
    for i, (token_entry, weight_entry) in enumerate(zip(tokens, weights)):
        try:
            token_list = _as_list(token_entry, token_field)
            weight_list = _as_list(weight_entry, weight_field)
            _same_size(token_list, weight_list)
            embedding: dict[str, float] = {}
            for k, (token, weight) in enumerate(zip(token_list, weight_list)):
                try:
                    embedding[_token_text(token)] = _to_float(weight, weight_field)
                except ValueError as exc:
                    raise ValueError(f"Failed to parse weight item: [{k}] of array, error: {exc}") from None
            out.append(embedding)
        except ValueError as exc:
            raise ValueError(f"Failed to parse sparse embedding entry [{i}], error: {exc}") from None
    return out


def _token_text(token: Any) -> str:
    # ES: token.toString() (Alibaba returns integer token ids)
    if isinstance(token, bool):
        return "true" if token else "false"
    if isinstance(token, (dict, list)):
        return json_value(token)
    return str(token)


def parse_rerank(data: Any, score_path: str, index_path: str | None = None,
                 document_path: str | None = None) -> list[RankedDoc]:
    """ES RerankResponseParser: scores, optional indices (else list order) and optional document texts."""
    try:
        result = _required(data, score_path)
        scores = _cast_list(_as_list(result.value, result.field(0)), _to_float, result.field(0))
    except ValueError as exc:
        raise ValueError(f"Failed to parse rerank scores, error: {exc}") from None
    indices = None
    if index_path is not None:
        try:
            result = _required(data, index_path)
            indices = _cast_list(_as_list(result.value, result.field(0)), _to_int, result.field(0))
        except ValueError as exc:
            raise ValueError(f"Failed to parse rerank indices, error: {exc}") from None
    documents = None
    if document_path is not None:
        try:
            result = _required(data, document_path)
            documents = _cast_list(_as_list(result.value, result.field(0)), _to_str, result.field(0))
        except ValueError as exc:
            raise ValueError(f"Failed to parse rerank documents, error: {exc}") from None
    if indices is not None and len(indices) != len(scores):
        raise ValueError(f"The number of index fields [{len(indices)}] was not the same as the number of scores "
                         f"[{len(scores)}]")
    if documents is not None and len(documents) != len(scores):
        raise ValueError(f"The number of document fields [{len(documents)}] was not the same as the number of "
                         f"scores [{len(scores)}]")
    return [RankedDoc(index=indices[i] if indices is not None else i, relevance_score=score,
                      text=documents[i] if documents is not None else None) for i, score in enumerate(scores)]


def parse_completion(data: Any, path: str) -> list[str]:
    """ES CompletionResponseParser: a string, or a list of strings."""
    result = _required(data, path)
    value = _non_null(result.value, path)
    if isinstance(value, list):
        return _cast_list(value, _to_str, path)
    if isinstance(value, str):
        return [value]
    raise ValueError(f"Extracted field [{result.field(0)}] from path [{path}] is an invalid type, expected a list or "
                     f"a string but received [{_java_type(value)}]")


# ------------------------------------------------------------------------------ errors


class CustomRequestError(StatusError):
    """ES CustomRequestManager: `Failed to construct the custom service request` (400), caused by the template
    error. `caused_by` carries the inner ES exception for surfaces that render it."""

    def __init__(self, cause: str) -> None:
        super().__init__("Failed to construct the custom service request", status=400)
        self.caused_by = IllegalArgumentError(cause)


def _response_error(message: str) -> UpstreamError:
    return UpstreamError(message, upstream_status=502, status=502)


# ------------------------------------------------------------------------------ the adapter


_PARSER_KEYS = {T.TEXT_EMBEDDING: ("text_embeddings",), T.SPARSE_EMBEDDING: ("token_path", "weight_path"),
                T.RERANK: ("relevance_score",), T.COMPLETION: ("completion_result",)}


class CustomAdapter(Adapter):
    service = SERVICE
    framing = Framing.NONE  # ES CustomService streams nothing (supportedStreamingTasks: none)
    embed_batch_size: ClassVar[int | None] = DEFAULT_BATCH_SIZE

    def __init__(self, endpoint: Any) -> None:
        super().__init__(endpoint)
        size = self.setting("batch_size")
        self.embed_batch_size = int(size) if isinstance(size, int) and size > 0 else DEFAULT_BATCH_SIZE

    # -- settings -----------------------------------------------------------------------------
    def _secret_parameters(self) -> dict[str, Any]:
        value = self.setting("secret_parameters")
        return dict(value) if isinstance(value, dict) else {}

    def _task_parameters(self, req: CanonicalRequest) -> dict[str, Any]:
        # ES CustomTaskSettings.of: the request's parameters win key by key over the stored ones
        merged: dict[str, Any] = {}
        stored = self.endpoint.task_settings.get("parameters")
        if isinstance(stored, dict):
            merged.update(stored)
        given = req.task_settings.get("parameters")
        if isinstance(given, dict):
            merged.update(given)
        return {k: v for k, v in merged.items() if v is not None}

    def _template(self) -> str:
        request = self.setting("request")
        if isinstance(request, dict):  # the older {"content": "..."} form
            request = request.get("content")
        if not isinstance(request, str):
            raise StatusError("[service_settings] does not contain the required setting [request]")
        return request

    def _json_parser(self) -> dict[str, Any]:
        response = self.setting("response")
        parser = response.get("json_parser") if isinstance(response, dict) else None
        if not isinstance(parser, dict):
            raise StatusError("[service_settings.response] does not contain the required setting [json_parser]")
        parser = _legacy_sparse(parser)
        for key in _PARSER_KEYS.get(self.task, ()):
            if not isinstance(parser.get(key), str):
                raise StatusError(f"[service_settings.response.json_parser] does not contain the required setting "
                                  f"[{key}]")
        return parser

    # -- requests: each task's own JSON values (ES EmbeddingParameters, RerankParameters, CompletionParameters)
    def embed_request(self, req: EmbedRequest) -> UpstreamRequest:
        return self._request(req, self.embed_parameters(req))

    def sparse_request(self, req: EmbedRequest) -> UpstreamRequest:
        return self._request(req, self.embed_parameters(req))

    def rerank_request(self, req: RerankRequest) -> UpstreamRequest:
        params = {"input": json_value(req.documents), "query": json_value(req.query)}
        if req.top_n is not None:
            params["top_n"] = json_value(req.top_n)
        if req.return_documents is not None:
            params["return_documents"] = json_value(req.return_documents)
        return self._request(req, params)

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        if req.stream:
            raise StatusError(f"Streaming is not allowed for service [{SERVICE}].", status=405)
        for name in ("max_tokens", "temperature", "top_p", "stop", "seed", "tools", "tool_choice",
                     "response_format", "user", "model"):
            if getattr(req, name) is not None:
                raise unsupported(name, SERVICE)
        if any(m.role != "user" or not isinstance(m.content, str) for m in req.messages):
            raise StatusError(f"The [{SERVICE}] service takes plain text user messages only", status=400)
        # verified: ES CompletionParameters: ${input} is the first input as one JSON string
        first = req.messages[0].content if req.messages else ""
        return self._request(req, {"input": json_value(first)})

    def embed_parameters(self, req: EmbedRequest) -> dict[str, str]:
        if req.dimensions is not None:
            raise unsupported("dimensions", SERVICE)
        if req.user is not None:
            raise unsupported("user", SERVICE)
        params = {"input": json_value(req.inputs)}
        translator = self.setting("input_type")
        translation: dict[str, Any] = {}
        default = ""
        if isinstance(translator, dict):
            raw = translator.get("translation")
            if isinstance(raw, dict):
                translation = {str(k).lower(): v for k, v in raw.items()}
            if isinstance(translator.get("default"), str):
                default = translator["default"]
        kind = req.input_type.value if req.input_type is not None else None
        if kind is not None and kind not in translation and not default:
            # ES would send "" here; refusing says why instead of silently dropping the caller's choice
            raise ValidationError(f"Input type [{kind}] is not supported for [{SERVICE}]: map it in "
                                  f"[service_settings.input_type.translation] or set a default")
        params["input_type"] = json_value(translation[kind] if kind in translation else default)
        return params

    def _request(self, req: CanonicalRequest, request_params: dict[str, str]) -> UpstreamRequest:
        secrets = self._secret_parameters()
        task_params = self._task_parameters(req)
        # ES CustomRequest: strings only (raw) for the URL and headers; everything JSON-encoded for the body,
        # the request's own values last
        strings = {k: v for k, v in secrets.items() if isinstance(v, str)}
        strings.update({k: v for k, v in task_params.items() if isinstance(v, str)})
        values = {k: json_value(v) for k, v in secrets.items()}
        values.update({k: json_value(v) for k, v in task_params.items()})
        values.update(request_params)
        try:
            url = self._url(strings)
            headers = {"Content-Type": "application/json"}
            raw_headers = self.setting("headers")
            if isinstance(raw_headers, dict):
                for name, value in raw_headers.items():
                    if value is None:
                        continue
                    replaced = substitute(str(value), strings, f"header.{name}")
                    for existing in [h for h in headers if h.lower() == str(name).lower()]:
                        del headers[existing]
                    headers[str(name)] = replaced
            body = substitute(self._template(), values, "request")
        except TemplateError as exc:
            raise CustomRequestError(str(exc)) from None
        # the URL is the endpoint's own: gateway-wide origin overrides do not apply
        return UpstreamRequest(url=url, body=body.encode(), headers=headers, explicit_url=True)

    def _url(self, strings: Mapping[str, str]) -> str:
        url = substitute(str(self.setting("url") or ""), strings, "url")
        pairs = []
        raw = self.setting("query_parameters")
        for entry in raw if isinstance(raw, list) else []:
            if isinstance(entry, (list, tuple)) and len(entry) == 2:
                key, value = str(entry[0]), str(entry[1])
                pairs.append((key, substitute(value, strings, f"query parameters: [{key}]")))
        if not pairs:
            return url
        # ES: URIBuilder(url).addParameter(key, value) for each pair, after the URL's own query
        parts = urlsplit(url)
        query = "&".join(p for p in (parts.query, urlencode(pairs)) if p)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))

    # -- responses ----------------------------------------------------------------------------
    def _read(self, body: bytes, read: Callable[[Any, dict[str, Any]], R]) -> R:
        """`read(data, json_parser)` on the decoded body; a value the parser's paths do not find is the
        upstream's fault (ES CustomResponseParser)."""
        parser = self._json_parser()
        try:
            data = _any.decode(body)
        except msgspec.DecodeError:
            raise _response_error("The upstream service sent a malformed response") from None
        try:
            return read(data, parser)
        except ValueError as exc:
            raise _response_error(str(exc)) from None

    def parse_embed(self, req: EmbedRequest, body: bytes) -> EmbedResult:
        return self._read(body, _embeddings)

    def parse_sparse(self, req: EmbedRequest, body: bytes) -> SparseEmbedResult:
        return self._read(body, _sparse_embeddings)

    def parse_rerank(self, req: RerankRequest, body: bytes) -> RerankResult:
        return self._read(body, lambda data, parser: RerankResult(ranked=parse_rerank(
            data, parser["relevance_score"], parser.get("reranked_index"), parser.get("document_text"))))

    def parse_chat(self, req: ChatRequest, body: bytes) -> ChatResult:
        results = self._read(body, lambda data, parser: parse_completion(data, parser["completion_result"]))
        # ES keeps every string as its own completion result; the canonical result has one: the first
        return ChatResult(id="", model="", content=results[0] if results else "")

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        # ES removed the custom `error_parser` (ML_INFERENCE_CUSTOM_SERVICE_REMOVE_ERROR_PARSING): common shapes only
        return generic_error(body)


def _embeddings(data: Any, parser: dict[str, Any]) -> EmbedResult:
    kind = str(parser.get("embedding_type") or "float").lower()
    if kind not in ("float", "byte", "bit", "binary"):
        raise ValueError(f"Invalid embedding_type [{kind}]")
    vectors, element = parse_text_embeddings(data, parser["text_embeddings"], kind)
    return EmbedResult(vectors=vectors, element_type=element)


def _sparse_embeddings(data: Any, parser: dict[str, Any]) -> SparseEmbedResult:
    embeddings = parse_sparse_embeddings(data, parser["token_path"], parser["weight_path"])
    return SparseEmbedResult(embeddings=embeddings, truncated=[False] * len(embeddings))


def _legacy_sparse(parser: dict[str, Any]) -> dict[str, Any]:
    """unverified: a pre-release ES form `{"sparse_result": {"path": P, "value": {"sparse_token": A,
    "sparse_weight": B}}}` (A and B relative to P, starting with `$`) becomes `token_path`/`weight_path`."""
    legacy = parser.get("sparse_result")
    if "token_path" in parser or not isinstance(legacy, dict):
        return parser
    base, value = legacy.get("path"), legacy.get("value")
    if not isinstance(base, str) or not isinstance(value, dict):
        return parser
    token, weight = value.get("sparse_token"), value.get("sparse_weight")
    if not isinstance(token, str) or not isinstance(weight, str):
        return parser
    return {**parser, "token_path": base + token.lstrip("$"), "weight_path": base + weight.lstrip("$")}
