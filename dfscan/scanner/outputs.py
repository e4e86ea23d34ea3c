"""Writing the files fairness-check and audit produce: the text documents asked for (JSON,
Markdown, JUnit), atomically and only when asked, and matplotlib charts named after the user's
groups or features; and the one check every command that writes makes, that no output of it
is one of its inputs (check_outputs_apart)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from dfscan.core.errors import InputError


def _identity(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def check_outputs_apart(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None], *,
                        folders: Iterable[str | Path | None] = ()) -> None:
    """Refuse (InputError: one line, exit 2, before anything is written) an output file that is one
    of the inputs, or an output folder that holds one.

    Why: `dfscan scan a.mp4 --report a.mp4` replaced the video with its report, and
    `extract-faces --manifest v.mp4` or `--manifest labels.csv` destroyed what it read. `outputs`
    are every file a command writes (a report and its side files: stream, lock; a manifest and its
    state), `inputs` every file it reads (the files collected from the input folders, not the
    folders), `folders` the folders it writes into and clears (extract-faces' crops). A file is
    an input when it resolves to one or is another name of one (same device and inode: a hard
    link). Object-store URIs are not local files and are left out. Missing outputs are fine.
    """
    local = [Path(p) for p in inputs if p is not None and "://" not in str(p)]
    real = {os.path.realpath(p): p for p in local}
    ids = {ident: p for p in local if (ident := _identity(p)) is not None}
    for out in (Path(o) for o in outputs if o is not None):
        same = real.get(os.path.realpath(out))
        if same is None and (ident := _identity(out)) is not None:
            same = ids.get(ident)
        if same is not None:
            raise InputError(f"refusing to write {out}: it is an input ({same}); choose another path")
    for folder in (Path(f) for f in folders if f is not None):
        root = os.path.join(os.path.realpath(folder), "")
        inside = next((p for r, p in real.items() if r.startswith(root)), None)
        if inside is not None:
            raise InputError(f"refusing to write into {folder}: it holds input {inside}; "
                             "choose a folder apart from the inputs")


def _blocking_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is not a folder (nothing can be made under it)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_file(path: str | Path, option: str) -> None:
    """Refuse (one line, exit 2) a file output that cannot be written, before any slow work.

    Why: `build-engine --out x.onnx` where x.onnx is a folder, or `--out some.txt/x.onnx`,
    ended in a traceback after the whole export. Missing folders on the way are fine (made).
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{option} {p} is a folder; give the file to write (e.g. {p / 'model.onnx'})")
    blocker = _blocking_ancestor(p)
    if blocker is not None:
        raise InputError(f"{option} {p}: {blocker} is a file, not a folder")


def check_output_folder(path: str | Path, option: str) -> None:
    """Refuse (one line, exit 2) a folder output that is a file or lies under one, before any slow work."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{option} {p} is a file, not a folder")
    blocker = _blocking_ancestor(p)
    if blocker is not None:
        raise InputError(f"{option} {p}: {blocker} is a file, not a folder")


def write_texts(outputs: Iterable[tuple[str | Path | None, Callable[[], str]]]) -> list[Path]:
    """Write each (path, render) whose path was given, atomically; returns the paths written.

    Nothing is rendered unasked."""
    from dfscan.scanner.report import atomic_write_text

    return [atomic_write_text(path, render()) for path, render in outputs if path]


def slug(name: str, empty: str = "scope") -> str:
    """A user's name as a safe file-name part."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or empty


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write and close a matplotlib figure (closed, so many charts do not pile up)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
