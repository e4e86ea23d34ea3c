"""PG-FDD training losses, written as plain functions/modules on tensors.

Total (DESIGN.md): L_sha + 0.1 L_spe + 0.3 L_rec + 0.05 L_con + 0.1 L_fair + 1.0 L_fuse.
Everything is device-agnostic: the only host work is the 1-D search for the CVaR dual
variables λ, done on detached float64 copies of at most a batch of numbers.

Batch convention (as in the official code and `dfscan.train.model.PGFDD`): label 0 = real,
1 = fake; method 0 = real, 1.. = forgery methods; group = intersectional group index
(negative = unknown group).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dfscan.core.errors import InputError

# ---------------------------------------------------------------- reconstruction


def reconstruction_loss(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Sum of mean L1 errors over (reconstruction, target) pairs.

    PG-FDD decodes four images from the two halves a (real) and b (fake) of a batch: self
    reconstructions D(f_a, c_a)→x_a, D(f_b, c_b)→x_b and cross reconstructions
    D(f_b, c_a)→x_a, D(f_a, c_b)→x_b (forgery features of one half, content of the other,
    compared with the image whose content was used). `PGFDD.forward` returns them in
    `out["recon"]`. An empty list (odd batch) gives 0.
    """
    if not pairs:
        return torch.zeros(())
    return sum(F.l1_loss(rec, target) for rec, target in pairs)  # type: ignore[return-value]  # 0 + tensors: a tensor


# ---------------------------------------------------------------- contrastive


def _same_key_shuffle(keys: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """For every sample, the index of a random sample with the same key (a permutation within
    each key, so a sample may draw itself when its key is alone)."""
    out = torch.empty_like(keys)
    for k in torch.unique(keys):
        idx = torch.nonzero(keys == k).flatten()
        out[idx] = idx[torch.randperm(idx.numel(), generator=gen)]
    return out


def triplet_term(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """mean(max(0, ||a − p|| − ||a − n|| + margin)) with Euclidean distances."""
    d_pos = F.pairwise_distance(anchor, positive)
    d_neg = F.pairwise_distance(anchor, negative)
    return torch.clamp(d_pos - d_neg + margin, min=0.0).mean()


def contrastive_loss(
    feat_sha: torch.Tensor,
    feat_spe: torch.Tensor,
    label: torch.Tensor,
    method: torch.Tensor,
    margin: float = 3.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Triplet loss on the shared and the specific pooled features.

    For each real/fake class c and each sample of class c: on the shared features the
    positive is a random sample of class c and the negative a random sample of the other
    class; on the specific features the positive is a random sample of the same forgery
    method and the negative a random sample of the other real/fake class. One mean per
    (feature, class), summed: four terms with a real and a fake half, as in the official
    code. Classes absent from the batch contribute nothing. Sampling runs on the CPU (a
    seeded `generator` makes it reproducible); the distances stay on the features' device.
    """
    label_c = label.detach().cpu().long()
    method_c = method.detach().cpu().long()
    pos_sha = _same_key_shuffle(label_c, generator)
    pos_spe = _same_key_shuffle(method_c, generator)
    total = feat_sha.new_zeros(())
    for c in (0, 1):
        own = torch.nonzero(label_c == c).flatten()
        other = torch.nonzero(label_c != c).flatten()
        if own.numel() == 0 or other.numel() == 0:
            continue
        neg = other[torch.randint(other.numel(), (own.numel(),), generator=generator)]
        dev = feat_sha.device
        o, ps, pp, n = own.to(dev), pos_sha[own].to(dev), pos_spe[own].to(dev), neg.to(dev)
        total = total + triplet_term(feat_sha[o], feat_sha[ps], feat_sha[n], margin)
        total = total + triplet_term(feat_spe[o], feat_spe[pp], feat_spe[n], margin)
    return total


# ---------------------------------------------------------------- LDAM


def ldam_margins(counts: Sequence[float], max_margin: float = 0.5) -> torch.Tensor:
    """Per-class margins ∝ n_c^(-1/4), scaled so the largest is `max_margin`.

    Rare groups get larger margins. A class with zero training samples never appears as a
    target, so its margin is irrelevant; it gets `max_margin` (the rarest possible) rather
    than an infinite value. Counts come from the training manifest.
    """
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    if c.size == 0 or not np.isfinite(c).all() or (c < 0).any():
        raise InputError(f"group counts must be finite and non-negative, got {list(counts)}")
    if not (c > 0).any():
        raise InputError("group counts are all zero: the manifest has no group labels to balance")
    m = np.full_like(c, max_margin)
    pos = c > 0
    raw = c[pos] ** -0.25
    m[pos] = raw * (max_margin / raw.max())
    return torch.tensor(m, dtype=torch.float32)


class LDAMLoss(nn.Module):
    """Label-distribution-aware margin loss (Cao et al. 2019) on the demographic head:
    CE(s·(z − m_y·onehot(y)), y). Targets < 0 (unknown group) are ignored."""

    margins: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, counts: Sequence[float], max_margin: float = 0.5, s: float = 30.0):
        super().__init__()
        if s <= 0:
            raise InputError("LDAM scale s must be positive")
        self.s = float(s)
        self.register_buffer("margins", ldam_margins(counts, max_margin))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != self.margins.numel():
            raise InputError(f"demographic head has {logits.shape[1]} outputs but {self.margins.numel()} group counts were given")
        target = target.long()
        keep = target >= 0
        if not bool(keep.any()):
            return logits.sum() * 0.0  # keeps the graph, no nan from an empty mean
        z, t = logits[keep], target[keep]
        m = self.margins.to(device=z.device, dtype=z.dtype)
        z = z - F.one_hot(t, z.shape[1]).to(z.dtype) * m[t].unsqueeze(1)
        return F.cross_entropy(self.s * z, t)


# ---------------------------------------------------------------- bi-level CVaR


def cvar_lambda(losses: torch.Tensor | np.ndarray, alpha: float) -> float:
    """Exact minimiser of λ + (1/α)·mean[(ℓ − λ)+].

    The objective is convex and piecewise linear with slope 1 − (1/α)·P(ℓ > λ), so it is
    minimised where the fraction of losses strictly above λ drops to α: λ* is the
    (1 − α)-quantile of ℓ. With the n losses sorted ascending, ℓ_(k) for
    k = ceil(n(1 − α)) (clamped to 1..n) satisfies #{ℓ > λ} ≤ αn ≤ #{ℓ ≥ λ}, the optimality
    condition. (α = 0.9: λ* is the 10th percentile, the loss averages the worst 90%.)
    """
    v = np.sort(np.asarray(losses.detach().cpu().double() if isinstance(losses, torch.Tensor) else losses, dtype=np.float64).reshape(-1))
    if v.size == 0:
        raise InputError("CVaR of an empty set of losses")
    if not 0 < alpha <= 1:
        raise InputError(f"CVaR alpha must be in (0, 1], got {alpha}")
    k = min(max(math.ceil(v.size * (1.0 - alpha) - 1e-9), 1), v.size)
    return float(v[k - 1])


def cvar_objective(losses: torch.Tensor, lam: float, alpha: float) -> torch.Tensor:
    """λ + (1/α)·mean[(ℓ − λ)+]; differentiable in ℓ."""
    return lam + torch.clamp(losses - lam, min=0.0).mean() / alpha


def smooth_cvar_objective(losses: torch.Tensor, lam: float, alpha: float, tau1: float, tau2: float) -> torch.Tensor:
    """λ + (τ2/2α)λ² + (1/α)·mean[τ1·softplus((L − λ)/τ1)]; softplus keeps it finite for any
    gap (the raw log(1 + exp) overflows once (L − λ)/τ1 > ~700, i.e. a gap of 0.7)."""
    return lam + (tau2 / (2 * alpha)) * lam * lam + (tau1 * F.softplus((losses - lam) / tau1, threshold=50.0)).mean() / alpha


def _smooth_grad(v: np.ndarray, lam: float, alpha: float, tau1: float, tau2: float) -> float:
    z = (v - lam) / tau1
    sig = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic
    return 1.0 + (tau2 / alpha) * lam - float(sig.mean()) / alpha


def smooth_cvar_lambda(losses: torch.Tensor | np.ndarray, alpha: float, tau1: float, tau2: float, tol: float = 1e-12) -> float:
    """Minimiser of `smooth_cvar_objective` in λ by bisection on its derivative
    1 + (τ2/α)λ − (1/α)·mean σ((L − λ)/τ1), which is strictly increasing (the objective is
    strictly convex for τ2 > 0), so the root is unique. The bracket starts at
    [min L − 1, max L + 1] and widens until the derivative changes sign."""
    v = np.asarray(losses.detach().cpu().double() if isinstance(losses, torch.Tensor) else losses, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise InputError("CVaR of an empty set of losses")
    lo, hi = float(v.min()) - 1.0, float(v.max()) + 1.0
    step = 1.0
    while _smooth_grad(v, lo, alpha, tau1, tau2) > 0:
        step *= 2
        lo -= step
    step = 1.0
    while _smooth_grad(v, hi, alpha, tau1, tau2) < 0:
        step *= 2
        hi += step
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi or hi - lo <= tol * max(1.0, abs(mid)):
            break
        if _smooth_grad(v, mid, alpha, tau1, tau2) > 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


class BiLevelCVaRLoss(nn.Module):
    """PG-FDD's fusion loss: a smoothed CVaR over groups of each group's CVaR of per-sample CE.

    Inner, per intersectional group present in the batch: L_g = min_λ λ + (1/α_in)·mean[(ℓ −
    λ)+] (the mean of the group's worst α_in fraction of losses). Outer: min_λ λ +
    (τ2/2α)λ² + (1/α)·mean_g[τ1·softplus((L_g − λ)/τ1)] (≈ the mean of the worst α fraction
    of groups). Both λ are found exactly on detached values and held fixed, so gradients
    flow only through the losses, as in the official code. Groups absent from the batch are
    skipped; negative group ids (unknown) form one group of their own.
    """

    def __init__(self, alpha_inner: float = 0.9, alpha: float = 0.5, tau1: float = 1e-3, tau2: float = 1e-4):
        super().__init__()
        self.alpha_inner, self.alpha, self.tau1, self.tau2 = alpha_inner, alpha, tau1, tau2

    def group_losses(self, per_sample: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        g = group.detach().long().clamp(min=-1)
        inner = []
        for k in torch.unique(g).tolist():
            lk = per_sample[g == k]
            lam = cvar_lambda(lk, self.alpha_inner)
            inner.append(cvar_objective(lk, lam, self.alpha_inner))
        return torch.stack(inner)

    def forward(self, logits: torch.Tensor, label: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        if logits.shape[0] == 0:
            raise InputError("fusion loss on an empty batch")
        per_sample = F.cross_entropy(logits, label.long(), reduction="none")
        outer = self.group_losses(per_sample, group.to(per_sample.device))
        lam = smooth_cvar_lambda(outer, self.alpha, self.tau1, self.tau2)
        return smooth_cvar_objective(outer, lam, self.alpha, self.tau1, self.tau2)


# ---------------------------------------------------------------- combined


class PGFDDLoss(nn.Module):
    """The weighted PG-FDD objective on `PGFDD.forward`'s output dict.

    forward(out, label, method, group, recon=None) → dict with `loss` (the total) and each
    detached part (`sha, spe, rec, con, fair, fuse`). `recon` defaults to `out["recon"]`.
    `group_counts` are the training manifest's per-group sample counts (LDAM margins).
    `fairness=False` is the ablation without PG-FDD's fairness terms: L_fair weighs 0 and the
    fused head trains on plain cross-entropy instead of the bi-level CVaR loss.
    """

    WEIGHTS = {"sha": 1.0, "spe": 0.1, "rec": 0.3, "con": 0.05, "fair": 0.1, "fuse": 1.0}

    def __init__(self, group_counts: Sequence[float], weights: dict[str, float] | None = None,
                 margin: float = 3.0, generator: torch.Generator | None = None, fairness: bool = True):
        super().__init__()
        unknown = set(weights or {}) - set(self.WEIGHTS)
        if unknown:
            raise InputError(f"unknown loss weight(s): {sorted(unknown)}")
        self.weights = {**self.WEIGHTS, **(weights or {})}
        self.margin = margin
        self.generator = generator
        self.fair = LDAMLoss(group_counts)
        self.fuse = BiLevelCVaRLoss()
        self.fairness = fairness
        if not fairness:  # the ablation: no demographic head loss, and plain CE on the fused head
            self.weights["fair"] = 0.0

    def forward(self, out: dict, label: torch.Tensor, method: torch.Tensor, group: torch.Tensor,
                recon: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
        label, method, group = label.long(), method.long(), group.long()
        parts = {
            "sha": F.cross_entropy(out["cls_sha"], label),
            "spe": F.cross_entropy(out["cls_spe"], method),
            "rec": reconstruction_loss(out.get("recon", []) if recon is None else recon),
            "con": contrastive_loss(out["feat_sha"], out["feat_spe"], label, method, self.margin, self.generator),
            "fair": self.fair(out["cls_fair"], group),
            "fuse": (self.fuse(out["cls_fused"], label, group) if self.fairness
                     else F.cross_entropy(out["cls_fused"], label)),
        }
        dev = out["cls_fused"].device
        total = sum(self.weights[k] * v.to(dev) for k, v in parts.items() if self.weights[k])
        result = {k: v.detach() for k, v in parts.items()}
        result["loss"] = total
        return result
