"""Rules of the codebase that a test can hold: no provider names in core code, lazy heavy imports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from proxy.catalogue import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def test_no_provider_branches_in_core_code():
    pattern = re.compile(r"service\s*(==|!=|in\s*[(\[{])")
    offenders = []
    for path in list((ROOT / "proxy").rglob("*.py")) + list((ROOT / "engines").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_every_adapter_names_a_catalogue_service():
    from adapters import ADAPTERS, adapter_class

    for service in ADAPTERS:
        assert service in SERVICES
        assert adapter_class(service).service == service


def test_importing_the_server_loads_no_heavy_runtime():
    code = ("import sys, proxy.server; heavy = {'torch', 'vllm', 'transformers', 'sentence_transformers', "
            "'xllamacpp'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def _imports() -> dict[str, set[str]]:
    """Every import (top level, in functions, under TYPE_CHECKING) between modules of proxy/, adapters/, engines/."""
    import ast

    modules: dict[str, Path] = {}
    for package in ("proxy", "adapters", "engines"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(filter(None, (known(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets.update(filter(None, [known(base)] + [known(f"{base}.{a.name}") for a in node.names]))
        graph[name] = targets - {name}
    return graph


def test_no_import_cycle_between_modules():
    graph = _imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


# What adapters and engines may use of the core: its types, errors, stream framing, catalogue and settings.
CORE_FOR_PROVIDERS = {"proxy.contract", "proxy.types", "proxy.errors", "proxy.sse", "proxy.endpoint",
                      "proxy.catalogue", "proxy.settings", "proxy.validation", "proxy.chat_params"}


def test_dependencies_point_from_adapters_and_engines_to_the_core():
    graph = _imports()
    wrong = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                   if (m.startswith(("adapters", "engines")) and t.startswith("proxy") and t not in CORE_FOR_PROVIDERS)
                   or (m.startswith("adapters") and t.startswith("engines"))
                   or (m.startswith("engines") and t.startswith("adapters")))
    assert wrong == []
    # the core reaches adapters only through the backend that drives them, engines only when the app starts
    # (and when the --workers supervisor starts the engine host)
    users = {m for m, targets in graph.items() if m.startswith("proxy") for t in targets
             if t.startswith(("adapters", "engines"))}
    assert users <= {"proxy.backends", "proxy.server", "proxy.workers"}


def test_every_remote_catalogue_service_has_an_adapter():
    from adapters import ADAPTERS

    # the router (composite) calls other endpoints, not a provider
    assert sorted(s for s, spec in SERVICES.items() if not spec.local and not spec.composite and s not in ADAPTERS) == []


# ES offers `completion` without `chat_completion` for these services (their ES services list no chat task);
# both tasks ride on the same chat methods, so their adapters' chat methods serve `completion` only
COMPLETION_ONLY = {"alibabacloud-ai-search", "azureaistudio", "custom"}


def test_every_adapter_serves_exactly_the_catalogued_tasks():
    """An adapter serves the tasks whose methods it defines (`Adapter.tasks()`): every task the catalogue lists
    for its service has them, and it defines no task's methods that the catalogue never routes to it."""
    from adapters import ADAPTERS, adapter_class
    from proxy.types import TaskType as T

    mismatches = {}
    for service in ADAPTERS:
        served = adapter_class(service).tasks()
        if service in COMPLETION_ONLY:
            served -= {T.CHAT_COMPLETION}
        if served != SERVICES[service].tasks:
            mismatches[service] = sorted(t.value for t in served ^ SERVICES[service].tasks)
    assert mismatches == {}
