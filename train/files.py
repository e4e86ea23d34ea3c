"""File helpers every layer shares (it sits at the bottom of scanner → engines → train)."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process umask (reading it means setting it: done under a lock and put back at once)."""
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def make_public(path: str | Path) -> None:
    """Give a file made by tempfile.mkstemp (always 0600) the mode open() would have given it,
    so an atomically written report or model is as readable as any other output."""
    os.chmod(path, 0o666 & ~umask())


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write via a temporary file in the same folder and os.replace: readers see old or new,
    never half; the file gets the mode open() would have given it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        make_public(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
