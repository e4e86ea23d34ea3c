"""The whole check in one call: read the labelled set, get its scores, analyse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfscan.core.errors import InputError
from dfscan.scanner.fairness.analysis import BREAKDOWN_COLUMNS, CheckResult, analyse
from dfscan.scanner.fairness.gates import CheckOptions
from dfscan.scanner.fairness.labels import read_labels
from dfscan.scanner.fairness.scores import load_report, score_with_pipeline, scores_from_report


def run_check(labels: str | Path, options: CheckOptions, *, scores_report: str | Path | None = None,
              scan_options: Any = None, progress: Any = None,
              root: str | Path | None = None) -> CheckResult:
    """The whole check: read the labelled set (paths confined to `root` if given), get scores
    (report or scan), analyse."""
    asked = set(options.attrs or ())
    labelled = read_labels(labels, options.attrs, root=root, exclude=[c for c in BREAKDOWN_COLUMNS if c not in asked])
    if scores_report is not None:
        report = load_report(scores_report)
        scores = scores_from_report(report, labelled, base=Path(scores_report).resolve().parent,
                                    source=Path(scores_report).name)
    else:
        if scan_options is None:
            raise InputError("give --scores report.json or let the check scan the media")
        scores = score_with_pipeline(labelled, scan_options, progress=progress)
    return analyse(labelled, scores, options)
