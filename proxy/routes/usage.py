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
from ..httputil import check_params, json_response, parse_time
from ..usage import BUCKET_S, summarize

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


async def get_usage(request: web.Request) -> web.Response:
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
    # minutes that began by `to` count, the current one too (its bucket starts at or before `to`)
    rows = await request.app[appkeys.USAGE].query(q.get("key"), q.get("endpoint"),
                                                  int(start) // BUCKET_S * BUCKET_S, int(end) + 1)
    prices = request.app[appkeys.SETTINGS].prices
    keys = request.app[appkeys.KEYS]
    names = {k.id: k.name for k in keys.find()}
    usage, totals = summarize(rows, start, interval, prices, names)
    out: dict[str, Any] = {"from": _iso(start), "to": _iso(end)}
    if interval is not None:
        out["interval"] = q["interval"]
    out["totals"] = totals
    out["usage"] = [{**u, "buckets": [{"start": _iso(b.pop("start")), **b} for b in u["buckets"]]}
                    if "buckets" in u else u for u in usage]
    return json_response(out)
