"""`GET /_inference/_usage`: what each API key used of each endpoint, summed over every replica.

Query: `key` (an API key id), `endpoint`, `from` and `to` (epoch milliseconds or ISO 8601; the last
24 hours by default), `interval` (a time value such as `1h`: per-interval buckets besides the totals).
Cost is reported where the configuration gives the endpoint a price per million tokens.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from .. import appkeys
from ..errors import IllegalArgumentError
from ..httputil import check_params, parse_time
from ..usage import BUCKET_S

_FIELDS = ("requests", "errors", "input_tokens", "output_tokens")


def _instant(raw: str, name: str) -> float:
    if raw.isdigit():
        return int(raw) / 1000
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise IllegalArgumentError(f"failed to parse [{name}] with value [{raw}]: expected epoch milliseconds or "
                                   f"an ISO 8601 date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def _cost(prices: dict[str, Any], endpoint: str, counts: dict[str, int]) -> float | None:
    price = prices.get(endpoint)
    if price is None:
        return None
    return round(counts["input_tokens"] / 1e6 * price.input + counts["output_tokens"] / 1e6 * price.output, 6)


async def get_usage(request: web.Request) -> web.Response:
    from .es import json_response

    check_params(request, ("key", "endpoint", "from", "to", "interval"))
    q = request.query
    now = time.time()
    end = _instant(q["to"], "to") if "to" in q else now
    start = _instant(q["from"], "from") if "from" in q else end - 86400
    if start >= end:
        raise IllegalArgumentError("[from] must be before [to]")
    interval = parse_time(q["interval"], "interval") if "interval" in q else None
    if interval is not None and (interval < BUCKET_S or interval % BUCKET_S):
        raise IllegalArgumentError(f"[interval] must be a whole number of minutes, got [{q['interval']}]")
    rows = await request.app[appkeys.USAGE].query(q.get("key"), q.get("endpoint"),
                                                  int(start) // BUCKET_S * BUCKET_S, int(end))
    prices = request.app[appkeys.SETTINGS].prices
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        group = groups.setdefault((row.key_id, row.endpoint), {"totals": dict.fromkeys(_FIELDS, 0), "buckets": {}})
        values = [row.requests, row.errors, row.input_tokens, row.output_tokens]
        for name, value in zip(_FIELDS, values):
            group["totals"][name] += value
        if interval is not None:
            slot = int(start + (row.bucket - start) // interval * interval)
            bucket = group["buckets"].setdefault(slot, dict.fromkeys(_FIELDS, 0))
            for name, value in zip(_FIELDS, values):
                bucket[name] += value
    keys = request.app[appkeys.KEYS]
    usage = []
    totals = dict.fromkeys(_FIELDS, 0)
    total_cost = 0.0
    for (key_id, endpoint), group in sorted(groups.items()):
        entry: dict[str, Any] = {"key": key_id or None}
        named = keys.find(key_id=key_id) if key_id else []
        if named:
            entry["key_name"] = named[0].name
        entry["endpoint"] = endpoint
        entry.update(group["totals"])
        cost = _cost(prices, endpoint, group["totals"])
        if cost is not None:
            entry["cost"] = cost
            total_cost += cost
        if interval is not None:
            entry["buckets"] = [{"start": _iso(slot), **counts} for slot, counts in sorted(group["buckets"].items())]
        usage.append(entry)
        for name in _FIELDS:
            totals[name] += group["totals"][name]
    out: dict[str, Any] = {"from": _iso(start), "to": _iso(end)}
    if interval is not None:
        out["interval"] = q["interval"]
    out["totals"] = {**totals, "cost": round(total_cost, 6)} if prices else totals
    out["usage"] = usage
    return json_response(out)
