"""Validate endpoint configurations against the catalogue, with Elasticsearch's own messages.

Messages follow ES `ServiceUtils` (missingSettingErrorMsg, invalidTypeErrorMsg, invalidValue,
unknownSettingsError) and the chunking settings classes; ES `ServiceUtils` (error wording) and `ChunkingSettingsBuilder`.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from .catalogue import DEFAULT_CHUNKING, Service, Setting
from .errors import IllegalArgumentError, StatusError, ValidationError
from .types import EMBEDDING_TASKS, TaskType

_JAVA_TYPE = {"str": "String", "int": "Integer", "float": "Double", "bool": "Boolean", "map": "Map",
              "list": "List", "object": "Map", "str_or_object": "String"}


def java_str(value: Any) -> str:
    """Render a value as Java's toString would: ES prints settings maps that way."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_str(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(java_str(v) for v in value) + "]"
    return str(value)


def unknown_settings_error(leftover: Mapping[str, Any], service: str) -> StatusError:
    return StatusError(f"Configuration contains settings [{java_str(dict(leftover))}] unknown to the [{service}] service")


# settings that name a URL the gateway will call (`target` is one service's URL setting)
URL_SETTINGS = frozenset({"url", "streaming_url", "token_url", "target"})
_URI_ILLEGAL = re.compile(r'[\x00-\x20\x7f"<>\\^`{|}]')
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


def _uri_component(url: str, at: int) -> str:
    """Which part of a URL java.net.URI was parsing at `at`: the word its `Illegal character in ...` uses."""
    head, colon, rest = url.partition(":")
    if colon and _SCHEME.fullmatch(head):
        if at < len(head):
            return "scheme name"
        start = len(head) + 1
        if rest.startswith("//"):
            end = min((i for i in (url.find(c, start + 2) for c in "/?#") if i >= 0), default=len(url))
            if at < end:
                return "authority"
            start = end
    else:
        start = 0
    query, fragment = url.find("?", start), url.find("#", start)
    if fragment >= 0 and at > fragment:
        return "fragment"
    if query >= 0 and at > query and (fragment < 0 or query < fragment):
        return "query"
    return "path"


def url_problem(url: str, scope: str, name: str) -> str | None:
    """ES's message for a url setting it cannot parse (ServiceUtils.invalidUrlErrorMsg around
    createUri's `unable to parse url [..]. Reason: ..`), or None when the url is fine. Beyond ES,
    which takes any URI java.net.URI parses, the gateway calls only http and https URLs with a host:
    `file:`, `gopher:` and relative URLs are refused at PUT and _update. `${name}` placeholders (the
    custom service fills them per request) count as plain text."""
    if url == "":
        return f"[{scope}] Invalid value empty string. [{name}] must be a non-empty string"
    invalid = f"[{scope}] Invalid url [{url}] received for field [{name}]. Error: "
    plain = _PLACEHOLDER.sub("x", url)
    bad = _URI_ILLEGAL.search(plain)
    if bad is not None:
        where = _uri_component(plain, bad.start())
        return invalid + f"unable to parse url [{url}]. Reason: Illegal character in {where}"
    scheme, colon, rest = plain.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme) or scheme.lower() not in ("http", "https"):
        return invalid + "only http and https urls can be called"
    try:
        parts = urlsplit(plain)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        return invalid + f"unable to parse url [{url}]. Reason: {exc}"
    if not rest.startswith("//") or not parts.hostname:
        return invalid + "the url has no host"
    return None


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("map", "object"):
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    if kind == "str_or_object":
        return isinstance(value, (str, dict))
    return True


def _check_value(setting: Setting, value: Any, scope: str, errors: list[str]) -> Any:
    """Check one value; append ES messages to `errors`. Returns the value to store."""
    if not _type_ok(setting.kind, value):
        errors.append(f"field [{setting.name}] is not of the expected type. The value [{java_str(value)}] "
                      f"cannot be converted to a [{_JAVA_TYPE[setting.kind]}]")
        return None
    if setting.choices is not None and value not in setting.choices:
        # ES enums are matched case-insensitively and stored in their canonical spelling
        canonical = next((c for c in setting.choices if c.lower() == str(value).lower()), None)
        if canonical is None:
            errors.append(f"[{scope}] Invalid value [{value}] received. [{setting.name}] must be one of "
                          f"[{', '.join(sorted(setting.choices))}]")
            return None
        value = canonical
    if setting.name in URL_SETTINGS and isinstance(value, str):
        problem = url_problem(value, scope, setting.name)
        if problem is not None:
            errors.append(problem)
            return None
    if setting.positive and isinstance(value, (int, float)) and value <= 0:
        errors.append(f"[{scope}] Invalid value [{java_str(value)}]. [{setting.name}] must be a positive integer")
        return None
    if setting.kind == "object" and setting.fields is not None:
        value = _check_object(setting, value, scope, errors)
    return value


def _check_object(setting: Setting, value: dict[str, Any], scope: str, errors: list[str]) -> dict[str, Any]:
    known = {f.name: f for f in setting.fields or ()}
    leftover = {k: v for k, v in value.items() if k not in known}
    if leftover:
        raise StatusError(f"Configuration contains unknown settings [{java_str(leftover)}] while parsing field "
                          f"[{setting.name}] for settings [{scope}]")
    out: dict[str, Any] = {}
    for f in setting.fields or ():
        if f.name in value:
            checked = _check_value(f, value[f.name], scope, errors)
            if checked is not None:
                out[f.name] = checked
        elif f.required:
            errors.append(f"[{scope}] does not contain the required setting [{f.name}]")
    return out


def _parse_settings(settings: Iterable[Setting], given: Mapping[str, Any], task: TaskType, scope: str,
                    errors: list[str], *, require: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split `given` into (known values in catalogue order, leftover unknown keys)."""
    applicable = [s for s in settings if s.applies_to(task)]
    names = {s.name for s in applicable}
    out: dict[str, Any] = {}
    for s in applicable:
        if s.name in given and given[s.name] is not None:
            checked = _check_value(s, given[s.name], scope, errors)
            if checked is not None:
                out[s.name] = checked
        elif require and s.required:
            errors.append(f"[{scope}] does not contain the required setting [{s.name}]")
    leftover = {k: v for k, v in given.items() if k not in names}
    return out, leftover


def _check_one_of(service: Service, present: Mapping[str, Any], errors: list[str]) -> None:
    for group in service.one_of:
        found = [n for n in group.names if n in present]
        if len(found) == 1:
            continue
        listed = " or the ".join(f"[{n}]" for n in group.names)
        if not found:
            errors.append(group.missing or f"[{group.scope}] must have either the {listed} key set")
        else:
            errors.append(f"[{group.scope}] must have only one of the {listed} key set")


def _as_map(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"field [{name}] is not of the expected type. The value [{java_str(value)}] "
                              f"cannot be converted to a [Map]")
    return value


class ValidatedConfig:
    """The parts of an endpoint after validation: public settings, secrets, task and chunking settings."""

    __slots__ = ("service_settings", "secrets", "task_settings", "chunking_settings")

    def __init__(self, service_settings: dict[str, Any], secrets: dict[str, Any], task_settings: dict[str, Any],
                 chunking_settings: dict[str, Any] | None) -> None:
        self.service_settings = service_settings
        self.secrets = secrets
        self.task_settings = task_settings
        self.chunking_settings = chunking_settings


def _in_catalogue_order(service: Service, values: dict[str, Any]) -> dict[str, Any]:
    """ES prints settings in the order of its settings classes, which the catalogue follows."""
    order = {s.name: i for i, s in enumerate(service.service_settings)}
    return {k: values[k] for k in sorted(values, key=lambda k: order.get(k, len(order)))}


def _split_secrets(service: Service, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    secret_names = service.secret_names()
    public = {k: v for k, v in values.items() if k not in secret_names}
    secrets = {k: v for k, v in values.items() if k in secret_names}
    return public, secrets


def validate_create(service: Service, task: TaskType, service_settings: Any, task_settings: Any,
                    chunking_settings: Any) -> ValidatedConfig:
    errors: list[str] = []
    given_ss = _as_map(service_settings, "service_settings")
    given_ts = _as_map(task_settings, "task_settings")
    ss, ss_leftover = _parse_settings(service.service_settings, given_ss, task, "service_settings", errors)
    ts, ts_leftover = _parse_settings(service.task_settings, given_ts, task, "task_settings", errors)
    _check_one_of(service, ss, errors)
    if not errors and service.cross_check is not None:
        errors.extend(service.cross_check(task, ss))
    if errors:
        raise ValidationError(errors)
    if ss_leftover:
        raise unknown_settings_error(ss_leftover, service.name)
    if ts_leftover:
        raise unknown_settings_error(ts_leftover, service.name)
    for key, value in service.defaults_for(task).items():
        ss.setdefault(key, value)
    rpm = service.default_rpm(task)
    if rpm is not None and any(s.name == "rate_limit" for s in service.service_settings):
        ss["rate_limit"] = {"requests_per_minute": rpm, **ss.get("rate_limit", {})}
    public, secrets = _split_secrets(service, _in_catalogue_order(service, ss))
    chunking = validate_chunking(chunking_settings, task, service.name)
    return ValidatedConfig(public, secrets, ts, chunking)


def validate_update(service: Service, task: TaskType, current: ValidatedConfig, service_settings: Any,
                    task_settings: Any) -> ValidatedConfig:
    """`_update` may change task settings, secrets, and settings marked updatable (ES `TransportUpdateInferenceModelAction`)."""
    errors: list[str] = []
    given_ss = _as_map(service_settings, "service_settings")
    given_ts = _as_map(task_settings, "task_settings")
    updatable = [s for s in service.service_settings if s.secret or s.updatable]
    ss, ss_leftover = _parse_settings(updatable, given_ss, task, "service_settings", errors, require=False)
    ts, ts_leftover = _parse_settings(service.task_settings, given_ts, task, "task_settings", errors, require=False)
    if "num_allocations" in ss and "adaptive_allocations" in ss:
        errors.append("[num_allocations] cannot be set if [adaptive_allocations] is set")
    if errors:
        raise ValidationError(errors)
    if ss_leftover:
        raise unknown_settings_error(ss_leftover, service.name)
    if ts_leftover:
        raise unknown_settings_error(ts_leftover, service.name)
    public_update, secret_update = _split_secrets(service, ss)
    public = dict(current.service_settings)
    # one allocation style at a time: setting one replaces the other
    if "num_allocations" in public_update:
        public.pop("adaptive_allocations", None)
    if "adaptive_allocations" in public_update:
        public.pop("num_allocations", None)
    if "rate_limit" in public_update:
        public_update["rate_limit"] = {**public.get("rate_limit", {}), **public_update["rate_limit"]}
    public.update(public_update)
    public = _in_catalogue_order(service, public)
    secrets = dict(current.secrets)
    if secret_update:
        for group in service.one_of:
            if group.scope == "secret_settings" and any(n in secret_update for n in group.names):
                for n in group.names:
                    secrets.pop(n, None)
        secrets.update(secret_update)
    task_settings_out = {**current.task_settings, **ts}
    return ValidatedConfig(public, secrets, task_settings_out, current.chunking_settings)


def validate_task_settings_override(service: Service, task: TaskType, overrides: Any) -> dict[str, Any]:
    """Per-request `task_settings` are checked like stored ones but nothing is required."""
    errors: list[str] = []
    given = _as_map(overrides, "task_settings")
    ts, leftover = _parse_settings(service.task_settings, given, task, "task_settings", errors, require=False)
    if errors:
        raise ValidationError(errors)
    if leftover:
        raise unknown_settings_error(leftover, service.name)
    return ts


# ------------------------------------------------------------------------------- chunking

_CHUNKING_KEYS = {
    "sentence": ("strategy", "max_chunk_size", "sentence_overlap"),
    "word": ("strategy", "max_chunk_size", "overlap"),
    "recursive": ("strategy", "max_chunk_size", "separators", "separator_group"),
    "none": ("strategy",),
}
_CHUNKING_LABEL = {"sentence": "Sentence based", "word": "Word based", "recursive": "Recursive"}
_MIN_CHUNK = {"sentence": 20, "word": 10, "recursive": 10}
SEPARATOR_GROUPS = {
    "plaintext": ["(?<!\\n)\\n\\n(?!\\n)", "(?<!\\n)\\n(?!\\n)"],
    "markdown": ["\n#{1,6} ", "\n^(?!\\s*$).*\\n-{1,}\\n", "\n^(?!\\s*$).*\\n={1,}\\n", "\n```", "\n~~~",
                 "\n\\*\\*\\*", "\n---", "\n___", "\n\n"],
}


def validate_chunking(chunking: Any, task: TaskType, service: str) -> dict[str, Any] | None:
    """Return the chunking settings to store, ES defaults for embedding tasks (`ChunkingSettingsBuilder.DEFAULT_SETTINGS`)."""
    if task not in EMBEDDING_TASKS:
        if chunking is not None:
            raise unknown_settings_error({"chunking_settings": chunking}, service)
        return None
    if chunking is None or chunking == {}:
        return dict(DEFAULT_CHUNKING)
    chunking = _as_map(chunking, "chunking_settings")
    strategy = chunking.get("strategy")
    if strategy is None:
        raise IllegalArgumentError("Can't generate Chunker without ChunkingStrategy provided")
    strategy = str(strategy).lower()
    if strategy not in _CHUNKING_KEYS:
        raise IllegalArgumentError(f"Invalid chunkingStrategy {chunking.get('strategy')}")
    extra = [k for k in chunking if k not in _CHUNKING_KEYS[strategy]]
    if extra and strategy == "none":
        raise ValidationError(f"When chunking is disabled (none), settings can not have the following: "
                              f"[{', '.join(extra)}]")
    if extra:
        raise ValidationError(f"{_CHUNKING_LABEL[strategy]} chunking settings can not have the following "
                              f"settings: [{', '.join(extra)}]")
    if strategy == "none":
        return {"strategy": "none"}
    errors: list[str] = []
    out: dict[str, Any] = {"strategy": strategy}
    size = chunking.get("max_chunk_size")
    if size is None:
        errors.append("[chunking_settings] does not contain the required setting [max_chunk_size]")
    elif not _type_ok("int", size):
        errors.append(f"field [max_chunk_size] is not of the expected type. The value [{java_str(size)}] "
                      f"cannot be converted to a [Integer]")
    elif size <= 0:
        errors.append(f"[chunking_settings] Invalid value [{size}]. [max_chunk_size] must be a positive integer")
    elif size < _MIN_CHUNK[strategy]:
        errors.append(f"[chunking_settings] Invalid value [{size}.0]. [max_chunk_size] must be a greater than or "
                      f"equal to [{_MIN_CHUNK[strategy]}.0]")
    else:
        out["max_chunk_size"] = size
    if strategy == "sentence":
        overlap = chunking.get("sentence_overlap", 1)
        if overlap not in (0, 1) or isinstance(overlap, bool):
            errors.append(f"sentence_overlap[{java_str(overlap)}] must be either 0 or 1")
        else:
            out["sentence_overlap"] = overlap
    elif strategy == "word":
        overlap = chunking.get("overlap")
        if overlap is None:
            errors.append("[chunking_settings] does not contain the required setting [overlap]")
        elif not _type_ok("int", overlap) or overlap <= 0:
            errors.append(f"[chunking_settings] Invalid value [{java_str(overlap)}]. [overlap] must be a positive integer")
        elif isinstance(size, int) and overlap > size / 2:
            # PUT parses with WordBoundaryChunkingSettings.fromMap, whose bound check words it this way
            errors.append(f"[chunking_settings] Invalid value [{float(overlap)}]. [overlap] must be a less than or "
                          f"equal to [{size / 2}]")
        else:
            out["overlap"] = overlap
    else:  # recursive
        if "separators" in chunking and "separator_group" in chunking:
            errors.append("Recursive chunking settings can not have both separators and separator_set")
        elif "separators" in chunking:
            seps = chunking["separators"]
            if not isinstance(seps, list) or not all(isinstance(s, str) for s in seps):
                errors.append(f"field [separators] is not of the expected type. The value [{java_str(seps)}] "
                              f"cannot be converted to a [List]")
            elif not seps:
                errors.append("Recursive chunking settings can not have an empty list of separators")
            else:
                out["separators"] = seps
        else:
            group = str(chunking.get("separator_group", "plaintext")).lower()
            if group not in SEPARATOR_GROUPS:
                errors.append(f"[chunking_settings] Invalid value [{group}] received. [separator_group] must be "
                              f"one of [plaintext, markdown]")
            else:
                out["separators"] = SEPARATOR_GROUPS[group]
    if errors:
        raise ValidationError(errors)
    return out


def check_input_limits(inputs: list[str], max_inputs: int, max_input_chars: int) -> None:
    """The gateway's own bounds on one request's inputs (settings `max_inputs`, `max_input_chars`)."""
    if len(inputs) > max_inputs:
        raise StatusError(f"Too many inputs: [{len(inputs)}] is more than the limit of [{max_inputs}] "
                          f"per request", status=413)
    longest = max((len(i) for i in inputs), default=0)
    if longest > max_input_chars:
        raise StatusError(f"An input of [{longest}] characters is longer than the limit of "
                          f"[{max_input_chars}]", status=413)
