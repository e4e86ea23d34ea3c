"""dfscan.train.losses: LDAM margins, exact CVaR λ against brute force, the fusion loss, the combiner."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfscan.core.errors import InputError
from dfscan.train.losses import (
    BiLevelCVaRLoss,
    LDAMLoss,
    PGFDDLoss,
    contrastive_loss,
    cvar_lambda,
    cvar_objective,
    ldam_margins,
    reconstruction_loss,
    smooth_cvar_lambda,
    smooth_cvar_objective,
)

ALPHA_IN, ALPHA, TAU1, TAU2 = 0.9, 0.5, 1e-3, 1e-4


# ---------------------------------------------------------------- LDAM


def test_ldam_margins_from_counts():
    m = ldam_margins([1, 16, 81, 0, 10000])
    # n^(-1/4): 1, 1/2, 1/3, (zero count), 1/10; scaled so the max is 0.5
    assert m.tolist() == pytest.approx([0.5, 0.25, 0.5 / 3, 0.5, 0.05])
    m = ldam_margins([2475, 25443, 1468, 4163, 8013, 31281, 1111, 2185])
    assert float(m.max()) == pytest.approx(0.5) and int(m.argmax()) == 6  # the rarest group
    assert float(m[5]) == pytest.approx(0.5 * (1111 / 31281) ** 0.25)


@pytest.mark.parametrize("counts", [[], [3, -1], [0, 0], [1, float("nan")]])
def test_ldam_margins_reject_bad_counts(counts):
    with pytest.raises(InputError):
        ldam_margins(counts)


def test_ldam_loss_matches_formula_and_ignores_unknown_groups():
    torch.manual_seed(0)
    counts = [100, 10, 1]
    logits = torch.randn(5, 3, requires_grad=True)
    target = torch.tensor([0, 1, 2, -1, 1])
    loss = LDAMLoss(counts)(logits, target)
    m = np.array(counts, dtype=float) ** -0.25
    m = m * 0.5 / m.max()
    rows, t = [0, 1, 2, 4], [0, 1, 2, 1]
    z = logits.detach().double().numpy()[rows].copy()
    z[np.arange(4), t] -= m[t]
    z *= 30.0
    ref = np.mean([np.log(np.exp(r).sum()) - r[k] for r, k in zip(z, t)])
    assert float(loss.detach()) == pytest.approx(ref, rel=1e-5)
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad[3] == 0)  # the unknown-group row

    empty = LDAMLoss(counts)(logits, torch.full((5,), -1)).detach()
    assert float(empty) == 0.0 and math.isfinite(float(empty))
    with pytest.raises(InputError, match="outputs"):
        LDAMLoss([1, 2])(logits, target)


# ---------------------------------------------------------------- CVaR λ


def _brute_min(fn, lo, hi, n):
    grid = np.linspace(lo, hi, n)
    vals = fn(grid)
    return grid, vals


@pytest.mark.parametrize("n", [1, 2, 5, 10, 16, 37])
@pytest.mark.parametrize("alpha", [0.9, 0.5, 0.25])
def test_inner_cvar_lambda_is_the_minimiser(n, alpha):
    rng = np.random.default_rng(n)
    v = rng.exponential(1.0, n)

    def obj(lam):
        return lam + np.maximum(v[None, :] - lam[:, None], 0).mean(1) / alpha

    lam = cvar_lambda(torch.tensor(v), alpha)
    mine = obj(np.array([lam]))[0]
    # exact: a piecewise-linear convex function is minimised at one of its kinks (the losses)
    assert mine == pytest.approx(obj(v).min(), abs=1e-12)
    # dense grid over a wider range never does better
    grid, vals = _brute_min(obj, v.min() - 1, v.max() + 1, 20001)
    assert mine <= vals.min() + 1e-12
    # the torch objective agrees with the numpy one
    assert float(cvar_objective(torch.tensor(v), lam, alpha)) == pytest.approx(mine)


def test_inner_cvar_lambda_is_the_lower_quantile():
    v = np.arange(1.0, 21.0)  # 20 losses: α = 0.9 keeps the worst 18, λ* = 2nd smallest
    assert cvar_lambda(v, 0.9) == 2.0
    assert cvar_lambda(v, 0.5) == 10.0 and cvar_lambda(v, 1.0) == 1.0
    # CVaR_0.9 = mean of the worst 90% = mean(3..20)
    assert cvar_objective(torch.tensor(v), 2.0, 0.9).item() == pytest.approx(np.mean(v[2:]))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_outer_smooth_cvar_lambda_is_the_minimiser(seed):
    rng = np.random.default_rng(seed)
    g = rng.integers(1, 9)
    v = rng.exponential(0.7, g) + (3.0 if seed == 3 else 0.0)

    def obj(lam):
        z = (v[None, :] - lam[:, None]) / TAU1
        return lam + TAU2 / (2 * ALPHA) * lam**2 + (TAU1 * np.logaddexp(0, z)).mean(1) / ALPHA

    lam = smooth_cvar_lambda(v, ALPHA, TAU1, TAU2)
    mine = obj(np.array([lam]))[0]
    grid, vals = _brute_min(obj, v.min() - 1, v.max() + 1, 400001)  # spacing ~1e-5 < τ1
    best = grid[vals.argmin()]
    assert mine <= vals.min() + 1e-12
    assert abs(lam - best) <= 2 * (grid[1] - grid[0])
    assert float(smooth_cvar_objective(torch.tensor(v), lam, ALPHA, TAU1, TAU2)) == pytest.approx(mine, rel=1e-12)


def test_smooth_cvar_lambda_handles_huge_losses():
    v = np.array([0.0, 1e4, 3e4])
    lam = smooth_cvar_lambda(v, ALPHA, TAU1, TAU2)
    out = smooth_cvar_objective(torch.tensor(v), lam, ALPHA, TAU1, TAU2)
    assert math.isfinite(lam) and math.isfinite(float(out))


# ---------------------------------------------------------------- fusion loss


def _reference_fuse(per_sample: np.ndarray, group: np.ndarray) -> float:
    """Bi-level objective minimised by brute force over both λ levels."""
    inner = []
    for k in np.unique(group):
        v = per_sample[group == k]
        cand = np.concatenate([v, np.linspace(v.min() - 1, v.max() + 1, 5001)])
        inner.append(min(c + np.maximum(v - c, 0).mean() / ALPHA_IN for c in cand))
    L = np.array(inner)
    grid = np.linspace(L.min() - 1, L.max() + 1, 400001)
    z = (L[None, :] - grid[:, None]) / TAU1
    vals = grid + TAU2 / (2 * ALPHA) * grid**2 + (TAU1 * np.logaddexp(0, z)).mean(1) / ALPHA
    return float(vals.min())


def test_fusion_loss_value_gradient_and_absent_groups():
    torch.manual_seed(0)
    logits = torch.randn(24, 2, requires_grad=True)
    label = torch.randint(0, 2, (24,))
    group = torch.tensor([0, 3, 5] * 8)  # 8 groups in the model, only 3 in this batch
    loss = BiLevelCVaRLoss()(logits, label, group)
    ce = F.cross_entropy(logits.detach().double(), label, reduction="none").numpy()
    assert loss.item() == pytest.approx(_reference_fuse(ce, group.numpy()), abs=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # renumbering the present groups changes nothing
    relabelled = BiLevelCVaRLoss()(logits.detach(), label, torch.tensor([0, 1, 2] * 8))
    assert float(relabelled) == pytest.approx(loss.item(), rel=1e-6)


def test_fusion_loss_single_group_and_unknown_group():
    torch.manual_seed(1)
    logits = torch.randn(10, 2)
    label = torch.randint(0, 2, (10,))
    one = BiLevelCVaRLoss()(logits, label, torch.zeros(10, dtype=torch.long))
    ce = F.cross_entropy(logits.double(), label, reduction="none").numpy()
    assert float(one) == pytest.approx(_reference_fuse(ce, np.zeros(10)), abs=1e-6)
    # unknown (-1, -2) ids pool into one group
    g = torch.tensor([-1, -2, 0, 0, 1, 1, -1, 0, 1, -2])
    pooled = BiLevelCVaRLoss()(logits, label, g)
    assert float(pooled) == pytest.approx(_reference_fuse(ce, g.clamp(min=-1).numpy()), abs=1e-6)


def test_fusion_loss_is_finite_for_extreme_logits():
    logits = torch.tensor([[500.0, -500.0], [-500.0, 500.0], [0.0, 0.0], [800.0, -800.0]], requires_grad=True)
    label = torch.tensor([1, 1, 0, 1])  # CE of 1000 and 1600 next to 0 and log 2
    group = torch.tensor([0, 1, 1, 2])
    loss = BiLevelCVaRLoss()(logits, label, group)
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(logits.grad).all()
    assert loss.item() > 1000  # dominated by the worst groups


# ---------------------------------------------------------------- contrastive, reconstruction


def test_contrastive_loss_hand_cases():
    label = torch.tensor([0, 0, 0, 1, 1, 1])
    method = torch.tensor([0, 0, 0, 1, 2, 2])
    same = torch.ones(6, 4, requires_grad=True)
    loss = contrastive_loss(same, same, label, method, margin=3.0, generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(4 * 3.0, abs=1e-4)  # d_pos = d_neg: each of 4 terms = margin
    loss.backward()
    # classes 10 apart (> margin) and tight within: zero loss
    sep = torch.cat([torch.zeros(3, 4), torch.full((3, 4), 5.0)])
    assert float(contrastive_loss(sep, sep, label, method, 3.0)) == 0.0
    # no fakes in the batch: nothing to contrast
    assert float(contrastive_loss(sep[:3], sep[:3], label[:3], method[:3], 3.0)) == 0.0


def test_reconstruction_loss_sums_l1_pairs():
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert float(reconstruction_loss([(a, b), (b, b), (a, 0.5 * b), (b, a)])) == pytest.approx(1 + 0 + 0.5 + 1)
    assert float(reconstruction_loss([])) == 0.0


# ---------------------------------------------------------------- combiner


def test_pgfdd_loss_on_model_output():
    from dfscan.train.config import ModelConfig
    from dfscan.train.model import PGFDD

    torch.manual_seed(0)
    # narrow features and small crops keep this fast; the loss does not depend on either
    model = PGFDD(ModelConfig(backbone="efficientnet_lite0", feature_channels=64), pretrained=False).train()
    x = torch.randn(4, 3, 64, 64)
    label = torch.tensor([0, 0, 1, 1])  # real half, fake half
    method = torch.tensor([0, 0, 2, 5])
    group = torch.tensor([1, 6, 1, 3])
    out = model(x)
    crit = PGFDDLoss(group_counts=[10, 200, 5, 40, 0, 70, 3, 9], generator=torch.Generator().manual_seed(0))
    res = crit(out, label, method, group)
    expect = sum(w * float(res[k]) for k, w in PGFDDLoss.WEIGHTS.items())
    assert res["loss"].item() == pytest.approx(expect, rel=1e-5)
    assert all(math.isfinite(res[k].item()) for k in res) and float(res["rec"]) > 0
    res["loss"].backward()
    for name in ("head_fused", "head_fair", "head_sha", "head_spe", "con_gan", "encoder_c"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    with pytest.raises(InputError, match="unknown loss weight"):
        PGFDDLoss([1, 2], weights={"bogus": 1.0})


def test_pgfdd_loss_without_fairness_terms_is_the_plain_ablation():
    """--no-fairness: L_fair weighs nothing and the fused head trains on plain cross-entropy."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    n = 8
    out = {k: torch.randn(n, c, requires_grad=True) for k, c in
           (("cls_spe", 3), ("cls_sha", 2), ("cls_fair", 4), ("cls_fused", 2))}
    out.update(feat_sha=torch.randn(n, 16), feat_spe=torch.randn(n, 16), recon=[])
    label = torch.tensor([0] * 4 + [1] * 4)
    group = torch.tensor([0, 1, 2, 3, 0, 0, 0, 1])
    fair = PGFDDLoss([4, 2, 1, 1], generator=torch.Generator().manual_seed(0))(out, label, label, group)
    plain = PGFDDLoss([4, 2, 1, 1], generator=torch.Generator().manual_seed(0), fairness=False)(out, label, label, group)
    assert float(plain["fuse"]) == pytest.approx(float(F.cross_entropy(out["cls_fused"].detach(), label)), rel=1e-6)
    assert float(fair["fuse"]) != pytest.approx(float(plain["fuse"]), rel=1e-3)  # the CVaR weights the worst groups
    w = PGFDDLoss.WEIGHTS
    expect = sum(w[k] * float(plain[k]) for k in ("sha", "spe", "rec", "con", "fuse"))
    assert float(plain["loss"].detach()) == pytest.approx(expect, rel=1e-5)  # no L_fair
    plain["loss"].backward()
    assert out["cls_fair"].grad is None
