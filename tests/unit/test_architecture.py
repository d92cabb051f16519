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
