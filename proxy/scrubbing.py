"""Removing an endpoint's secrets from text the gateway sends back or logs.

An upstream error body may echo the key it was sent, plainly or encoded (a `Basic` header
repeated in base64, a URL with the key percent-encoded, a JSON string with escapes). Every form
listed by `variants` is replaced, wherever it appears in the text.
"""

from __future__ import annotations

import base64
import json
import re
import traceback
from functools import lru_cache
from typing import Any, Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
_MIN_SECRET = 4  # shorter values (flags, small numbers) would redact ordinary words
_HEX_ESCAPE = re.compile(r"(%[0-9A-F]{2})")
_MIN_BASE64_CORE = 8  # the part of an encoding that depends on the secret alone must be this long to be matched


def secret_strings(value: Any) -> list[str]:
    """Every string of a secrets map, nested maps and lists included."""
    if isinstance(value, str):
        return [value] if len(value) >= _MIN_SECRET else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in secret_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in secret_strings(v)]
    return []


def _either_case(escape: str) -> str:
    """`%2F` as a pattern that also matches `%2f`."""
    return "%" + "".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in escape[1:])


def _base64_cores(raw: bytes) -> set[str]:
    """The characters of base64(... + secret + ...) that depend on the secret alone, for the three
    alignments the secret can have inside a longer encoded value (e.g. `user:key` of a Basic header)."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        start = (offset * 8 + 5) // 6  # characters that mix in the bytes before the secret
        end = len(encoded) - (1 if (offset + len(raw)) % 3 else 0)  # the last one may mix in the bytes after
        core = encoded[start:end]
        if len(core) >= _MIN_BASE64_CORE:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))  # URL-safe alphabet
    return cores


@lru_cache(maxsize=1024)
def pattern(secret: str) -> re.Pattern[str]:
    """The secret as it may appear in text: plain, JSON-escaped, percent-encoded (hex digits in
    either case), base64 (standard and URL-safe, any alignment). Longest first, so a longer form is
    replaced before a shorter one inside it."""
    raw = secret.encode()
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms |= _base64_cores(raw)
    alternatives = [re.escape(f) for f in forms if len(f) >= _MIN_SECRET]
    for encoded in {quote(secret, safe=""), quote_plus(secret, safe="")}:
        # split with a capturing group: text, escape, text, escape, ...
        parts = _HEX_ESCAPE.split(encoded)
        alternatives.append("".join(_either_case(p) if i % 2 else re.escape(p) for i, p in enumerate(parts)))
    return re.compile("|".join(sorted(set(alternatives), key=len, reverse=True)))


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = pattern(secret).sub(REDACTED, text)
    return text


def scrubbed_traceback(exc: BaseException, secrets: Iterable[str]) -> str:
    """An unexpected exception's traceback fit for the log: its messages may quote what an upstream sent."""
    return scrub_text("".join(traceback.format_exception(exc)), secrets)
