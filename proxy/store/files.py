"""File modes of the data directory: it holds the key file, the API key digests and the sealed
secrets, so it is private to the gateway's user, like `secret.key`."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_dir(path: Path) -> None:
    """Create the directory owner-only (0700); narrow one an older version left wider, but never a
    shared one such as /tmp (sticky) or one another user owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & 0o077 and not st.st_mode & stat.S_ISVTX and st.st_uid == os.getuid():
        os.chmod(path, 0o700)


def private_file(path: Path) -> None:
    """Create an SQLite file owner-only (0600) before SQLite opens it: SQLite gives its `-wal` and
    `-shm` files the mode of the database file. Files left with wider modes are narrowed."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            if stat.S_IMODE(name.stat().st_mode) & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            continue
