"""File helpers every layer shares (it sits at the bottom of scanner → engines → train)."""

from __future__ import annotations

import os
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
