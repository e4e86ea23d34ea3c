"""dfscan.core.metrics: hand-computed cases, nan handling, and agreement with Fairlearn."""

import math

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_negative_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

from dfscan.core.errors import InputError
from dfscan.core.metrics import (
    binary_metrics,
    bootstrap_ci,
    calibrate_threshold,
    fairness_metrics,
    group_metrics,
)

# 4 real, 4 fake. Ranked by score: 0.9P 0.8N 0.7P 0.6P 0.4N 0.35N 0.3P 0.1N
Y8 = [0, 0, 0, 0, 1, 1, 1, 1]
P8 = [0.1, 0.4, 0.35, 0.8, 0.9, 0.6, 0.3, 0.7]


def test_binary_metrics_hand_computed():
    m = binary_metrics(Y8, P8, 0.5)
    assert (m["n"], m["n_pos"], m["n_neg"]) == (8, 4, 4)
    assert m["auc"] == pytest.approx(11 / 16)  # 11 of 16 (fake, real) pairs ordered right
    # AP = mean precision at each fake's rank: 1/1, 2/3, 3/4, 4/7
    assert m["ap"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4)
    # ROC passes through (FPR, TPR) = (0.25, 0.75): FNR = FPR = 0.25
    assert m["eer"] == pytest.approx(0.25)
    # at 0.5: TP 3 (0.9 0.7 0.6), FN 1 (0.3), FP 1 (0.8), TN 3
    assert m["acc"] == pytest.approx(0.75)
    assert m["tpr"] == pytest.approx(0.75)
    assert m["fpr"] == pytest.approx(0.25)
    assert m["tnr"] == pytest.approx(0.75)
    assert m["fnr"] == pytest.approx(0.25)
    assert m["positive_rate"] == pytest.approx(0.5)
    assert m["negative_rate"] == pytest.approx(0.5)


def test_threshold_is_inclusive_and_moves_rates():
    m = binary_metrics(Y8, P8, 0.8)  # 0.8 (real) counts as fake: FP 1, TP 1
    assert m["fpr"] == pytest.approx(0.25) and m["tpr"] == pytest.approx(0.25)
    m = binary_metrics(Y8, P8, 0.81)
    assert m["fpr"] == 0.0 and m["tpr"] == pytest.approx(0.25)


def test_eer_interpolates_between_roc_points():
    # ROC: (0,0) -> (0.5,0) -> (0.5,1): FNR falls 1 -> 0 at FPR 0.5, so EER = 0.5
    assert binary_metrics([0, 0, 1], [0.2, 0.7, 0.5])["eer"] == pytest.approx(0.5)
    # perfect separation
    assert binary_metrics([0, 1], [0.1, 0.9])["eer"] == pytest.approx(0.0)
    # fully inverted
    assert binary_metrics([0, 1], [0.9, 0.1])["eer"] == pytest.approx(1.0)


def test_one_class_gives_nan_not_exceptions():
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9], 0.5)
    assert math.isnan(m["auc"]) and math.isnan(m["ap"]) and math.isnan(m["eer"])
    assert math.isnan(m["fpr"]) and math.isnan(m["tnr"])
    assert m["tpr"] == pytest.approx(2 / 3) and m["fnr"] == pytest.approx(1 / 3)
    m = binary_metrics([], [], 0.5)
    assert m["n"] == 0 and all(math.isnan(m[k]) for k in ("auc", "acc", "tpr", "fpr", "positive_rate"))


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="0 \\(real\\) or 1"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(InputError, match="length"):
        binary_metrics([0, 1], [0.1])
    with pytest.raises(InputError, match="NaN"):
        binary_metrics([0, 1], [0.1, float("nan")])
    with pytest.raises(InputError, match="length"):
        fairness_metrics([0, 1], [0.1, 0.9], ["a"])


# Group A: reals 0.1 0.6, fakes 0.7 0.8. Group B: reals 0.1 0.2 0.3, fakes 0.9 0.4 0.45.
YG = [0, 0, 1, 1, 0, 0, 0, 1, 1, 1]
PG = [0.1, 0.6, 0.7, 0.8, 0.1, 0.2, 0.3, 0.9, 0.4, 0.45]
GG = ["A"] * 4 + ["B"] * 6


def test_group_metrics_hand_computed():
    gm = group_metrics(YG, PG, GG, 0.5)
    assert list(gm) == ["A", "B"]
    a, b = gm["A"], gm["B"]
    assert (a["n"], a["fpr"], a["tpr"], a["acc"], a["positive_rate"]) == (4, 0.5, 1.0, 0.75, 0.75)
    assert b["n"] == 6 and b["fpr"] == 0.0
    assert b["tpr"] == pytest.approx(1 / 3) and b["acc"] == pytest.approx(2 / 3)
    assert b["positive_rate"] == pytest.approx(1 / 6)
    assert a["auc"] == 1.0 and b["auc"] == 1.0


def test_fairness_metrics_hand_computed():
    f = fairness_metrics(YG, PG, GG, 0.5)
    # overall FPR = 1/5; |0.5 - 0.2| + |0 - 0.2| = 0.5
    assert f["F_FPR"] == pytest.approx(50.0)
    # spreads: FPR 0.5, TPR 2/3, FNR 2/3, TNR 0.5
    assert f["F_MEO"] == pytest.approx(100 * 2 / 3)
    # positive rates 3/4 vs 1/6
    assert f["F_DP"] == pytest.approx(100 * 7 / 12)
    assert f["F_OAE"] == pytest.approx(100 * (0.75 - 2 / 3))
    assert f["demographic_parity_difference"] == pytest.approx(7 / 12)
    assert f["equalized_odds_difference"] == pytest.approx(2 / 3)


def test_fairness_skips_undefined_rates_and_single_group():
    # group C has only fakes: its FPR/TNR are undefined and take no part in those gaps
    y = YG + [1, 1]
    p = PG + [0.9, 0.95]
    g = GG + ["C", "C"]
    gm = group_metrics(y, p, g, 0.5)
    assert math.isnan(gm["C"]["fpr"]) and math.isnan(gm["C"]["auc"])
    f = fairness_metrics(y, p, g, 0.5)
    assert f["F_FPR"] == pytest.approx(50.0)
    assert all(math.isfinite(v) for v in f.values())
    # C's TPR (1.0) vs B's (1/3) and ACC (1.0 vs 2/3)
    assert f["equalized_odds_difference"] == pytest.approx(2 / 3)
    assert f["F_OAE"] == pytest.approx(100 / 3)
    one = fairness_metrics(Y8, P8, ["x"] * 8, 0.5)
    assert all(v == 0.0 for v in one.values())
    empty = fairness_metrics([], [], [], 0.5)
    assert all(math.isnan(v) for v in empty.values())


def test_integer_group_ids_become_string_keys():
    gm = group_metrics(YG, PG, [0] * 4 + [1] * 6, 0.5)
    assert list(gm) == ["0", "1"]


def _fairlearn_reference(y, p, g, thr):
    pred = (p >= thr).astype(int)
    metrics = {
        "fpr": false_positive_rate, "tpr": true_positive_rate, "fnr": false_negative_rate,
        "tnr": true_negative_rate, "sel": selection_rate, "acc": accuracy_score,
    }
    mf = MetricFrame(metrics=metrics, y_true=y, y_pred=pred, sensitive_features=g)
    diff = mf.difference(method="between_groups")
    by = mf.by_group
    return {
        "F_FPR": 100 * float(np.abs(by["fpr"] - mf.overall["fpr"]).sum()),
        "F_MEO": 100 * float(max(diff["fpr"], diff["tpr"], diff["fnr"], diff["tnr"])),
        # negative-rate spread equals the selection-rate spread
        "F_DP": 100 * float(diff["sel"]),
        "F_OAE": 100 * float(diff["acc"]),
        "demographic_parity_difference": demographic_parity_difference(y, pred, sensitive_features=g),
        "equalized_odds_difference": equalized_odds_difference(y, pred, sensitive_features=g),
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fairness_metrics_match_fairlearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = 600
    g = rng.choice(["f,asian", "f,white", "m,black", "m,white", "m,other"], size=n, p=[0.1, 0.3, 0.15, 0.35, 0.1])
    y = rng.integers(0, 2, n)
    # group-dependent score shift so the gaps are not all ~0
    shift = {"f,asian": 0.15, "f,white": 0.0, "m,black": -0.1, "m,white": 0.05, "m,other": 0.2}
    p = np.clip(0.35 * y + 0.3 + rng.normal(0, 0.2, n) + np.array([shift[v] for v in g]), 0, 1)
    for thr in (0.3, 0.5, 0.62):
        ours = fairness_metrics(y, p, g, thr)
        ref = _fairlearn_reference(y, p, g, thr)
        for k, v in ref.items():
            assert ours[k] == pytest.approx(v, abs=1e-12), k
        assert ours["F_MEO"] > 0 and ours["F_FPR"] > 0


def test_calibrate_threshold_reproduces_operating_point():
    t = calibrate_threshold(Y8, P8, "eer")
    assert t == pytest.approx(0.5)  # midway between 0.6 (FPR=FNR=0.25) and 0.4
    m = binary_metrics(Y8, P8, t)
    assert m["fpr"] == pytest.approx(0.25) and m["fnr"] == pytest.approx(0.25)
    # reals 0.1 0.2 0.3 0.65, fakes 0.5 0.6 0.7 0.8 0.9: best TPR-FPR is 1 - 1/4 at 0.5 (0.6 - 0 at 0.7)
    y = [0, 0, 0, 0, 1, 1, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.65, 0.5, 0.6, 0.7, 0.8, 0.9]
    t = calibrate_threshold(y, p, "youden")
    assert t == pytest.approx(0.4)
    m = binary_metrics(y, p, t)
    assert m["tpr"] == 1.0 and m["fpr"] == pytest.approx(0.25)
    with pytest.raises(InputError, match="both"):
        calibrate_threshold([1, 1], [0.2, 0.3])
    with pytest.raises(InputError, match="unknown"):
        calibrate_threshold(Y8, P8, "median")


def test_calibrate_threshold_at_a_target_false_positive_rate():
    """The deployed policy: the lowest threshold that flags at most 5 % of validation reals."""
    rng = np.random.default_rng(0)
    y = np.array([0] * 200 + [1] * 100)
    p = np.concatenate([rng.beta(2, 5, 200), rng.beta(5, 2, 100)])
    t = calibrate_threshold(y, p, "fpr", max_fpr=0.05)
    m = binary_metrics(y, p, t)
    assert m["fpr"] <= 0.05 and m["fpr"] == pytest.approx(10 / 200)  # 10 of 200 reals at most
    next_real = p[(y == 0) & (p < t)].max()
    assert binary_metrics(y, p, next_real)["fpr"] > 0.05  # the lowest such threshold: one real lower breaks it
    assert calibrate_threshold(y, p, "fpr", max_fpr=0.0) > p[y == 0].max()  # flag no real at all
    assert calibrate_threshold(y, p, "fpr", max_fpr=0.2) < t  # a looser policy, a lower threshold
    with pytest.raises(InputError, match="false-positive"):
        calibrate_threshold(y, p, "fpr", max_fpr=1.5)


def test_bootstrap_ci_stratified_and_reproducible():
    rng = np.random.default_rng(0)
    n = 400
    g = np.array(["a"] * 360 + ["b"] * 40)
    y = rng.integers(0, 2, n)
    p = np.clip(0.4 * y + 0.3 + rng.normal(0, 0.2, n), 0, 1)

    def fn(y_, p_, g_):
        return fairness_metrics(y_, p_, g_, 0.5)

    ci = bootstrap_ci(fn, y, p, g, n=200, seed=7, strata=g)
    again = bootstrap_ci(fn, y, p, g, n=200, seed=7, strata=g)
    assert ci == again
    point = fn(y, p, g)
    for k, (lo, hi) in ci.items():
        assert lo <= hi
        assert lo <= point[k] <= hi or k == "F_FPR", k  # F_FPR is a sum of |.|: biased upwards
    # strata keep the rare group's size fixed; plain resampling does not
    size_b = lambda g_: float(np.sum(g_ == "b"))  # noqa: E731
    assert bootstrap_ci(size_b, g, n=100, seed=1, strata=g) == (40.0, 40.0)
    lo, hi = bootstrap_ci(size_b, g, n=100, seed=1)
    assert lo < 40 < hi


def test_bias_corrected_interval_contains_its_estimate_and_flags_bias():
    """A max-min gap on tiny groups: resampling inflates it, so the plain percentile interval
    can miss the measured gap; the bias-corrected one contains it and says it is unstable."""
    y = np.zeros(48, dtype=int)
    p = np.array([0.9, 0.1] * 24)
    g = np.repeat(list("abcdefgh"), 6)  # eight groups of six, half of each group's reals flagged
    gap = lambda yy, pp, gg: fairness_metrics(yy, pp, gg, 0.5)["F_OAE"]  # noqa: E731
    assert gap(y, p, g) == 0.0  # both groups: half the reals flagged
    lo, hi = bootstrap_ci(gap, y, p, g, n=300, seed=0, strata=g)
    assert lo > 0.0  # the plain percentile interval lies above the estimate
    lo, hi, unstable = bootstrap_ci(gap, y, p, g, n=300, seed=0, strata=g, bias_corrected=True)
    assert lo <= 0.0 <= hi and unstable
    rng = np.random.default_rng(1)  # large groups: a well-behaved estimate, not flagged
    yy = rng.integers(0, 2, 2000)
    pp = np.clip(yy * 0.3 + rng.random(2000) * 0.7, 0, 1)
    auc = lambda a, b: binary_metrics(a, b)["auc"]  # noqa: E731
    lo, hi, unstable = bootstrap_ci(auc, yy, pp, n=200, seed=0, bias_corrected=True)
    assert lo < auc(yy, pp) < hi and not unstable
