"""Encryption at rest for endpoint secrets (AES-256-GCM).

The key comes from `INFERENCE_PROXY_SECRET_KEY` (base64 of 32 bytes) or from a key file created
with mode 0600 in the data directory. Each sealed blob is `nonce || ciphertext+tag`, bound to its
inference id through the associated data, so a blob copied onto another row does not open.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE_NAME = "secret.key"
_NONCE_BYTES = 12


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secret key must be 32 bytes (base64-encoded in the environment)")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<redacted>)"

    @classmethod
    def load(cls, env_key: str | None, data_dir: Path) -> "SecretBox":
        if env_key:
            return cls(base64.b64decode(env_key))
        path = data_dir / KEY_FILE_NAME
        try:
            return cls(base64.b64decode(path.read_bytes()))
        except FileNotFoundError:
            pass
        key = AESGCM.generate_key(bit_length=256)
        # O_EXCL: two processes starting together must not both write a different key
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(base64.b64decode(path.read_bytes()))
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64encode(key))
            f.flush()
            os.fsync(f.fileno())
        return cls(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, blob: bytes, context: str) -> bytes:
        return self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode())
