"""Elasticsearch time values ("30s", "500ms", "2m"), as request parameters and settings give them."""

from __future__ import annotations

import functools
import re

from .errors import IllegalArgumentError

_TIME = re.compile(r"^(\d+)(nanos|micros|ms|s|m|h|d)$")
_UNIT_SECONDS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(value: str, setting: str = "timeout") -> float:
    """ES time value ("30s", "500ms", "2m") in seconds."""
    seconds = _seconds(value)
    if seconds is None:
        raise IllegalArgumentError(f"failed to parse setting [{setting}] with value [{value}] as a time value: "
                                   f"unit is missing or unrecognized")
    return seconds


@functools.lru_cache(maxsize=256)  # every inference request parses its timeout, nearly always the default
def _seconds(value: str) -> float | None:
    m = _TIME.match(value.strip())
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else None
