"""Write README's contract table from what the contract suite recorded: `python -m tests.contract.table`.

Runs tests/contract with CONTRACT_REPORT set (conftest writes one record per passing case: service, task,
streaming, SDK and version), then replaces the lines between the README markers with the table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- contract-table:start -->", "<!-- contract-table:end -->"


def table(records: list[dict]) -> str:
    by_service: dict[str, dict] = defaultdict(lambda: {"sdks": set(), "tasks": set(), "stream": set()})
    for r in records:
        row = by_service[r["service"]]
        row["sdks"].add(f"{r['sdk']} {r['version']}".strip())
        task = f"{r['task']} ({r['variant']})" if r.get("variant") else r["task"]
        (row["stream"] if r["stream"] else row["tasks"]).add(task)
    lines = ["| service | oracle (SDK and version, or API reference) | tasks | streamed |", "|---|---|---|---|"]
    for service in sorted(by_service):
        row = by_service[service]
        lines.append(f"| `{service}` | {', '.join(sorted(row['sdks']))} | {', '.join(sorted(row['tasks']))} | "
                     f"{', '.join(sorted(row['stream'])) or '-'} |")
    from tests.contract.cases import NOT_COVERED
    reasons: dict[str, list[str]] = defaultdict(list)
    for what, reason in NOT_COVERED.items():
        reasons[reason].append(what)
    lines += ["", "Not covered yet:", ""]
    lines += [f"- {', '.join(sorted(whats))}: {reason}" for reason, whats in reasons.items()]
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "contract.json")
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/contract"],
                             cwd=ROOT, env={**os.environ, "CONTRACT_REPORT": report})
        if not os.path.exists(report):
            print("the contract suite recorded nothing", file=sys.stderr)
            return 1
        with open(report) as f:
            records = json.load(f)
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{table(records)}\n{END}{tail}")
    print(f"README: {len({r['service'] for r in records})} services, {len(records)} cases")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
