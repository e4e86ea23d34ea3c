"""How well each metadata feature alone separates real from fake, and all of them together.

Separability is the ROC AUC of the feature as a score, folded to >= 0.5 (a feature that is
*lower* in fakes separates as well as one that is higher): 0.5 is no shortcut, 1.0 a perfect
one. A categorical feature scores its best one-vs-rest category ("all fakes are vp9"). The
folding makes small samples read slightly above 0.5, which is why the report carries a
bootstrap interval next to each value.

All features together: a depth-3 decision tree (scikit-learn's DecisionTreeClassifier, missing
values routed by the tree, categories one-hot), cross-validated with stratified folds; its
out-of-fold AUC says whether a *combination* of metadata is a shortcut when no single one is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dfscan.core.metrics import bootstrap_ci
from dfscan.scanner.audit.features import FEATURES

MODEL_NAME = "metadata model"
MODEL_DESCRIPTION = "scikit-learn DecisionTreeClassifier(max_depth=3), stratified k-fold out-of-fold AUC"


@dataclass
class Separation:
    """One feature's separability on a set of rows."""

    auc: float | None   # folded AUC in [0.5, 1], None when a class or the values are missing
    n: int              # rows with a value
    detail: str         # which way it separates, in words


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if y.min() == y.max():
        return math.nan
    a = float(roc_auc_score(y, score))
    return max(a, 1.0 - a)


def _numeric(values: list[Any]) -> np.ndarray:
    return np.array([float(v) if v is not None else math.nan for v in values], dtype=np.float64)


def separation(values: list[Any], y: np.ndarray, kind: str) -> Separation:
    """Folded AUC of one feature; rows without a value are left out (their count is `n`)."""
    has = np.array([v is not None for v in values])
    yy = y[has]
    if not has.any() or yy.min() == yy.max():
        return Separation(None, int(has.sum()), "needs real and fake rows with a value")
    if kind == "num":
        v = _numeric(values)[has]
        auc = _auc(yy, v)
        med_f, med_r = float(np.median(v[yy == 1])), float(np.median(v[yy == 0]))
        way = "higher" if med_f > med_r else "lower" if med_f < med_r else "same median"
        return Separation(auc, int(has.sum()), f"median fake {med_f:.4g} vs real {med_r:.4g} ({way} in fakes)")
    cats = np.array([str(v) for v, h in zip(values, has) if h])
    best, best_cat = (0.5, 0.0), None
    for c in sorted(set(cats.tolist())):
        sel = cats == c
        # ties (a two-valued feature) go to the category that marks the fakes
        key = (round(_auc(yy, sel.astype(np.float64)), 12), float(sel[yy == 1].mean() - sel[yy == 0].mean()))
        if key > best:
            best, best_cat = key, c
    if best_cat is None:
        return Separation(0.5, int(has.sum()), "the same categories in reals and fakes")
    sel = cats == best_cat
    share_f, share_r = float(sel[yy == 1].mean()), float(sel[yy == 0].mean())
    return Separation(best[0], int(has.sum()), f"{best_cat!r}: {share_f:.0%} of fakes vs {share_r:.0%} of reals")


def interval(values: list[Any], y: np.ndarray, kind: str, n: int, seed: int) -> tuple[float, float] | None:
    """95 % percentile bootstrap interval of the folded AUC (rows resampled within each label)."""
    if n <= 0:
        return None
    idx = np.arange(len(values))

    def fn(rows: np.ndarray, labels: np.ndarray) -> float:
        s = separation([values[i] for i in rows], labels, kind)
        return math.nan if s.auc is None else s.auc

    lo, hi = bootstrap_ci(fn, idx, y, n=n, seed=seed, strata=y)
    return None if math.isnan(lo) else (round(lo, 4), round(hi, 4))


def design_matrix(rows: list[dict[str, Any]], names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Numbers as they are (NaN where missing), categories one-hot; column names for importances."""
    cols, titles = [], []
    for name in names:
        values = [r.get(name) for r in rows]
        if FEATURES.get(name, "num") == "num":
            cols.append(_numeric(values))
            titles.append(name)
        else:
            for c in sorted({str(v) for v in values if v is not None}):
                cols.append(np.array([1.0 if v is not None and str(v) == c else 0.0 for v in values]))
                titles.append(f"{name}={c}")
    return (np.stack(cols, axis=1) if cols else np.zeros((len(rows), 0))), titles


def model_separation(rows: list[dict[str, Any]], names: list[str], y: np.ndarray, seed: int) -> dict[str, Any]:
    """Out-of-fold AUC of a shallow tree on every feature, and what it leaned on."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    x, titles = design_matrix(rows, names)
    folds = int(min(5, np.bincount(y, minlength=2).min()))
    if folds < 2 or x.shape[1] == 0:
        return {"auc": None, "folds": folds, "top_features": [], "note": "needs 2+ reals and 2+ fakes"}
    tree = DecisionTreeClassifier(max_depth=3, min_samples_leaf=max(1, len(y) // 50), random_state=seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    p = cross_val_predict(tree, x, y, cv=cv, method="predict_proba")[:, 1]
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, p))  # not folded: a model that learned nothing scores <= 0.5
    importances = tree.fit(x, y).feature_importances_
    top = [{"feature": titles[i], "importance": round(float(importances[i]), 4)}
           for i in np.argsort(-importances)[:5] if importances[i] > 0]
    return {"auc": round(auc, 4), "folds": folds, "top_features": top, "note": ""}
