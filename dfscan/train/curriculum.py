"""Quality-centric curriculum (`dfscan train --curriculum quality`).

Every fake row of the training manifest gets a forgery-quality rating q in [0, 1] (0: an easy,
low-quality fake; 1: a realistic one), the mean of two percentile ranks over the fakes:

- static (computed once, before training): how close the fake is to real faces in two cheap
  image statistics, the radially averaged log power spectrum of the grey image (blur, up-sampling
  and blending traces shift it: Durall et al. 2020) and the mean/std of each YCrCb channel (colour
  mismatch of a poor swap). The reference is the fake's own source real, the real rows that
  share its `source` (the recipe's DFDC fakes name their original video there), so the score
  measures what the forgery changed rather than how unusual the video is; a fake whose source is
  not in the manifest is compared with the mean of all real rows. Both distances are ranked over
  the fakes and the ranks averaged, so neither unit dominates. Synthetic fakes (`dfscan.train.balance`)
  have no fixed image and no static score.
- dynamic (refreshed after each epoch, no extra passes): the mean per-sample cross-entropy of the
  fused head on that fake over the epoch's own training steps; a fake the model still finds
  hard is a realistic one. A fake not drawn in an epoch keeps its last value.

q = (1 − a) · static + a · dynamic with a = `dynamic_weight` (the one that is known when the
other is not; 0.5 when neither). Ranks put both on one scale, so the pacing below means the same
on any data.

Pacing: fakes are drawn with weight exp(κ(t) · (q − ½)), κ moving linearly per training step
from `pacing_start` (negative: easy fakes favoured) to `pacing_end` (positive: realistic ones
favoured), t = global step / (last step); κ = 0 is uniform. The expected rating of a draw,
E_κ[q], rises with κ (its derivative is Var_κ(q) ≥ 0), so the schedule is monotone. The weights
only choose a row within the sampler's label × group stratum, so batch balance is unchanged.

Low-quality fakes (q < ½) get, with probability `aug` · (1 − 2q), the low-frequency amplitude
of a real mixed in (`dfscan.train.sbi.amplitude_mix`): their source real where known, else a real of
their group, else any real; the choice rides in the batch key, so it is reproducible.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch.utils.data import Sampler

from dfscan.core.errors import InputError
from dfscan.core.files import spreadsheet_cell
from dfscan.train.data import BalancedBatchSampler, Key, Manifest
from dfscan.train.images import load_image

STAT_SIZE = 128  # side the statistics are computed at: the recipe's crop size, cheap FFTs
SPECTRUM_BINS = 16
STATE_FORMAT = "dfscan.quality/1"
CSV_COLUMNS = ("epoch", "row", "path", "method", "group", "synthetic", "static", "dynamic_loss", "rating",
               "weight_start", "weight_end", "aug_prob")


# ---------------------------------------------------------------- static statistics


def radial_spectrum(grey: np.ndarray, bins: int = SPECTRUM_BINS) -> np.ndarray:
    """Mean log power per radial frequency band (Hann-windowed, DC excluded)."""
    h, w = grey.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    f = np.fft.fftshift(np.fft.fft2((grey - grey.mean()) * win))
    power = np.log1p(np.abs(f) ** 2)
    yy, xx = np.indices((h, w))
    r = np.hypot(yy - h // 2, xx - w // 2) / (min(h, w) / 2)
    band = np.minimum((r * bins).astype(int), bins)  # bins: the corners beyond the inscribed circle
    sums = np.bincount(band.ravel(), power.ravel(), bins + 1)[:bins]
    counts = np.bincount(band.ravel(), minlength=bins + 1)[:bins]
    return (sums[1:] / np.maximum(counts[1:], 1)).astype(np.float64)  # band 0 holds DC


def colour_stats(rgb: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of each YCrCb channel, in [0, 1] units."""
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).reshape(-1, 3).astype(np.float64) / 255.0
    return np.concatenate([ycc.mean(0), ycc.std(0)])


def image_stats(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = load_image(path, STAT_SIZE)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return radial_spectrum(grey), colour_stats(img)


def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each finite value among the finite ones, in [0, 1] (ties averaged); NaN stays NaN."""
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    m = int(ok.sum())
    if m == 1:
        out[ok] = 0.5
    elif m > 1:
        out[ok] = (rankdata(values[ok]) - 1.0) / (m - 1)
    return out


def _real_rows(manifest: Manifest) -> list[int]:
    return [i for i, s in enumerate(manifest.samples) if s.label == 0 and not s.synthetic]


def _sources(manifest: Manifest) -> dict[str, list[int]]:
    by: dict[str, list[int]] = {}
    for i in _real_rows(manifest):
        src = manifest.samples[i].source
        if src:
            by.setdefault(src, []).append(i)
    return by


def static_scores(manifest: Manifest) -> np.ndarray:
    """Closeness of each (non-synthetic) fake row to its source real(s) or the mean real, as a
    percentile rank (1: the closest); NaN for every other row. See the module docstring."""
    n = len(manifest.samples)
    fakes = [i for i, s in enumerate(manifest.samples) if s.label == 1 and not s.synthetic]
    out = np.full(n, np.nan)
    if not fakes:
        return out
    sources = _sources(manifest)
    needed = sorted({i for f in fakes for i in sources.get(manifest.samples[f].source, [])})
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i in needed:
        cache[i] = image_stats(manifest.samples[i].path)
    unmatched = [f for f in fakes if manifest.samples[f].source not in sources]
    mean_real = None
    if unmatched:
        reals = _real_rows(manifest)
        for i in reals:
            if i not in cache:
                cache[i] = image_stats(manifest.samples[i].path)
        mean_real = (np.mean([cache[i][0] for i in reals], 0), np.mean([cache[i][1] for i in reals], 0))
    d_spec, d_col = np.empty(len(fakes)), np.empty(len(fakes))
    for k, f in enumerate(fakes):
        spec, col = image_stats(manifest.samples[f].path)
        refs = sources.get(manifest.samples[f].source)
        ref = ((np.mean([cache[i][0] for i in refs], 0), np.mean([cache[i][1] for i in refs], 0))
               if refs else mean_real)
        assert ref is not None  # a fake without source rows is in `unmatched`, so mean_real was set
        d_spec[k] = float(np.abs(spec - ref[0]).mean())
        d_col[k] = float(np.abs(col - ref[1]).mean())
    distance = percentile_rank(d_spec) + percentile_rank(d_col)
    out[fakes] = percentile_rank(-distance)
    return out


# ---------------------------------------------------------------- ratings and pacing


def combine_ratings(static: np.ndarray, dynamic_loss: np.ndarray, dynamic_weight: float) -> np.ndarray:
    """q = (1 − a)·static + a·rank(dynamic loss); the known part alone where one is NaN, 0.5 where
    both are. Rows that are not fakes must be NaN in both and come out 0.5 (never drawn)."""
    dyn = percentile_rank(dynamic_loss)
    s_ok, d_ok = np.isfinite(static), np.isfinite(dyn)
    q = np.full(static.shape, 0.5)
    both = s_ok & d_ok
    q[both] = (1.0 - dynamic_weight) * static[both] + dynamic_weight * dyn[both]
    q[s_ok & ~d_ok] = static[s_ok & ~d_ok]
    q[d_ok & ~s_ok] = dyn[d_ok & ~s_ok]
    return q


def pacing_kappa(t: float, start: float, end: float) -> float:
    """The tilt at training progress t in [0, 1]: linear from `start` to `end`."""
    t = min(max(t, 0.0), 1.0)
    return start + (end - start) * t


def pacing_weights(ratings: np.ndarray, kappa: float) -> np.ndarray:
    """Draw weights exp(κ·(q − ½)): κ < 0 favours easy fakes, κ > 0 realistic ones."""
    return np.exp(kappa * (ratings - 0.5))


def expected_rating(ratings: np.ndarray, kappa: float) -> float:
    """Mean rating of a draw under the tilt κ (what the schedule moves)."""
    w = pacing_weights(ratings, kappa)
    return float((w * ratings).sum() / w.sum())


def augment_probability(ratings: np.ndarray, p: float) -> np.ndarray:
    """p·(1 − 2q) for the lower half of ratings, 0 for the upper half."""
    return p * np.clip(1.0 - 2.0 * ratings, 0.0, 1.0)


# ---------------------------------------------------------------- the curriculum


class QualityCurriculum:
    """Ratings, draw weights and frequency-mix plan for the fake rows of one training manifest.

    The sampler calls it for weights at every step (`__call__(epoch, step)`); the loop feeds it
    the per-sample losses of each step (`observe`) and closes each epoch (`end_epoch`).
    """

    def __init__(self, manifest: Manifest, *, epochs: int, steps_per_epoch: int, pacing_start: float = -3.0,
                 pacing_end: float = 3.0, dynamic_weight: float = 0.5, aug: float = 0.5,
                 static: np.ndarray | None = None):
        self.samples = manifest.samples
        self.n = len(self.samples)
        self.is_fake = np.array([s.label == 1 for s in self.samples])
        self.total_steps = max(1, epochs * steps_per_epoch)
        self.steps_per_epoch = steps_per_epoch
        self.pacing_start, self.pacing_end = pacing_start, pacing_end
        self.dynamic_weight, self.aug = dynamic_weight, aug
        self.static = static_scores(manifest) if static is None else static
        self.dynamic = np.full(self.n, np.nan)
        self._sum, self._count = np.zeros(self.n), np.zeros(self.n)
        self.refs = self._reference_reals(manifest)
        self.ratings = self._rate()

    # -- ratings

    def _rate(self) -> np.ndarray:
        q = combine_ratings(np.where(self.is_fake, self.static, np.nan), np.where(self.is_fake, self.dynamic, np.nan),
                            self.dynamic_weight)
        q[~self.is_fake] = 0.5
        return q

    def observe(self, index: np.ndarray, loss: np.ndarray) -> None:
        """Per-sample losses of one training step; only the manifest's fake rows count."""
        index, loss = np.asarray(index, np.int64), np.asarray(loss, np.float64)
        keep = index < self.n
        index, loss = index[keep], loss[keep]
        keep = self.is_fake[index] & np.isfinite(loss)
        np.add.at(self._sum, index[keep], loss[keep])
        np.add.at(self._count, index[keep], 1.0)

    def end_epoch(self) -> None:
        """The epoch's mean losses become the dynamic scores; ratings are recomputed."""
        seen = self._count > 0
        self.dynamic[seen] = self._sum[seen] / self._count[seen]
        self._sum[:], self._count[:] = 0.0, 0.0
        self.ratings = self._rate()

    # -- pacing

    def kappa(self, epoch: int, step: int) -> float:
        g = (epoch - 1) * self.steps_per_epoch + step
        return pacing_kappa(g / max(1, self.total_steps - 1), self.pacing_start, self.pacing_end)

    def __call__(self, epoch: int, step: int) -> np.ndarray:
        """Draw weight of every row at this step (the sampler reads the fake rows')."""
        return pacing_weights(self.ratings, self.kappa(epoch, step))

    # -- frequency mixing

    def _reference_reals(self, manifest: Manifest) -> dict[int, np.ndarray]:
        """For each fake row, the real rows its frequency mix may take from (see module docstring)."""
        sources = {k: np.array(v) for k, v in _sources(manifest).items()}
        reals = _real_rows(manifest)
        by_group: dict[str | None, list[int]] = {}
        for i in reals:
            by_group.setdefault(self.samples[i].group, []).append(i)
        groups: dict[str | None, np.ndarray] = {k: np.array(v) for k, v in by_group.items() if k is not None}
        every = np.array(reals)
        out: dict[int, np.ndarray] = {}
        for i in np.flatnonzero(self.is_fake).tolist():
            s = self.samples[i]
            out[i] = sources[s.source] if s.source in sources and not s.synthetic else groups.get(s.group, every)
        return out

    def augment_probability(self) -> np.ndarray:
        p = augment_probability(self.ratings, self.aug)
        p[~self.is_fake] = 0.0
        return p

    def plan(self, batch: list[Key], rng: np.random.Generator, p_aug: np.ndarray) -> list[Key]:
        """The batch with a reference real added to the keys of the fakes chosen for mixing."""
        out: list[Key] = []
        for key in batch:
            idx = key[0]
            if idx < self.n and p_aug[idx] > 0 and self.refs[idx].size and rng.random() < p_aug[idx]:
                key = (idx, key[1], int(self.refs[idx][rng.integers(self.refs[idx].size)]))
            out.append(key)
        return out

    # -- records

    def write_csv(self, path: Path, epoch: int) -> None:
        """Append the ratings that draw epoch `epoch`'s fakes (one row per fake row)."""
        new = not path.exists()
        w0, w1 = self(epoch, 0), self(epoch, self.steps_per_epoch - 1)
        p_aug = self.augment_probability()
        with open(path, "a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(CSV_COLUMNS)
            for i in np.flatnonzero(self.is_fake).tolist():
                s = self.samples[i]
                # names, methods and groups are the manifest's: escaped for the spreadsheet this file is opened in
                w.writerow([epoch, s.row, spreadsheet_cell(s.path.name), spreadsheet_cell(s.method),
                            spreadsheet_cell(s.group or ""), s.synthetic,
                            _fmt(self.static[i]), _fmt(self.dynamic[i]), _fmt(self.ratings[i]), _fmt(w0[i]),
                            _fmt(w1[i]), _fmt(p_aug[i])])

    def summary(self, epoch: int) -> str:
        """One log line: what the ratings are and where the pacing stands this epoch."""
        fake = self.is_fake
        q = self.ratings[fake]
        k0, k1 = self.kappa(epoch, 0), self.kappa(epoch, self.steps_per_epoch - 1)
        return (f"epoch {epoch}: quality curriculum: {int(fake.sum())} fakes rated "
                f"({int(np.isfinite(self.static[fake]).sum())} static, {int(np.isfinite(self.dynamic[fake]).sum())} "
                f"with a loss), kappa {k0:+.2f} -> {k1:+.2f}, mean rating drawn {expected_rating(q, k0):.3f} -> "
                f"{expected_rating(q, k1):.3f} (uniform {q.mean():.3f}), "
                f"{float(self.augment_probability()[fake].mean()):.1%} frequency-mixed")

    def state(self) -> dict[str, np.ndarray]:
        return {"dynamic": self.dynamic.copy()}

    def save(self, path: Path) -> None:
        """The dynamic scores, so --resume draws the same fakes as an uninterrupted run."""
        from safetensors.numpy import save_file

        tmp = path.with_name(path.name + ".tmp")
        save_file(self.state(), str(tmp), metadata={"format": STATE_FORMAT, "rows": str(self.n)})
        tmp.replace(path)

    def load(self, path: Path) -> None:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta, dynamic = f.metadata() or {}, f.get_tensor("dynamic")
        except Exception:
            raise InputError(f"{path}: not a readable quality-curriculum state") from None
        if meta.get("format") != STATE_FORMAT or dynamic.shape != (self.n,):
            raise InputError(f"{path}: a quality-curriculum state for another training manifest")
        self.dynamic = dynamic.astype(np.float64)
        self.ratings = self._rate()


def _fmt(v: float) -> str:
    return "" if not math.isfinite(v) else f"{v:.6g}"


class QualityBatchSampler(Sampler[list[Key]]):
    """The balanced batches with the curriculum's frequency-mix choices added to the fake keys.

    Its own generator (seed, epoch) makes the choices, so the underlying batches are exactly the
    weighted sampler's and a resumed run repeats them."""

    def __init__(self, base: BalancedBatchSampler, curriculum: QualityCurriculum):
        self.base, self.curriculum = base, curriculum

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[list[Key]]:
        rng = np.random.default_rng([self.base.seed, self.base.epoch, 11])
        p_aug = self.curriculum.augment_probability()
        for batch in self.base:
            yield self.curriculum.plan(batch, rng, p_aug)


def sample_losses(logits: torch.Tensor, label: torch.Tensor) -> np.ndarray:
    """Per-sample cross-entropy of a head's logits, detached, on the CPU (the dynamic score)."""
    with torch.no_grad():
        return F.cross_entropy(logits.detach().float(), label.long(), reduction="none").cpu().numpy()
