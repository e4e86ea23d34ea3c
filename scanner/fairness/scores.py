"""Scores for a labelled set: from an earlier dfscan report, or by scanning the media now."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scanner.fairness.labels import LabelledSet
from train.errors import InputError


@dataclass
class Scores:
    """A score per labelled row (NaN where the item was not scored) and where they came from."""

    values: np.ndarray
    status: list[str]                # "ok", "no_face", "error", ...
    model: dict[str, Any]
    source: str


def load_report(path: str | Path) -> dict:
    """Read an earlier dfscan report (json or jsonl); anything else is an InputError."""
    from scanner.report import read_report

    path = Path(path)
    if not path.is_file():
        raise InputError(f"scores report not found: {path}")
    report = read_report(path)
    if not isinstance(report.get("items"), list):
        raise InputError(f"{path.name}: report has no 'items' list")
    return report


def scores_from_report(report: dict, labelled: LabelledSet, *, base: Path | None = None,
                       source: str = "report") -> Scores:
    """Match report items to labelled rows by path (absolute, or relative to `base`/cwd)."""
    bases = [Path.cwd()] + ([Path(base)] if base is not None else [])
    by_key: dict[str, dict] = {}
    for item in report["items"]:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise InputError(f"{source}: an item without a 'path' string")
        raw = item["path"]
        p = Path(raw)
        keys = {raw} | ({os.path.abspath(p)} if p.is_absolute()
                        else {os.path.abspath(b / p) for b in bases})
        for k in keys:
            by_key.setdefault(k, item)
    values = np.full(len(labelled), np.nan, dtype=np.float64)
    status: list[str] = []
    unmatched: list[str] = []
    for i, (path, written) in enumerate(zip(labelled.paths, labelled.written)):
        item = by_key.get(str(path)) or by_key.get(written)
        if item is None:
            unmatched.append(written)
            status.append("unmatched")
            continue
        score = item.get("score")
        st = item.get("status", "ok")
        if st == "ok" and isinstance(score, (int, float)) and math.isfinite(score):
            values[i] = float(score)
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


def score_with_pipeline(labelled: LabelledSet, scan_options: Any, progress: Any = None) -> Scores:
    """Score every labelled item through the scan pipeline (the same path users' scans take)."""
    from scanner.pipeline import scan

    report = scan([str(p) for p in labelled.paths], scan_options, progress=progress)
    if (report.get("summary") or {}).get("interrupted"):
        raise KeyboardInterrupt
    skipped = {os.path.abspath(s["path"]): s.get("reason", "skipped") for s in report.get("skipped") or []}
    for path, written, line in zip(labelled.paths, labelled.written, labelled.lines):
        if str(path) in skipped:
            raise InputError(f"{labelled.source.name} line {line}: {written} was not scanned "
                             f"({skipped[str(path)]})")
    return scores_from_report(report, labelled, source="the scan")
