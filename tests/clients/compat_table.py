"""Print the README's client compatibility table from a run of tests/clients (both venvs).

    python tests/clients/compat_table.py .venv/bin/python .venv-clients-pinned/bin/python

The first venv runs the client tests, the others (the pinned clients' venv) tests/clients/pinned; a row
per library, its version in that venv, what was exercised (the test names) and how many passed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# test module -> (client, distribution whose version is reported)
CLIENTS = {"test_openai_sdk": ("openai SDK", "openai"), "test_langchain": ("LangChain", "langchain-openai"),
           "test_pydantic_ai": ("pydantic-ai", "pydantic-ai-slim"), "test_openai_agents": ("OpenAI Agents SDK",
                                                                                          "openai-agents"),
           "test_litellm": ("litellm (client)", "litellm"), "test_instructor": ("instructor", "instructor"),
           "test_llama_index": ("LlamaIndex", "llama-index-core"),
           "test_anthropic_messages_api": ("anthropic SDK (/v1/messages)", "anthropic"),
           "test_responses_api": ("openai SDK Responses client", "openai")}
PATHS = ["tests/clients", "tests/integration/test_anthropic_messages_api.py", "tests/integration/test_responses_api.py"]


def run(python: str, paths: list[str]) -> dict[str, dict]:
    with tempfile.NamedTemporaryFile(suffix=".xml") as report:
        subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report.name}", *paths],
                       cwd=ROOT, check=False, capture_output=True)
        tree = ET.parse(report.name)
    rows: dict[str, dict] = defaultdict(lambda: {"passed": 0, "failed": 0, "tests": []})
    for case in tree.iter("testcase"):
        module = case.get("classname", "").rpartition(".")[2]
        if module not in CLIENTS or case.find("skipped") is not None:
            continue
        row = rows[module]
        row["failed" if case.find("failure") is not None or case.find("error") is not None else "passed"] += 1
        name = case.get("name", "").removeprefix("test_").split("[")[0].replace("_", " ")
        if name not in row["tests"]:
            row["tests"].append(name)
    for module, row in rows.items():
        dist = CLIENTS[module][1]
        row["version"] = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                                        capture_output=True, text=True).stdout.strip()
    return rows


def main(pythons: list[str]) -> None:
    print("| Client | Version | Tested | Result |")
    print("| --- | --- | --- | --- |")
    for n, python in enumerate(pythons):
        rows = run(python, PATHS if n == 0 else ["tests/clients/pinned"])
        for module, row in sorted(rows.items(), key=lambda kv: CLIENTS[kv[0]][0].lower()):
            total = row["passed"] + row["failed"]
            result = "pass" if not row["failed"] else f"{row['failed']} of {total} fail"
            print(f"| {CLIENTS[module][0]} | {row['version']} | {'; '.join(row['tests'])} | {result} ({total} tests) |")


if __name__ == "__main__":
    main(sys.argv[1:] or [sys.executable])
