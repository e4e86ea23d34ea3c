"""Metrics overall, per group of every attribute and of their intersection, and the gaps.

Composed from `dfscan/core/metrics.py`; no formula is written here, so training validation and this
release check cannot disagree about what "F_FPR" means.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dfscan.core.errors import InputError
from dfscan.scanner.fairness.gates import CheckOptions, evaluate_gates
from dfscan.scanner.fairness.labels import LabelledSet
from dfscan.scanner.fairness.scores import Scores, probability

SCHEMA = "dfscan.fairness/1"
INTERSECTION = "intersection"
# Columns reported per value (which forgery methods, which datasets the detector fails on) but not
# judged as demographic groups: `method` pits each method's fakes against every real.
BREAKDOWN_COLUMNS = ("method", "domain")
FAIRNESS_KEYS = ("F_FPR", "F_MEO", "F_DP", "F_OAE",
                 "demographic_parity_difference", "equalized_odds_difference")


def scope_order(doc: dict) -> list[str]:
    """The intersection first, then each attribute: the order of every table and chart."""
    return [INTERSECTION] + [a for a in doc["labels"]["attributes"]]


def fmt(value: Any, digits: int = 3) -> str:
    """A metric as table text: "–" for none, yes/no, integers as they are."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _clean(value: Any) -> Any:
    """NaN/inf → None and numpy scalars → Python, so the JSON is valid and comparable."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _group_row(m: dict[str, float], min_group: int) -> dict[str, Any]:
    row: dict[str, Any] = {"n": int(m["n"]), "n_real": int(m["n_neg"]), "n_fake": int(m["n_pos"])}
    for key in ("auc", "acc", "tpr", "fpr", "tnr", "fnr", "positive_rate", "negative_rate", "eer", "ap"):
        row[key] = m[key]
    # a group of one class has no AUC and no FPR or TPR: like a small group it cannot be judged
    reasons = [f"n < {min_group}"] if row["n"] < min_group else []
    if row["n"]:
        reasons += [text for count, text in ((row["n_fake"], "no fake items"),
                                             (row["n_real"], "no real items")) if not count]
    row["sufficient"] = not reasons
    row["insufficient_reason"] = ", ".join(reasons) or None
    return row


@dataclass
class CheckResult:
    """The check's document (what --json writes) plus the scored arrays the plots need."""

    report: dict[str, Any]
    y: np.ndarray
    p: np.ndarray
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])


def analyse(labelled: LabelledSet, scores: Scores, options: CheckOptions) -> CheckResult:
    """Metrics overall, per group of every attribute and of their intersection; gaps; gates."""
    from dfscan.core.metrics import binary_metrics, bootstrap_ci, fairness_metrics, group_metrics, method_metrics
    from dfscan.scanner import __version__

    options.validate()
    threshold = options.threshold
    threshold_source = "--threshold"
    if threshold is None:
        threshold = scores.model.get("threshold")
        threshold_source = "model"
        if threshold is None:
            raise InputError(f"no decision threshold: {scores.source} has no model.threshold; "
                             "pass --threshold")
        # a NaN threshold calls nothing fake and nothing real: every rate gate would judge nothing
        threshold = probability(threshold, f"{scores.source}: model.threshold")
    threshold = float(threshold)

    ok = np.isfinite(scores.values)
    excluded_rows = [i for i in range(len(labelled)) if not ok[i]]
    by_status: dict[str, int] = {}
    for i in excluded_rows:
        by_status[scores.status[i]] = by_status.get(scores.status[i], 0) + 1
    excluded = {
        "count": len(excluded_rows),
        "by_status": dict(sorted(by_status.items())),
        "items": [{"path": labelled.written[i], "line": labelled.lines[i], "status": scores.status[i]}
                  for i in excluded_rows],
    }
    if not ok.any():
        summary = ", ".join(f"{v} {k}" for k, v in by_status.items())
        raise InputError(f"none of the {len(labelled)} labelled items has a score ({summary}); "
                         "nothing to check")
    y = labelled.labels[ok]
    p = scores.values[ok]
    scopes: dict[str, list[str]] = {INTERSECTION: labelled.intersection, **labelled.attributes}
    groups = {s: np.asarray(v, dtype=object)[ok] for s, v in scopes.items()}

    overall = _group_row(binary_metrics(y, p, threshold), 1)
    del overall["sufficient"], overall["insufficient_reason"]
    by_group: dict[str, dict[str, dict]] = {}
    fairness: dict[str, dict[str, float | None]] = {}
    intervals: dict[str, dict[str, dict[str, float]]] = {}
    sufficiency: dict[str, dict[str, list[str]]] = {}
    for scope, g in groups.items():
        per = group_metrics(y, p, g, threshold)
        for name in sorted(set(scopes[scope]) - set(per)):  # every item of the group excluded
            per[name] = binary_metrics(np.zeros(0, dtype=np.int64), np.zeros(0), threshold)
        rows = {k: _group_row(per[k], options.min_group) for k in sorted(per)}
        by_group[scope] = rows
        good = [k for k, r in rows.items() if r["sufficient"]]
        sufficiency[scope] = {"sufficient": good,
                              "insufficient": [k for k, r in rows.items() if not r["sufficient"]]}
        if len(good) < 2:
            fairness[scope] = {k: None for k in FAIRNESS_KEYS}
            continue
        keep = np.isin(g, good)
        yk, pk, gk = y[keep], p[keep], g[keep]
        fairness[scope] = {k: fairness_metrics(yk, pk, gk, threshold)[k] for k in FAIRNESS_KEYS}
        if options.bootstrap:
            ci = bootstrap_ci(lambda a, b, c: fairness_metrics(a, b, c, threshold), yk, pk, gk,
                              n=options.bootstrap, seed=options.seed, strata=gk, bias_corrected=True)
            intervals[scope] = {k: {"low": ci[k][0], "high": ci[k][1], "unstable": ci[k][2]} for k in FAIRNESS_KEYS}

    breakdown: dict[str, dict[str, dict]] = {}
    for col in BREAKDOWN_COLUMNS:
        if col in labelled.columns and col not in labelled.attributes:
            values = np.asarray(labelled.columns[col], dtype=object)[ok]
            table = (method_metrics if col == "method" else group_metrics)(y, p, values, threshold)
            breakdown[col] = {k: _group_row(v, options.min_group) for k, v in table.items()}

    document: dict[str, Any] = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tool": {"name": "dfscan", "version": __version__},
        "labels": {"path": str(labelled.source), "format": labelled.format, "rows": len(labelled),
                   "attributes": list(labelled.attributes)},
        "scores": {"source": scores.source, "model": scores.model},
        "threshold": threshold,
        "threshold_source": threshold_source,
        "settings": {"min_group": options.min_group, "allow_small_groups": options.allow_small_groups,
                     "bootstrap": options.bootstrap, "confidence": 0.95, "seed": options.seed},
        "scored": int(ok.sum()),
        "excluded": excluded,
        "overall": overall,
        "by_group": by_group,
        "groups": sufficiency,
        "fairness": fairness,
        "intervals": intervals,
        "breakdown": breakdown,
        "warnings": list(labelled.warnings),  # group names merged or looking alike
    }
    gate_scopes = [INTERSECTION] + (list(labelled.attributes) if len(labelled.attributes) > 1 else [])
    document["gates"] = evaluate_gates(document, options, gate_scopes)
    document["passed"] = all(g["status"] != "fail" for g in document["gates"])
    return CheckResult(report=_clean(document), y=y, p=p, groups=groups)
