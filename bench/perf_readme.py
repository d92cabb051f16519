"""Writes the README's performance figures from the bench JSON, and whether each goal of the
performance issue is met in them.

    .venv/bin/python bench/perf_readme.py [bench/results/*.json]   # default: every JSON there

Runs of `bench/overhead.py` are told apart by `--label` (their `params.label`); `bench/local.py`
writes local.json. The section goes between the `perf:begin` and `perf:end` markers of README.md.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
README = BENCH.parent / "README.md"
BEGIN, END = "<!-- perf:begin (bench/perf_readme.py) -->", "<!-- perf:end -->"


def load(paths: list[Path]) -> tuple[dict[str, dict], dict | None]:
    runs: dict[str, dict] = {}
    local = None
    for path in sorted(paths):
        data = json.loads(path.read_text())
        if "embeddings_rps" in data:
            runs[data["params"].get("label") or path.stem] = data
        elif "ratio_to_offline" in data:
            local = data
    return runs, local


def f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:,.{digits}f}"


def figures(r: dict) -> dict:
    """The ratios the goals are stated in, for one run."""
    lat, rps, conc = r["embeddings_latency_c1"], r["embeddings_rps"], r["stream_concurrent"]
    relay_cpu = rps["relay"].get("server_cpu_us_per_request")
    out = {}
    for s in ("gw_es", "gw_v1"):
        out[s] = {
            "rps_ratio": rps[s].get("ratio_to_relay"),
            "added_p50_ratio": lat[s]["added_p50_ms"] / lat["relay"]["added_p50_ms"],
            "cpu_ratio": rps[s]["server_cpu_us_per_request"] / relay_cpu if relay_cpu else None,
            "frames_ratio": conc[s].get("ratio_to_relay"),
            "cpu_per_event_us": conc[s].get("server_cpu_us_per_event"),
        }
    out["relay_cpu_per_event_us"] = conc["relay"].get("server_cpu_us_per_event")
    pt = conc.get("gw_pt", {})  # runs from before the pass-through path have no such row
    out["gw_pt"] = {"frames_ratio": pt.get("ratio_to_relay"), "cpu_per_event_us": pt.get("server_cpu_us_per_event")}
    out["rps"] = {k: rps[k]["rps"] for k in ("relay", "gw_es", "gw_v1")}
    return out


def group(label: str) -> str:
    """Repeated runs of one configuration are labelled `name`, `name-2`, ...: one row, medians."""
    return re.sub(r"-\d+$", "", label)


def median_figures(runs: list[dict]) -> dict:
    each = [figures(r) for r in runs]
    out: dict = {}
    for s in ("gw_es", "gw_v1"):
        out[s] = {k: _median([e[s][k] for e in each]) for k in each[0][s]}
    out["relay_cpu_per_event_us"] = _median([e["relay_cpu_per_event_us"] for e in each])
    out["gw_pt"] = {k: _median([e["gw_pt"][k] for e in each]) for k in each[0]["gw_pt"]}
    out["rps"] = {k: _median([e["rps"][k] for e in each]) for k in each[0]["rps"]}
    return out


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and v == v]
    return statistics.median(kept) if kept else None


def describe(runs: list[dict]) -> str:
    p = runs[0]["params"]
    base = "`--gateway-root` main before this work" if "--gateway-root" in p.get("command", "") else "this tree"
    loads = [x for r in runs for x in (r["machine"]["loadavg_start"][0], r["machine"]["loadavg_end"][0])]
    return (f"{base}; {p.get('workers', 1)} worker(s); "
            + ("`--users`: API key, access log" if p.get("users") else "no key, no access log")
            + f" | {len(runs)} | {min(loads):.1f}–{max(loads):.1f}")


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**not met**")


def section(runs: dict[str, dict], local: dict | None) -> str:
    if not runs:
        return "(no bench/results/overhead*.json yet)"
    groups: dict[str, list[dict]] = {}
    for label, r in sorted(runs.items()):
        groups.setdefault(group(label), []).append(r)
    first = next(iter(runs.values()))
    mi, tools = first["machine"], first["tools"]
    lines = [f"Machine: {mi['nproc']} cores ({mi['cpu_model']}), Python {mi['python']}, aiohttp {mi['aiohttp']}, "
             f"uvloop {mi['uvloop']}, shared with other work (load averages below: wall-clock ratios move by "
             f"±50% between repeats at this load; CPU per request or event is steadier). Upstreams: "
             f"{tools['embeddings_upstream']} (embeddings), {tools['stream_upstream']} (streams); RPS load: "
             f"{tools['rps_load']}. Pinning: {first['params']['pinning']}. Each run: "
             f"`bench/overhead.py --quick --label NAME --output bench/results/overhead-NAME.json` with the flags "
             f"of its row; rows are medians over the runs of one configuration.", "",
             "| runs | gateway | n | load avg | RPS / relay `/_inference`, `/v1` | added p50 c=1 / relay's | "
             "CPU per request / relay's | stream frames/s / relay: `/_inference`, `/v1`, pass-through | "
             "CPU µs per event, the same three (relay) |",
             "|---|---|---|---|---|---|---|---|---|"]
    medians = {}
    for name, rs in groups.items():
        g = medians[name] = median_figures(rs)
        es, v1, pt = g["gw_es"], g["gw_v1"], g["gw_pt"]
        lines.append(f"| `{name}` | {describe(rs)} | {f(es['rps_ratio'])}, {f(v1['rps_ratio'])} | "
                     f"{f(es['added_p50_ratio'])}, {f(v1['added_p50_ratio'])} | {f(es['cpu_ratio'])}, "
                     f"{f(v1['cpu_ratio'])} | {f(es['frames_ratio'])}, {f(v1['frames_ratio'])}, "
                     f"{f(pt['frames_ratio'])} | {f(es['cpu_per_event_us'], 1)}, {f(v1['cpu_per_event_us'], 1)}, "
                     f"{f(pt['cpu_per_event_us'], 1)} ({f(g['relay_cpu_per_event_us'], 1)}) |")
    main_label = "users" if "users" in groups else next(iter(groups))
    g = medians[main_label]
    both = lambda key, test: all(test(g[s][key]) for s in ("gw_es", "gw_v1") if g[s][key] is not None)  # noqa: E731
    goals = [
        ("embeddings RPS per worker ≥ 0.9 of the relay, both surfaces", both("rps_ratio", lambda v: v >= 0.9)),
        ("embeddings added p50 at concurrency 1 ≤ 1.1 × the relay's", both("added_p50_ratio", lambda v: v <= 1.1)),
        ("embeddings server CPU per request ≤ 1.15 × the relay's", both("cpu_ratio", lambda v: v <= 1.15)),
        ("translated streams ≥ 0.6 of the relay's frames/s", both("frames_ratio", lambda v: v >= 0.6)),
        ("translated streams ≤ 3 µs of server CPU per event", both("cpu_per_event_us", lambda v: v <= 3)),
        ("OpenAI pass-through stream ≥ 0.85 of the relay's frames/s",
         None if g["gw_pt"]["frames_ratio"] is None else g["gw_pt"]["frames_ratio"] >= 0.85),
        ("measured as users run it, with and without (rows `users` and `plain`)",
         None if not {"users", "plain"} <= set(groups) else True),
    ]
    lines += ["", f"Goals of the performance issue, judged on the row `{main_label}`:", ""]
    lines += [f"- {text}: {verdict(ok)}" for text, ok in goals]
    multi = [name for name, rs in groups.items() if rs[0]["params"].get("workers", 1) > 1]
    if multi:
        name = multi[0]
        one = "plain" if "plain" in groups else main_label
        w, base = medians[name]["rps"], medians[one]["rps"]
        lines.append(f"- `--workers {groups[name][0]['params']['workers']}` on two cores (row `{name}`, not "
                     f"pinned): `/_inference` {f(w['gw_es'], 0)} RPS, {f(w['gw_es'] / base['gw_es'])} × one "
                     f"worker's (row `{one}`), {f(w['gw_es'] / w['relay'])} × the relay's of its own run: reported")
    else:
        lines.append("- `--workers 2` against one worker and the relay: not measured")
    if local is not None:
        ratio = float(local["ratio_to_offline"]["64"])
        lines.append(f"- local CPU engine, 64 concurrent clients ≥ 80% of offline batched encode "
                     f"(`bench/local.py{' --quick' if local.get('sentences') == 256 else ''}`, {local.get('sentences')} "
                     f"sentences, results/local.json): {ratio:.0%}, {verdict(ratio >= 0.8)}")
    else:
        lines.append("- local CPU engine, 64 concurrent clients ≥ 80% of offline batched encode: not measured")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or list((BENCH / "results").glob("*.json"))
    runs, local = load(paths)
    text = README.read_text()
    head, sep, rest = text.partition(BEGIN)
    if not sep or END not in rest:
        raise SystemExit(f"README.md lacks the markers {BEGIN} ... {END}")
    README.write_text(head + BEGIN + "\n" + section(runs, local) + "\n" + END + rest.partition(END)[2])
    print(section(runs, local))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
