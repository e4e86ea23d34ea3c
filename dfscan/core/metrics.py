"""Detection and fairness metrics shared by training validation and `dfscan fairness-check`.

Conventions (every function here follows them):
- label 1 = fake (the positive class), 0 = real; `p_fake` is the model's score.
- A sample is predicted fake when `p_fake >= threshold`.
- A rate whose denominator is empty (e.g. FPR of a group with no real samples) is `nan`,
  never an exception; AUC / AP / EER are `nan` when only one class is present.
- Group keys are strings (`str(g)` of whatever was passed).
- Gaps between groups ignore groups where the rate is undefined. (Fairlearn instead counts
  an undefined TPR/FPR as 0, which would turn "no fakes in this group" into a large gap;
  with every group holding both classes the two agree exactly.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast, overload

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from dfscan.core.errors import InputError

NAN = float("nan")
RATE_KEYS = ("tpr", "fpr", "tnr", "fnr")


def _as_arrays(y_true: Any, p_fake: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).reshape(-1)
    p = np.asarray(p_fake, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise InputError(f"labels and scores differ in length ({y.size} vs {p.size})")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if y.size and not np.isin(y, (0, 1)).all():
        bad = y[~np.isin(y, (0, 1))][0]
        raise InputError(f"labels must be 0 (real) or 1 (fake), got {bad!r}")
    if np.isnan(p).any():
        raise InputError(f"{int(np.isnan(p).sum())} score(s) are NaN")
    return y.astype(np.int64), p


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else NAN


def _eer(y: np.ndarray, p: np.ndarray) -> float:
    """Equal error rate: where FNR = FPR on the ROC curve, linearly interpolated between its
    two neighbouring operating points (exact for the piecewise-linear ROC)."""
    fpr, tpr, _ = roc_curve(y, p, pos_label=1, drop_intermediate=False)
    d = (1.0 - tpr) - fpr  # decreasing from 1 to -1
    i = int(np.argmax(d <= 0))
    if i == 0 or d[i] == 0:
        return float(fpr[i])
    t = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def _counts(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.sum((y == 1) & pred))
    fn = int(np.sum((y == 1) & ~pred))
    fp = int(np.sum((y == 0) & pred))
    tn = int(np.sum((y == 0) & ~pred))
    return tp, fn, fp, tn


def _rates(tp: int, fn: int, fp: int, tn: int) -> dict[str, float]:
    n = tp + fn + fp + tn
    return {
        "acc": _div(tp + tn, n),
        "tpr": _div(tp, tp + fn),
        "fpr": _div(fp, fp + tn),
        "tnr": _div(tn, fp + tn),
        "fnr": _div(fn, tp + fn),
        "positive_rate": _div(tp + fp, n),
        "negative_rate": _div(tn + fn, n),
    }


def binary_metrics(y_true: Any, p_fake: Any, threshold: float = 0.5) -> dict[str, float]:
    """n, n_pos, n_neg, auc, ap, eer (threshold-free) and acc, tpr, fpr, tnr, fnr,
    positive_rate, negative_rate at `threshold`."""
    y, p = _as_arrays(y_true, p_fake)
    pred = p >= threshold
    tp, fn, fp, tn = _counts(y, pred)
    out: dict[str, float] = {"n": int(y.size), "n_pos": tp + fn, "n_neg": fp + tn}
    if out["n_pos"] and out["n_neg"]:
        out["auc"] = float(roc_auc_score(y, p))
        out["ap"] = float(average_precision_score(y, p))
        out["eer"] = _eer(y, p)
    else:
        out["auc"] = out["ap"] = out["eer"] = NAN
    out.update(_rates(tp, fn, fp, tn))
    return out


def method_metrics(y_true: Any, p_fake: Any, methods: Any, threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """`binary_metrics` of each forgery method's fakes against every real (keys sorted).

    Per method, the reals are shared: the AUC says how well the model tells that method's fakes
    from real faces, the TPR how many of them it catches at the threshold; a method the model
    fails on shows up here while the pooled AUC hides it. Reals' method values are ignored.
    """
    y, p = _as_arrays(y_true, p_fake)
    m = _group_keys(methods, y.size)
    real = y == 0
    return {k: binary_metrics(y[real | (m == k)], p[real | (m == k)], threshold)
            for k in sorted(set(m[~real].tolist()))}


def _group_keys(groups: Any, n: int) -> np.ndarray:
    g = np.asarray(groups).reshape(-1)
    if g.size != n:
        raise InputError(f"groups and labels differ in length ({g.size} vs {n})")
    return np.array([str(v) for v in g.tolist()], dtype=object)


def group_metrics(y_true: Any, p_fake: Any, groups: Any, threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """`binary_metrics` for each group (keys sorted)."""
    y, p = _as_arrays(y_true, p_fake)
    g = _group_keys(groups, y.size)
    return {k: binary_metrics(y[g == k], p[g == k], threshold) for k in sorted(set(g.tolist()))}


def _spread(values: Sequence[float]) -> float:
    """max - min over the defined values; 0 for one defined value, nan for none."""
    v = [x for x in values if not math.isnan(x)]
    return max(v) - min(v) if v else NAN


def fairness_metrics(y_true: Any, p_fake: Any, groups: Any, threshold: float = 0.5) -> dict[str, float]:
    """Gaps between groups at `threshold`.

    PG-FDD's metrics, in percent: F_FPR = sum_g |FPR_g - FPR_all|; F_MEO = max over
    {FPR, TPR, FNR, TNR} of (max_g - min_g); F_DP = max over {positive rate, negative rate}
    of (max_g - min_g); F_OAE = max_g ACC - min_g ACC. Fairlearn's
    demographic_parity_difference (selection-rate spread) and equalized_odds_difference
    (max of the TPR and FPR spreads, "worst_case"), as fractions. Threshold-free, so cheap
    enough to bootstrap.
    """
    y, p = _as_arrays(y_true, p_fake)
    g = _group_keys(groups, y.size)
    pred = p >= threshold
    overall = _rates(*_counts(y, pred))
    per = [_rates(*_counts(y[g == k], pred[g == k])) for k in sorted(set(g.tolist()))]
    if not per:
        return {k: NAN for k in ("F_FPR", "F_MEO", "F_DP", "F_OAE",
                                 "demographic_parity_difference", "equalized_odds_difference")}
    spread = {k: _spread([r[k] for r in per]) for k in (*RATE_KEYS, "positive_rate", "negative_rate", "acc")}
    fpr_terms = [abs(r["fpr"] - overall["fpr"]) for r in per if not math.isnan(r["fpr"])]

    def worst(keys: Sequence[str]) -> float:
        v = [spread[k] for k in keys if not math.isnan(spread[k])]
        return max(v) if v else NAN

    return {
        "F_FPR": 100.0 * sum(fpr_terms) if fpr_terms else NAN,
        "F_MEO": 100.0 * worst(("fpr", "tpr", "fnr", "tnr")),
        "F_DP": 100.0 * worst(("positive_rate", "negative_rate")),
        "F_OAE": 100.0 * spread["acc"],
        "demographic_parity_difference": spread["positive_rate"],
        "equalized_odds_difference": worst(("tpr", "fpr")),
    }


def calibrate_threshold(y_true: Any, p_fake: Any, method: str = "eer", max_fpr: float = 0.05) -> float:
    """A decision threshold fitted on a validation set.

    "eer" (default): the operating point where FPR and FNR are closest, i.e. real and fake
    faces are misclassified equally often — the point deepfake benchmarks report and one that
    does not depend on the validation set's real/fake ratio. "youden": maximum balanced
    accuracy (TPR - FPR). "fpr": the lowest threshold whose false-positive rate on the
    validation reals is at most `max_fpr` — what a scanner deploys, since accusing real people
    is the costly error. The threshold returned lies midway between the chosen score and
    the next lower distinct score, so it reproduces that operating point with `p >= t`
    while not sitting exactly on a validation sample. Needs both classes.
    """
    y, p = _as_arrays(y_true, p_fake)
    if not (y == 1).any() or not (y == 0).any():
        raise InputError("threshold calibration needs both real and fake samples")
    fpr, tpr, thr = roc_curve(y, p, pos_label=1, drop_intermediate=False)
    if method == "eer":
        i = int(np.argmin(np.abs((1.0 - tpr) - fpr)))
    elif method == "youden":
        i = int(np.argmax(tpr - fpr))
    elif method == "fpr":
        if not 0.0 <= max_fpr < 1.0:
            raise InputError(f"the target false-positive rate must be in [0, 1), got {max_fpr}")
        i = int(np.flatnonzero(fpr <= max_fpr + 1e-12).max())
    else:
        raise InputError(f"unknown calibration method {method!r} (eer|youden|fpr)")
    if i == 0:  # flag nothing: just above the highest score
        return float(np.nextafter(p.max(), np.inf))
    if i + 1 < thr.size:
        return float((thr[i] + thr[i + 1]) / 2.0)
    return float(thr[i])


@overload
def bootstrap_ci(fn: Callable[..., float], *arrays: Any, n: int = ..., seed: int = ..., level: float = ...,
                 strata: Any = ..., bias_corrected: bool = ...) -> tuple[float, ...]: ...
@overload
def bootstrap_ci(fn: Callable[..., dict[str, float]], *arrays: Any, n: int = ..., seed: int = ..., level: float = ...,
                 strata: Any = ..., bias_corrected: bool = ...) -> dict[str, tuple[float, ...]]: ...
def bootstrap_ci(
    fn: Callable[..., float] | Callable[..., dict[str, float]],
    *arrays: Any,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    strata: Any = None,
    bias_corrected: bool = False,
) -> tuple[float, ...] | dict[str, tuple[float, ...]]:
    """Percentile bootstrap interval of `fn(*arrays)`.

    Rows of every array are resampled together, `n` times, with replacement; with `strata`
    (e.g. the groups) each stratum is resampled within itself so a rare group keeps its
    size instead of sometimes vanishing. `fn` may return a float or a dict of floats; the
    result is (low, high) or {key: (low, high)}. nan replicates are ignored.

    `bias_corrected=True` shifts the percentiles by how far the estimate sits from the
    replicates' median (the BC interval) and widens the result to contain the estimate: a
    max − min gap on small groups is biased upwards under resampling, so the plain percentile
    interval can lie entirely above the gap actually measured. The result is then
    (low, high, unstable) per key, `unstable` when the estimate lies outside the middle 95 %
    of the replicates (the interval is then mostly the bootstrap's bias, not the data's noise).
    """
    if n < 1:
        raise InputError("bootstrap needs n >= 1")
    arrs = [np.asarray(a) for a in arrays]
    size = arrs[0].shape[0] if arrs else 0
    if any(a.shape[0] != size for a in arrs):
        raise InputError("bootstrap arrays differ in length")
    rng = np.random.default_rng(seed)
    if strata is None:
        blocks = [np.arange(size)]
    else:
        s = _group_keys(strata, size)
        blocks = [np.flatnonzero(s == k) for k in sorted(set(s.tolist()))]
    reps: list[float | dict[str, float]] = []
    for _ in range(n):
        idx = np.concatenate([b[rng.integers(0, b.size, b.size)] for b in blocks])
        reps.append(fn(*[a[idx] for a in arrs]))
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    estimate = fn(*arrs) if bias_corrected else None

    def interval(values: list[float], est: float | None) -> tuple:
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        if not v.size:
            return (NAN, NAN, True) if bias_corrected else (NAN, NAN)
        if est is None or not math.isfinite(est):
            return (float(np.percentile(v, lo_q)), float(np.percentile(v, hi_q))) + ((True,) if bias_corrected else ())
        from scipy.stats import norm

        below = float(np.mean(v < est) + 0.5 * np.mean(v == est))
        z0 = norm.ppf(min(max(below, 0.5 / v.size), 1 - 0.5 / v.size))
        a_lo = norm.cdf(2 * z0 + norm.ppf((1 - level) / 2))
        a_hi = norm.cdf(2 * z0 + norm.ppf((1 + level) / 2))
        lo, hi = float(np.percentile(v, 100 * a_lo)), float(np.percentile(v, 100 * a_hi))
        unstable = not (1 - level) / 2 <= below <= (1 + level) / 2
        return (min(lo, est), max(hi, est), unstable)

    if isinstance(reps[0], dict):  # fn returns one kind: every replicate (and the estimate) is a dict
        dicts, est = cast("list[dict[str, float]]", reps), cast("dict[str, float] | None", estimate)
        return {k: interval([r[k] for r in dicts], None if est is None else est[k]) for k in dicts[0]}
    return interval(cast("list[float]", reps), cast("float | None", estimate))
