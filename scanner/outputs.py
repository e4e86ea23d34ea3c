"""Writing the files fairness-check and audit produce: the text documents asked for (JSON,
Markdown, JUnit), atomically and only when asked, and matplotlib charts named after the user's
groups or features."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable


def write_texts(outputs: Iterable[tuple[str | Path | None, Callable[[], str]]]) -> list[Path]:
    """Write each (path, render) whose path was given, atomically; returns the paths written.

    Nothing is rendered unasked."""
    from scanner.report import atomic_write_text

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
