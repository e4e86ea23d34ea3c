"""Training data: manifests of face crops, the dataset, real/fake-balanced batches, the loader.

Two manifest dialects are read, with the CSV rules of `dfscan/core/labels.py` (the same header checks,
labels and group names as fairness-check and extract-faces):
- dfscan: `path,label[,group][,method][,domain]` plus any other columns. `source`, `subject`,
  `frame` and `kp` (12 floats "x0 y0 ... x5 y5", MediaPipe keypoints in crop pixels) are
  bookkeeping written by `dfscan extract-faces`; every other extra column is a demographic
  attribute. Without a `group` column, the intersection of the attribute values
  ("female|asian", `dfscan.core.labels.group_name`) is the group, as PG-FDD uses intersectional groups.
- official PG-FDD: `img_path,label,ismale,isasian,iswhite,isblack,intersec_label[,spe_label]`;
  `intersec_label` indexes `dfscan.core.labels.OFFICIAL_GROUPS` ("male|asian" ... "female|other").

Labels are `real|fake` or `0|1` (fake = 1). Relative paths resolve against the manifest's
folder. Bad input raises `InputError` with one line naming the rows.

Batches are laid out [reals..., fakes...] (PG-FDD's reconstruction pairs the halves). With
`pseudo_fakes="sbi"` the fake half is made on the fly by self-blending the reals of the same
batch (each real next to its own pseudo-fake, as the SBI paper trains), mixed half and half
with the manifest's fakes when it has any. Every sample is addressed by a key (index, seed),
so augmentation and blending are reproducible whichever worker builds them.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dfscan.core.errors import InputError
from dfscan.core.labels import (
    LABELS,
    OFFICIAL_GROUPS,
    PGFDD_REQUIRED,
    group_name,
    read_csv_table,
    require_columns,
    require_rows,
)
from dfscan.train.augment import Augment
from dfscan.train.checkpoint_info import file_sha256
from dfscan.train.images import fit, fit_keypoints, load_image, read_rgb
from dfscan.train.sbi import amplitude_mix, self_blend

CORE_COLUMNS = ("path", "label", "group", "method", "domain")
BOOKKEEPING = ("source", "subject", "frame", "kp")
OFFICIAL_REQUIRED = (*PGFDD_REQUIRED, "intersec_label")
SBI_METHOD = "sbi"
NO_GROUP = "all"
# a synthetic real (dfscan.train.balance) is a copy of a real row that must differ from it at every
# draw: colour jitter always, the degradations more often than the training pipeline's
SYNTHETIC_REAL_AUGMENT = Augment(p_flip=0.5, p_color=1.0, p_blur=0.3, p_jpeg=0.5)


@dataclass
class Sample:
    """One manifest row."""

    row: int  # 1-based data row number (the header is row 0), for messages
    path: Path
    label: int
    group: str | None
    method: str
    domain: str = ""
    kp: np.ndarray | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    source: str = ""
    subject: str = ""
    frame: str = ""
    # "" for a manifest row; rows added by `dfscan.train.balance`: "sbi" (a pseudo-fake of the real at
    # `path`, blended afresh at every draw) or "augment" (the real at `path`, always augmented)
    synthetic: str = ""


@dataclass
class Manifest:
    """The rows of a manifest plus the names the model's heads are built on."""

    path: Path
    samples: list[Sample]
    dialect: str  # "dfscan" | "official"
    attributes: list[str]
    sha256: str

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], np.int64)

    def item(self, index: int) -> tuple[Sample, bool]:
        """The row behind a dataset item index and whether the item is its SBI pseudo-fake
        (index >= len(samples): the pseudo-fake of row index − len(samples), as FaceDataset numbers them)."""
        n = len(self.samples)
        return (self.samples[index - n], True) if index >= n else (self.samples[index], False)

    @property
    def has_groups(self) -> bool:
        return any(s.group is not None for s in self.samples)

    @property
    def group_names(self) -> list[str]:
        """Sorted group names (the official dialect keeps its fixed 8 in index order)."""
        if self.dialect == "official":
            return list(OFFICIAL_GROUPS)
        names = sorted({s.group for s in self.samples if s.group is not None})
        return names or [NO_GROUP]

    @property
    def method_names(self) -> list[str]:
        """"real" first, then the fake methods seen in the manifest, sorted."""
        methods = sorted({s.method for s in self.samples if s.label == 1} - {"real"})
        return ["real"] + methods

    def group_counts(self, names: Sequence[str] | None = None) -> list[int]:
        """Samples per group, in `names` order (default `group_names`): LDAM's margins."""
        names = list(names or self.group_names)
        if not self.has_groups:
            return [len(self.samples)] + [0] * (len(names) - 1)
        c = Counter(s.group for s in self.samples if s.group is not None)
        return [c.get(n, 0) for n in names]

    def counts(self) -> dict[str, int]:
        n_fake = int(self.labels.sum())
        return {"rows": len(self.samples), "real": len(self.samples) - n_fake, "fake": n_fake}


def _rows_list(rows: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _parse_kp(text: str, row: int, path: Path) -> np.ndarray | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        v = np.array([float(t) for t in text.replace(",", " ").split()], np.float32)
    except ValueError:
        raise InputError(f"{path}: row {row}: kp must be 12 numbers 'x0 y0 ... x5 y5', got {text[:40]!r}") from None
    if v.size != 12:
        raise InputError(f"{path}: row {row}: kp must be 12 numbers 'x0 y0 ... x5 y5', got {v.size}")
    return v.reshape(6, 2)


def read_manifest(path: str | Path, *, check_files: bool = True) -> Manifest:
    """Read and validate a manifest CSV (either dialect); see the module docstring."""
    path = Path(path)
    table = read_csv_table(path, what="manifest", expected="path,label[,group][,method][,domain]")
    header = table.header
    official = table.dialect == "pgfdd"
    require_columns(table, OFFICIAL_REQUIRED if official else ("path", "label"))
    require_rows(table)
    raw = [dict(zip(header, cells)) for _, cells in table.rows]

    bad_labels = [i for i, r in enumerate(raw, 1) if r.get("label", "").lower() not in LABELS]
    if bad_labels:
        first = raw[bad_labels[0] - 1].get("label", "")
        raise InputError(f"{path}: unknown label(s) in row(s) {_rows_list(bad_labels)} (first: {first!r}); "
                         "use real/fake or 0/1")

    base = table.base
    attributes = [] if official else [c for c in header if c not in CORE_COLUMNS + BOOKKEEPING]
    samples: list[Sample] = []
    for i, r in enumerate(raw, 1):
        p = Path(r["img_path"] if official else r["path"])
        if not str(p) or str(p) == ".":
            raise InputError(f"{path}: row {i}: empty path")
        p = p if p.is_absolute() else base / p
        label = LABELS[r["label"].lower()]
        if official:
            g = r["intersec_label"]
            try:
                gi = int(float(g))
            except ValueError:
                raise InputError(f"{path}: row {i}: intersec_label must be a group index 0-7, got {g!r}") from None
            if not 0 <= gi < len(OFFICIAL_GROUPS):
                raise InputError(f"{path}: row {i}: intersec_label must be a group index 0-7, got {g!r}")
            spe = r.get("spe_label", "")
            if spe and spe not in ("0",) and label == 1:
                method = f"fake_{int(float(spe))}" if spe.replace(".", "", 1).isdigit() else spe
            else:
                method = "real" if label == 0 else "fake"
            attrs = {k: r[k] for k in ("ismale", "isasian", "iswhite", "isblack")}
            samples.append(Sample(i, p, label, OFFICIAL_GROUPS[gi], method, attrs=attrs))
            continue
        attrs = {a: r.get(a, "") for a in attributes}
        if "group" in header:
            group = r.get("group") or None
        elif attributes and all(attrs.values()):
            group = group_name(attrs[a] for a in attributes)
        else:
            group = None
        method = r.get("method", "") if label == 1 else "real"
        method = method or ("fake" if label == 1 else "real")
        samples.append(Sample(i, p, label, group, method, r.get("domain", ""), _parse_kp(r.get("kp", ""), i, path),
                              attrs, r.get("source", ""), r.get("subject", ""), r.get("frame", "")))

    if check_files:
        absent = [s.row for s in samples if not s.path.is_file()]
        if absent:
            missing = samples[absent[0] - 1].path
            raise InputError(f"{path}: {len(absent)} image file(s) not found, row(s) {_rows_list(absent)} "
                             f"(first: {missing})")
    return Manifest(path, samples, "official" if official else "dfscan", attributes, file_sha256(path))


def check_apart(train: Manifest, val: Manifest) -> None:
    """Refuse validation rows that are training images: the same file, or the same bytes elsewhere.

    Why: validation picks the best epoch and calibrates the threshold; on training images both
    read as better than they are, silently (`--train m.csv --val m.csv` trained and calibrated
    on the same rows). Content is compared with the sha256 the recipe's prepare step dedups
    by (dfscan.train.checkpoint_info.file_sha256), hashing only files whose size occurs on both sides:
    crops of different images rarely share a size, so this reads a fraction of the data once.
    `--allow-overlap` skips this check.
    """
    train_paths = {os.path.realpath(s.path) for s in train.samples}
    same_file: list[Sample] = []
    rest: list[Sample] = []
    for s in val.samples:
        (same_file if os.path.realpath(s.path) in train_paths else rest).append(s)
    same_content: list[Sample] = []
    if rest:
        train_sizes = {p: os.path.getsize(p) for p in train_paths}
        sizes = set(train_sizes.values())
        candidates = [(s, size) for s in rest if (size := os.path.getsize(s.path)) in sizes]
        wanted = {size for _, size in candidates}
        digests = {file_sha256(p) for p, size in train_sizes.items() if size in wanted}
        same_content = [s for s, _ in candidates if file_sha256(s.path) in digests]
    shared = same_file + same_content
    if shared:
        how = " and ".join(f"{len(rows)} {what}" for rows, what in ((same_file, "same file"),
                                                                      (same_content, "same content")) if rows)
        first = sorted(shared, key=lambda s: s.row)[0]
        raise InputError(f"{val.path}: {len(shared)} validation row(s) are training images of {train.path.name} "
                         f"({how}; first: row {first.row}, {first.path}): validating and calibrating on them "
                         "overstates accuracy and biases the threshold; use disjoint manifests, "
                         "or pass --allow-overlap to train anyway")


# ---------------------------------------------------------------- tensors


def to_tensor(img: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 HWC RGB → normalised float CHW: (x/255 − mean)/std (the model's input contract)."""
    x = torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


# ---------------------------------------------------------------- dataset

Key = tuple[int, ...]  # (item index, seed[, reference real]); index >= len(samples) means "SBI of sample index - len"


class FaceDataset(Dataset):
    """Crops of a manifest as model inputs, addressed by `Key`s.

    Item index i < n is manifest row i; i >= n is a self-blended pseudo-fake of real row i − n.
    A third key element r >= 0 (set by the quality curriculum for low-quality fakes) mixes real
    row r's low-frequency amplitude into the fake (`dfscan.train.sbi.amplitude_mix`). Synthetic rows
    (`Sample.synthetic`) are blended or augmented at every draw. Returns a dict: `image` (3, S, S) normalised, `label`, `group` (index into `group_names`, −1
    unknown), `method` (index into `method_names`), `index`.
    """

    def __init__(self, manifest: Manifest, *, group_names: Sequence[str], method_names: Sequence[str],
                 size: int = 256, mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 augment: Augment | None = None):
        self.samples = manifest.samples
        self.n = len(self.samples)
        self.size, self.mean, self.std, self.augment = size, tuple(mean), tuple(std), augment
        self.group_index = {g: i for i, g in enumerate(group_names)}
        self.method_index = {m: i for i, m in enumerate(method_names)}
        self.no_groups = not manifest.has_groups

    def __len__(self) -> int:
        return 2 * self.n

    def group_of(self, s: Sample) -> int:
        if self.no_groups:
            return 0
        return self.group_index.get(s.group, -1) if s.group is not None else -1

    def image(self, key: Key) -> tuple[np.ndarray, int, int, int]:
        """uint8 crop, label, group, method for a key (before normalisation)."""
        idx, seed = key[0], key[1]
        ref = key[2] if len(key) > 2 else -1
        sbi = idx >= self.n
        s = self.samples[idx - self.n if sbi else idx]
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, idx])
        raw = read_rgb(s.path)
        img = fit(raw, self.size)
        if sbi or s.synthetic == "sbi":
            # `kp` is in the crop file's pixels (docs/INTERFACES.md): follow the file to the input
            img = self_blend(img, None if s.kp is None else fit_keypoints(s.kp, raw.shape, self.size), rng)[0]
            label, method = 1, self.method_index.get(SBI_METHOD, len(self.method_index) - 1)
        else:
            label = s.label
            method = self.method_index.get(s.method, 0 if s.label == 0 else len(self.method_index) - 1)
        if ref >= 0 and label == 1:
            img = amplitude_mix(img, load_image(self.samples[ref].path, self.size), rng)
        augment = SYNTHETIC_REAL_AUGMENT if s.synthetic == "augment" else self.augment
        if augment is not None:
            img = augment(img, rng)
        return img, label, self.group_of(s), method

    def __getitem__(self, key: Key) -> dict:
        if isinstance(key, (int, np.integer)):
            key = (int(key), 0)
        img, label, group, method = self.image(key)
        return {"image": to_tensor(img, self.mean, self.std), "label": label, "group": group,
                "method": method, "index": key[0]}


# ---------------------------------------------------------------- sampling


class BalancedBatchSampler(Sampler[list[Key]]):
    """Batches of `batch_size // 2` reals followed by as many fakes.

    Reals and fakes are each drawn without replacement, cycling through fresh permutations,
    so the rarer class is repeated rather than the batch unbalanced. With `groups` (one name per
    row, None where unknown), each label is also balanced over demographic groups: every known
    group of that label is drawn equally often, while rows without a group keep their natural
    share of the label (they train every non-demographic term). With `sbi`, each fake slot is
    the pseudo-fake of the real in the same position (probability 1 without manifest fakes,
    0.5 with them), so pseudo-fakes follow the reals' group balance. An epoch covers the larger
    class once (capped by `max_steps`). `set_epoch` reseeds; the sampler lives in the main
    process, so this works with persistent workers.

    With `fake_weights(epoch, step)` (one non-negative weight per row; the quality curriculum),
    a fake slot still goes to the stratum the round-robin picks, so label and group balance hold
    as without it, but the row within that stratum is drawn with probability proportional to
    its weight at that step (with replacement) instead of from a permutation.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, *, sbi: bool = False, seed: int = 0,
                 max_steps: int | None = None, groups: Sequence[str | None] | None = None,
                 fake_weights: Callable[[int, int], np.ndarray] | None = None):
        if batch_size < 2 or batch_size % 2:
            raise InputError(f"batch size must be even and at least 2 (half real, half fake), got {batch_size}")
        labels = np.asarray(labels)
        self.n = labels.size
        self.real = np.flatnonzero(labels == 0)
        self.fake = np.flatnonzero(labels == 1)
        self.half, self.sbi, self.seed, self.max_steps = batch_size // 2, sbi, seed, max_steps
        if self.real.size == 0:
            raise InputError("the training manifest has no real rows (label real/0)")
        if self.fake.size == 0 and not sbi:
            raise InputError("the training manifest has no fake rows; add fakes or pass --pseudo-fakes sbi")
        if groups is not None and len(groups) != self.n:
            raise ValueError(f"{len(groups)} groups for {self.n} labels")
        self.groups = list(groups) if groups is not None else None
        self.fake_weights = fake_weights
        self._weights_now: np.ndarray | None = None  # this step's fake weights (set by __iter__)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        biggest = self.real.size if self.sbi and self.fake.size == 0 else max(self.real.size, self.fake.size)
        steps = max(1, math.ceil(biggest / self.half))
        return min(steps, self.max_steps) if self.max_steps else steps

    def strata(self, pool: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """A label's rows by group and each stratum's draw probability (see the class docstring)."""
        if self.groups is None:
            return [pool], np.ones(1)
        by: dict[str | None, list[int]] = {}
        for i in pool.tolist():
            by.setdefault(self.groups[i], []).append(i)
        known = sorted(k for k in by if k is not None)
        unknown_share = len(by.get(None, [])) / pool.size
        names: list[str | None] = known + ([None] if None in by else [])
        probs = np.array([(1.0 - unknown_share) / len(known) if k is not None else unknown_share for k in names]
                         if known else [1.0])
        return [np.array(by[k]) for k in names], probs / probs.sum()

    @staticmethod
    def _stream(pool: np.ndarray, rng: np.random.Generator) -> Iterator[int]:
        while True:
            yield from rng.permutation(pool).tolist()

    def _weighted(self, pool: np.ndarray, rng: np.random.Generator) -> Iterator[int]:
        """Rows of one stratum drawn by this step's weights (uniform where they sum to 0)."""
        while True:
            w = self._weights_now[pool] if self._weights_now is not None else np.ones(pool.size)
            total = float(w.sum())
            yield int(pool[rng.choice(pool.size, p=w / total)] if total > 0 else pool[rng.integers(pool.size)])

    def _draws(self, pool: np.ndarray, rng: np.random.Generator, weighted: bool = False) -> Iterator[int]:
        strata, probs = self.strata(pool)
        streams = [self._weighted(s, rng) if weighted else self._stream(s, rng) for s in strata]
        if len(streams) == 1:
            yield from streams[0]
        # smooth weighted round-robin: each stratum gets its share at every point of the
        # epoch, and equal-sized strata with equal shares still cover every row once per epoch
        credit = np.zeros(len(streams))
        while True:
            credit += probs
            k = int(np.argmax(credit))
            credit[k] -= 1.0
            yield next(streams[k])

    def __iter__(self) -> Iterator[list[Key]]:
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        reals = self._draws(self.real, rng)
        fakes = self._draws(self.fake, rng, self.fake_weights is not None) if self.fake.size else None
        for step in range(len(self)):
            if self.fake_weights is not None:
                self._weights_now = np.asarray(self.fake_weights(self.epoch, step), np.float64)
            r = [next(reals) for _ in range(self.half)]
            f = []
            for idx in r:
                # no fake rows only with sbi (__init__): the same draws as `sbi and (none or coin)`
                if fakes is None or (self.sbi and rng.random() < 0.5):
                    f.append(self.n + idx)
                else:
                    f.append(next(fakes))
            yield [(i, int(rng.integers(0, 2**31 - 1))) for i in r + f]


# Validation pseudo-fakes use this seed whatever the training seed, so every epoch of every run
# (and the recipe's evaluations) judge models on the very same fakes.
VALIDATION_SEED = 1_000_003


def validation_keys(manifest: Manifest, *, sbi: bool, seed: int = VALIDATION_SEED) -> list[Key]:
    """Every row once, plus (with SBI) one pseudo-fake per real row blended with `seed`."""
    n = len(manifest.samples)
    keys: list[Key] = [(i, seed) for i in range(n)]
    if sbi:
        keys += [(n + i, seed) for i, s in enumerate(manifest.samples) if s.label == 0]
    return keys


class _KeyList(Sampler[Key]):
    def __init__(self, keys: list[Key]):
        self.keys = keys

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def default_workers() -> int:
    """Loader workers: the main process already uses every core for the model's
    convolutions, so one worker per two cores decodes and augments ahead of it (1 on the
    2-core dev box); more would only steal cycles from the step."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def make_loader(dataset: FaceDataset, *, batch_sampler: Sampler | None = None, keys: list[Key] | None = None,
                batch_size: int = 32, num_workers: int | None = None) -> DataLoader:
    """A DataLoader over keys: training (a batch sampler) or validation (a fixed key list)."""
    workers = default_workers() if num_workers is None else num_workers
    kw: dict = {"num_workers": workers, "worker_init_fn": _worker_init if workers else None}
    if workers:
        # Not fork: a forked child inherits OpenCV's (and OpenMP's) thread pools without their
        # threads and deadlocks in its first parallel call (seen: cv2.setNumThreads hangs).
        # forkserver/spawn start clean; persistent workers pay that start-up once per loader.
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        kw.update(persistent_workers=True, prefetch_factor=4, multiprocessing_context=mp.get_context(method))
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **kw)
    return DataLoader(dataset, sampler=_KeyList(keys or []), batch_size=batch_size, shuffle=False, **kw)
