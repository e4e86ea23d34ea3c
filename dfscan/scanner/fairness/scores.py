"""Scores for a labelled set: from an earlier dfscan report, or by scanning the media now."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfscan.core.errors import InputError
from dfscan.scanner.fairness.labels import LabelledSet


@dataclass
class Scores:
    """A score per labelled row (NaN where the item was not scored) and where they came from."""

    values: np.ndarray
    status: list[str]                # "ok", "no_face", "error", ...
    model: dict[str, Any]
    source: str


def load_report(path: str | Path) -> dict:
    """Read an earlier dfscan report (json or jsonl); anything else is an InputError."""
    from dfscan.scanner.report import read_report

    path = Path(path)
    if not path.is_file():
        raise InputError(f"scores report not found: {path}")
    report = read_report(path)
    if not isinstance(report.get("items"), list):
        raise InputError(f"{path.name}: report has no 'items' list")
    return report


def scores_from_report(report: dict, labelled: LabelledSet, *, base: Path | None = None,
                       source: str = "report") -> Scores:
    """Match report items to labelled rows by path (absolute, or relative to `base`/cwd).

    A scored item's score must be a probability (a number in [0, 1]: not 7.0, true or NaN), and
    no two items may name one labelled file: a gate judged on made-up or silently chosen scores
    would pass or fail for nothing. Either is an InputError naming the item."""
    by_file: dict[str, list[int]] = {}  # the file each item is for → the items
    by_raw: dict[str, list[int]] = {}   # the path as the item writes it (matched to the CSV's, as written)
    items = report["items"]
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise InputError(f"{source}: an item without a 'path' string")
        raw = item["path"]
        by_file.setdefault(_item_file(raw, base), []).append(n)
        by_raw.setdefault(raw, []).append(n)
    values = np.full(len(labelled), np.nan, dtype=np.float64)
    status: list[str] = []
    unmatched: list[str] = []
    for i, (path, written) in enumerate(zip(labelled.paths, labelled.written)):
        found = by_file.get(str(path)) or by_raw.get(written) or []
        if not found:
            unmatched.append(written)
            status.append("unmatched")
            continue
        if len(found) > 1:
            raise InputError(f"{source}: {len(found)} items (numbers {', '.join(str(n + 1) for n in found[:3])}) "
                             f"are for {_shown(written)} (labelled line {labelled.lines[i]}); a report lists "
                             "each file once: which score counts?")
        item = items[found[0]]
        score = item.get("score")
        st = item.get("status", "ok")
        if st == "ok" and score is not None:
            values[i] = probability(score, f"{source}: item {_shown(item['path'])}: score")
            status.append("ok")
        else:
            status.append(st if st != "ok" else "no_score")
    if unmatched:
        first = ", ".join(unmatched[:3]) + (", ..." if len(unmatched) > 3 else "")
        raise InputError(f"{len(unmatched)} of {len(labelled)} labelled rows have no item in "
                         f"{source} (first: {first}); paths are matched after resolving "
                         "against the CSV's folder")
    return Scores(values=values, status=status, model=dict(report.get("model") or {}),
                  source=source)


def _item_file(raw: str, base: Path | None) -> str:
    """The absolute path of the file an item is for. A scan writes paths as given to it, so a
    relative one is read from the current folder; from the report's folder (`base`) when only
    there is such a file (a report read from elsewhere)."""
    here = os.path.abspath(raw)
    if base is None or os.path.isabs(raw) or os.path.exists(here):
        return here
    there = os.path.abspath(Path(base) / raw)
    return there if os.path.exists(there) else here


def probability(value: Any, what: str) -> float:
    """`value` as a float in [0, 1]; anything else (a bool, a string, NaN, 7.0) is an InputError
    saying `what` it was."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and 0 <= value <= 1):
        raise InputError(f"{what} {value!r} is not a probability (a number in [0, 1])")
    return float(value)


def _shown(text: str) -> str:
    return text if text.isprintable() else repr(text)


def score_with_pipeline(labelled: LabelledSet, scan_options: Any, progress: Any = None) -> Scores:
    """Score every labelled item through the scan pipeline (the same path users' scans take)."""
    from dfscan.scanner.pipeline import scan

    report = scan([str(p) for p in labelled.paths], scan_options, progress=progress)
    if (report.get("summary") or {}).get("interrupted"):
        raise KeyboardInterrupt
    skipped = {os.path.abspath(s["path"]): s.get("reason", "skipped") for s in report.get("skipped") or []}
    for path, written, line in zip(labelled.paths, labelled.written, labelled.lines):
        if str(path) in skipped:
            raise InputError(f"{labelled.source.name} line {line}: {written} was not scanned "
                             f"({skipped[str(path)]})")
    return scores_from_report(report, labelled, source="the scan")
