"""File helpers every layer shares (it sits at the bottom of scanner → engines → train)."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Literal

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
    never half; the file gets the mode open() would have given it.

    Never through a planted link: mkstemp creates its file with O_CREAT | O_EXCL | O_NOFOLLOW
    under a random name, and os.replace renames it over `path` without following a link there,
    so a symlink at `path` is itself replaced and its target is left untouched."""
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


class LinkedOutputError(OSError):
    """An output opened in place is a symbolic link, a hard link or not a regular file."""


_OPEN_FLAGS = {
    "w": os.O_WRONLY | os.O_CREAT,  # truncated after the checks, not by O_TRUNC before them
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "r+": os.O_RDWR,
    "rw": os.O_RDWR | os.O_CREAT,  # read and write, created when missing, never truncated (locks)
}
OpenMode = Literal["w", "a", "r+", "rw"]


def open_output_fd(path: str | Path, mode: OpenMode = "w") -> int:
    """Open a file written in place (a stream appended to, a lock, a manifest) without writing
    through anything planted at `path`; returns the descriptor.

    Why: a symlink planted at `out.stream.jsonl` or `out.stream.lock` would otherwise make dfscan
    write or truncate whatever file it points to. O_NOFOLLOW makes the kernel refuse a link in the
    same call that opens the file (no check-then-open race); O_NONBLOCK keeps a planted FIFO from
    hanging the open. The file must then be a regular file with one name (a planted hard link to
    another file would be written through as surely as a symlink); "w" truncates only after that.
    Any of these is a LinkedOutputError naming why (the caller makes it one line, exit 2).
    Files replaced whole go through atomic_write_bytes instead, which replaces a link.
    """
    flags = _OPEN_FLAGS[mode] | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError:
        if os.path.islink(path):
            raise LinkedOutputError(errno.ELOOP, "it is a symbolic link, and dfscan never writes through one "
                                                 "(remove it, or write elsewhere)", str(path)) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LinkedOutputError(errno.EINVAL, "it is not a regular file (remove it, or write elsewhere)", str(path))
        if st.st_nlink > 1:
            raise LinkedOutputError(errno.EMLINK, f"it is a hard link ({st.st_nlink} names for one file), and dfscan "
                                                  "never writes through one (remove it, or write elsewhere)", str(path))
        if mode == "w":
            os.ftruncate(fd, 0)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_output(path: str | Path, mode: Literal["w", "a"] = "w", *, encoding: str = "utf-8",
                errors: str = "strict", newline: str | None = None) -> IO[str]:
    """open_output_fd as a text file (the in-place writers' `open(path, "w"/"a")`)."""
    fd = open_output_fd(path, mode)
    try:
        return os.fdopen(fd, mode, encoding=encoding, errors=errors, newline=newline)
    except BaseException:
        os.close(fd)
        raise


# ---------------------------------------------------------------- CSV cells a spreadsheet opens

# A cell a spreadsheet reads as a formula (OWASP "CSV injection"): = + - @ and tab / carriage return.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell safe to open in a spreadsheet: a string that starts like a formula gets the
    single-quote prefix OWASP prescribes ('=HYPERLINK(...) is shown, never run); numbers, and
    strings that are plain numbers (-0.5), stay as they are.

    Only for CSVs people open (the scan's CSV report, the curriculum's ratings): the manifests and
    predictions dfscan reads back keep their cells exactly, since the quote would change a path."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


# ---------------------------------------------------------------- JSON that cannot exhaust the stack

MAX_JSON_DEPTH = 64  # a dfscan report nests about 8 deep; the fairness and audit outputs fewer


class JSONTooDeep(ValueError):
    """JSON nested deeper than MAX_JSON_DEPTH (a hostile file): json.loads would hit Python's
    recursion limit, and every walk over it (schema checks, copies, dumps) too."""


def loads_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads, with nesting deeper than `max_depth` an error (JSONTooDeep, a ValueError, as
    json's own decode errors are) instead of a RecursionError traceback, there or later."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    else:
        if not isinstance(value, (dict, list)) or not nested_deeper(value, max_depth):
            return value
    raise JSONTooDeep(f"JSON nested more than {max_depth} levels deep")


def nested_deeper(node: dict | list, levels: int) -> bool:
    """Whether lists and objects nest more than `levels` deep in `node` ({} or []: one level).
    Recursive, but never more than `levels` calls deep, so it cannot exhaust the stack."""
    if levels <= 0:
        return True
    for child in (node.values() if isinstance(node, dict) else node):
        if isinstance(child, (dict, list)) and nested_deeper(child, levels - 1):
            return True
    return False
