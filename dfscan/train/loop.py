"""The PG-FDD training loop behind `dfscan train`.

Per epoch: balanced batches ([reals..., fakes...]) → PG-FDD loss (DESIGN.md weights) → SAM
over SGD as PG-FDD (or Adam; or the base optimizer alone with `no_sam`) → validation (AUC, AP,
EER, ACC at a threshold calibrated on the validation set, and the fairness gaps when the
validation manifest has groups) appended to `metrics.csv`. The best epoch by validation AUC is
kept as a full checkpoint (`best.safetensors`) and as the inference-only
`best_deploy.safetensors`, both carrying the calibrated threshold.
`last.safetensors` + `last_optim.safetensors` (momentum buffers, RNG states, progress; no
pickle) let `resume` continue after the last finished epoch.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from dfscan.core.errors import InputError
from dfscan.core.files import atomic_write_bytes
from dfscan.core.labels import align_group_names
from dfscan.core.metrics import binary_metrics, calibrate_threshold, fairness_metrics, group_metrics, method_metrics
from dfscan.train.augment import Augment
from dfscan.train.balance import balance_groups
from dfscan.train.checkpoint import load_checkpoint, save_checkpoint
from dfscan.train.choices import (
    BALANCE_MODES,
    CURRICULA,
    LR_SCHEDULES,
    OPTIMIZER_NAMES,
    PSEUDO_FAKES,
    THRESHOLD_METHODS,
    backbone_names,
)
from dfscan.train.config import INPUT_SIZE_RANGE, ModelConfig
from dfscan.train.curriculum import QualityBatchSampler, QualityCurriculum, sample_losses
from dfscan.train.data import (
    SBI_METHOD,
    BalancedBatchSampler,
    FaceDataset,
    Key,
    Manifest,
    check_apart,
    make_loader,
    read_manifest,
    validation_keys,
)
from dfscan.train.losses import PGFDDLoss
from dfscan.train.model import PGFDD
from dfscan.train.sam import DEFAULT_SGD, SAM, bn_stats_frozen

LOSS_PARTS = ("sha", "spe", "rec", "con", "fair", "fuse")
FAIRNESS_KEYS = ("F_FPR", "F_MEO", "F_DP", "F_OAE", "demographic_parity_difference", "equalized_odds_difference")
CSV_COLUMNS = (["epoch", "steps", "seconds", "lr", "train_loss"] + [f"loss_{k}" for k in LOSS_PARTS]
               + ["val_n", "val_auc", "val_ap", "val_eer", "val_acc", "val_fpr", "val_tpr", "threshold"] + list(FAIRNESS_KEYS))
OPTIM_FORMAT = "dfscan.optimizer/1"
LOG_EVERY_S = 60.0  # progress lines when stderr is not a terminal
# base optimizers (keyed by dfscan.train.choices.OPTIMIZER_NAMES): PG-FDD's SGD, or Adam, which learns far
# faster in a short CPU budget (the starter model: recipes/build_starter.py)
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict]] = {
    "sgd": (torch.optim.SGD, DEFAULT_SGD),
    "adam": (torch.optim.Adam, {"weight_decay": 0.0}),
}

# The curriculum's tilt: fakes are drawn with weight exp(k (q - 1/2)); at |k| = 50 one fake is already
# drawn e^50 times as often as another, and far beyond it the weights overflow.
MAX_PACING = 50.0
COSINE_FLOOR = 0.01  # the cosine schedule ends at 1 % of --lr rather than 0: the last steps still learn


def scheduled_lr(base_lr: float, schedule: str, step: int, total_steps: int) -> float:
    """The learning rate for 0-based global `step`; a function of the step alone, so --resume continues the curve."""
    if schedule == "constant" or total_steps <= 1:
        return base_lr
    t = min(step, total_steps - 1) / (total_steps - 1)
    return base_lr * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class TrainOptions:
    """Everything `dfscan train` can set. Defaults follow PG-FDD (SAM over SGD, lr 5e-4)."""

    train: Path
    val: Path
    out: Path = Path("runs/dfscan")
    backbone: str = "efficientnet_lite0"
    epochs: int = 10
    batch_size: int = 32
    device: str = "auto"
    resume: bool = False
    init_from: Path | None = None  # warm start: a full checkpoint's weights, fresh optimizer and epoch count
    seed: int = 0
    no_sam: bool = False
    lr: float = DEFAULT_SGD["lr"]
    lr_schedule: str = "constant"  # constant | cosine (per step, from lr to lr * COSINE_FLOOR over the whole run)
    optimizer: str = "sgd"  # the base optimizer (under SAM unless no_sam): sgd as PG-FDD, or adam
    pseudo_fakes: str = "none"
    max_steps_per_epoch: int | None = None
    pretrained: bool = True
    num_workers: int | None = None
    augment: bool = True
    fairness: bool = True  # False: the ablation without L_fair and with plain CE instead of the CVaR fusion loss
    scale_jitter: float = 0.0  # probability of a random 0.9-1.2x zoom (crops cut from tight source crops)
    video_aug: float = 0.0  # probability of a downscale + H.264 round trip (dfscan.train.augment.video) instead of JPEG
    input_size: int = 256  # crop side the model is trained on; the scanner crops to the checkpoint's size
    threshold_method: str = "fpr"  # eer | youden | fpr (the lowest threshold with FPR <= target_fpr on val reals)
    target_fpr: float = 0.05
    fp16_deploy: bool = False  # store the deploy checkpoint's weights as float16 (half the size)
    keep_epochs: bool = False  # also keep every epoch's weights (epochN.safetensors) for dfscan.train.average
    curriculum: str = "none"  # none | quality (dfscan.train.curriculum: fakes drawn by forgery-quality rating, paced)
    pacing_start: float = -3.0  # the curriculum's tilt kappa at the first step (< 0: easy fakes favoured)
    pacing_end: float = 3.0  # ... and at the last step (> 0: realistic fakes favoured)
    quality_dynamic_weight: float = 0.5  # share of the model's loss (vs the static score) in the rating
    quality_aug: float = 0.5  # frequency-mix probability of the lowest-rated fake (falls to 0 at rating 0.5)
    balance_groups: str = "none"  # none | synthetic (dfscan.train.balance: fill label x group cells to a target)
    balance_target: int | None = None  # rows per label x group cell; None: the largest cell
    allow_overlap: bool = False  # validate on rows that are also training images (dfscan.train.data.check_apart refuses them)

    def check(self) -> None:
        if self.backbone not in backbone_names():
            raise InputError(f"unknown backbone {self.backbone!r} (choose from {', '.join(backbone_names())})")
        if self.pseudo_fakes not in PSEUDO_FAKES:
            raise InputError(f"--pseudo-fakes must be one of {', '.join(PSEUDO_FAKES)}, got {self.pseudo_fakes!r}")
        if self.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2 or self.batch_size % 2:
            raise InputError(f"--batch-size must be even and at least 2 (half real, half fake), got {self.batch_size}")
        if self.optimizer not in OPTIMIZER_NAMES:
            raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZER_NAMES)}, got {self.optimizer!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.threshold_method not in THRESHOLD_METHODS:
            raise InputError(f"--threshold-method must be one of {', '.join(THRESHOLD_METHODS)}, "
                             f"got {self.threshold_method!r}")
        if not 0.0 <= self.target_fpr < 1.0:
            raise InputError(f"--target-fpr must be in [0, 1), got {self.target_fpr}")
        if not 64 <= self.input_size <= INPUT_SIZE_RANGE[1] or self.input_size % 32:  # larger would not load
            raise InputError(f"--input-size must be a multiple of 32 from 64 to {INPUT_SIZE_RANGE[1]}, got {self.input_size}")
        if self.resume and self.init_from is not None:
            raise InputError("--resume continues a run; --init-from starts a new one from weights: pass one")
        for name in ("scale_jitter", "video_aug"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:  # also refuses nan
                raise InputError(f"--{name.replace('_', '-')} must be a probability in [0, 1], got {v}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise InputError("--max-steps-per-epoch must be at least 1")
        self._check_research_options()

    def _check_research_options(self) -> None:
        if self.curriculum not in CURRICULA:
            raise InputError(f"--curriculum must be one of {', '.join(CURRICULA)}, got {self.curriculum!r}")
        if not 0.0 <= self.quality_dynamic_weight <= 1.0:
            raise InputError(f"--quality-dynamic-weight must be in [0, 1], got {self.quality_dynamic_weight}")
        if not 0.0 <= self.quality_aug <= 1.0:
            raise InputError(f"--quality-aug must be in [0, 1], got {self.quality_aug}")
        if not (abs(self.pacing_start) <= MAX_PACING and abs(self.pacing_end) <= MAX_PACING):  # also refuses nan
            raise InputError(f"--pacing-start and --pacing-end must be between -{MAX_PACING:g} and {MAX_PACING:g}, "
                             f"got {self.pacing_start:g} and {self.pacing_end:g}")
        if self.balance_groups not in BALANCE_MODES:
            raise InputError(f"--balance-groups must be one of {', '.join(BALANCE_MODES)}, got {self.balance_groups!r}")
        if self.balance_target is not None and self.balance_target < 1:
            raise InputError(f"--balance-target must be at least 1, got {self.balance_target}")

    def to_json(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: this PyTorch build sees no CUDA GPU")
    return dev


# ---------------------------------------------------------------- optimizer state in safetensors


def save_optimizer(path: Path, opt: torch.optim.Optimizer, train_state: dict, generator: torch.Generator) -> None:
    """Optimizer buffers as tensors, its settings and the loop's progress as JSON metadata."""
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state(), "rng.contrastive": generator.get_state()}
    scalars: dict[str, object] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{k}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    meta = {"format": OPTIM_FORMAT, "param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars),
            "train_state": json.dumps(train_state)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_optimizer(path: Path, opt: torch.optim.Optimizer, generator: torch.Generator, device: torch.device) -> dict:
    """Restore what `save_optimizer` wrote; returns the loop's train_state."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:
        raise InputError(f"{path}: not a readable optimizer state (safetensors)") from None
    if meta.get("format") != OPTIM_FORMAT:
        raise InputError(f"{path}: not a dfscan optimizer state")
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("state."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v.to(device)
    for k, v in json.loads(meta["scalars"]).items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.contrastive"])
    return json.loads(meta["train_state"])


# ---------------------------------------------------------------- validation


@torch.no_grad()
def predict(model: PGFDD, loader, device: torch.device, progress=None, task=None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """p_fake, labels and item indices over a validation loader."""
    model.eval()
    probs, labels, index = [], [], []
    for batch in loader:
        out = model(batch["image"].to(device, non_blocking=True), inference=True)
        probs.append(out["prob"].float().cpu().numpy())
        labels.append(batch["label"].numpy())
        index.extend(batch["index"].tolist())
        if progress is not None:
            progress.advance(task, len(batch["label"]))
    return np.concatenate(probs), np.concatenate(labels), index


def validation_metrics(y: np.ndarray, p: np.ndarray, groups: list[str | None] | None, method: str = "fpr",
                       max_fpr: float = 0.05) -> dict:
    """AUC/AP/EER, the calibrated threshold, ACC/FPR/TPR there, and the fairness gaps (when groups)."""
    threshold = calibrate_threshold(y, p, method, max_fpr)
    m = binary_metrics(y, p, threshold)
    out = {"val_n": m["n"], "val_auc": m["auc"], "val_ap": m["ap"], "val_eer": m["eer"], "val_acc": m["acc"],
           "val_fpr": m["fpr"], "val_tpr": m["tpr"], "threshold": threshold}
    if groups is not None:  # over the rows that have a group (e.g. UTKFace), not the unlabelled ones
        known = np.array([g is not None for g in groups])
        if len({g for g in groups if g is not None}) > 1:
            out.update(fairness_metrics(y[known], p[known], [g for g in groups if g is not None], threshold))
    return out


def validation_groups(manifest: Manifest, index: list[int]) -> list[str | None] | None:
    """Each validation item's group (a pseudo-fake has its real's); None where the row has none."""
    if not manifest.has_groups:
        return None
    return [manifest.item(i)[0].group for i in index]


def item_columns(manifest: Manifest, index: list[int]) -> tuple[list[str], list[str], list[str]]:
    """Method (a pseudo-fake's is "sbi"), domain and group of each validation item: one reading
    for the breakdown, the predictions file and the recipe's evaluation."""
    items = [manifest.item(i) for i in index]
    return ([SBI_METHOD if sbi else s.method for s, sbi in items], [s.domain or "" for s, _ in items],
            [s.group or "" for s, _ in items])


def breakdown(manifest: Manifest, index: list[int], y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """AUC/ACC/TPR per forgery method (pseudo-fakes count as "sbi") and per domain (a pseudo-fake
    is in its real's), so a run shows which methods and which datasets it fails on."""
    methods, domains, _ = item_columns(manifest, index)
    keep = ("n", "n_pos", "n_neg", "auc", "acc", "tpr", "fpr")

    def slim(table: dict) -> dict:  # JSON has no NaN: a value that cannot be computed is null
        return {k: {m: None if isinstance(v[m], float) and math.isnan(v[m]) else v[m] for m in keep}
                for k, v in table.items()}

    out = {"by_method": slim(method_metrics(y, p, methods, threshold))}
    if len(set(domains)) > 1:
        out["by_domain"] = slim(group_metrics(y, p, domains, threshold))
    return out


PREDICTION_COLUMNS = ("path", "pseudo_fake", "method", "domain", "group", "label", "p_fake")


def write_predictions(path: Path, manifest: Manifest, index: list[int], y: np.ndarray, p: np.ndarray) -> None:
    """The best epoch's p_fake of every validation item, so runs can be compared (other metrics,
    other thresholds, the recipe's ablation table) without scoring the set again."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(PREDICTION_COLUMNS)
    for i, method, domain, group, label, prob in zip(index, *item_columns(manifest, index), y, p):
        s, sbi = manifest.item(i)
        w.writerow([s.path, int(sbi), method, domain, group, int(label), f"{float(prob):.6g}"])
    atomic_write_bytes(path, buf.getvalue().encode())


def save_best(out: Path, model: PGFDD, config: ModelConfig, threshold: float, provenance: dict, val_m: Manifest,
              index: list[int], y: np.ndarray, p: np.ndarray, fp16_deploy: bool) -> None:
    """The files a run's chosen model is read from (evaluate, fairness-check, ship): the full
    `best.safetensors`, its `best_deploy.safetensors` and its `val_predictions.csv`."""
    save_checkpoint(out / "best.safetensors", model, config, threshold=threshold, provenance=provenance)
    write_predictions(out / "val_predictions.csv", val_m, index, y, p)
    save_checkpoint(out / "best_deploy.safetensors", model.deploy(), config, threshold=threshold,
                    provenance=provenance, half=fp16_deploy)


def validation_loader(val_m: Manifest, config: ModelConfig, *, sbi: bool, batch_size: int,
                      num_workers: int | None) -> tuple[list[Key], DataLoader]:
    """The validation items (every row; with SBI one seeded pseudo-fake per real) and their loader:
    the loop's epochs and dfscan.train.average score exactly these."""
    dataset = FaceDataset(val_m, augment=None, group_names=config.group_names, method_names=config.method_names,
                          size=config.input_size, mean=config.mean, std=config.std)
    keys = validation_keys(val_m, sbi=sbi)
    return keys, make_loader(dataset, keys=keys, batch_size=batch_size, num_workers=num_workers)


def validate(model: PGFDD, val_m: Manifest, loader, device: torch.device, method: str, target_fpr: float,
             progress=None, task=None) -> tuple[dict, dict, np.ndarray, np.ndarray, list[int]]:
    """Score the validation loader and calibrate: (metrics, breakdown, p_fake, labels, item indices).
    The loop's epochs and dfscan.train.average both go through here, so they are read alike."""
    p, y, index = predict(model, loader, device, progress, task)
    vm = validation_metrics(y, p, validation_groups(val_m, index), method, target_fpr)
    return vm, breakdown(val_m, index, y, p, vm["threshold"]), p, y, index


def threshold_policy(method: str, target_fpr: float) -> str:
    return (f"lowest threshold with FPR <= {target_fpr:g} on the validation reals" if method == "fpr"
            else f"{method} point on validation")


def validation_provenance(vm: dict, parts_by: dict) -> dict:
    """The metrics a checkpoint carries about its own validation."""
    return {"metrics": {k: v for k, v in vm.items() if isinstance(v, (int, float))},
            "auc_by": {part: {k: v["auc"] for k, v in table.items()} for part, table in parts_by.items()}}


def auc_line(parts_by: dict) -> str:
    """One log line of a breakdown's AUCs, by method and by domain."""
    def aucs(table: dict) -> str:
        return ", ".join(f"{k} {v['auc']:.3f}" for k, v in table.items() if v["auc"] is not None)
    return (f"AUC by method: {aucs(parts_by['by_method'])}"
            + (f" · by domain: {aucs(parts_by['by_domain'])}" if "by_domain" in parts_by else ""))


# ---------------------------------------------------------------- the loop


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def _sanitize_worker_error(exc: Exception) -> InputError:
    """A worker's InputError comes back with its traceback folded into the message: keep the line."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else str(exc)
    return InputError(last.split("InputError: ", 1)[-1])


def crops_warning(option: str, manifest: Manifest) -> str | None:
    """One line when a manifest's images (sampled) are not face crops, e.g. whole photos: training
    fits each to its centre square, so the model would learn photos, not faces."""
    from dfscan.train.images import unlike_crops_sampled

    checked, odd = unlike_crops_sampled([s.path for s in manifest.samples if not s.synthetic])
    if not odd:
        return None
    path, w, h = odd[0]
    return (f"{option}: {len(odd)} of {checked} sampled images do not look like face crops (e.g. {path.name}, "
            f"{w}x{h}); each is centre-cropped and trained on as one face. Cut crops with "
            "`dfscan extract-faces` first.")


def train(opts: TrainOptions, progress: bool = True, log: Callable[[str], None] | None = None,
          warn: Callable[[str], None] | None = None) -> Path:
    """Train PG-FDD as `opts` says; returns the best full checkpoint's path.

    `log` receives one line per epoch (the CLI prints it); `progress` shows rich bars on stderr;
    `warn` gets the warnings about the data (e.g. whole photos where face crops belong).
    """
    opts.check()
    if opts.pretrained and not opts.resume and opts.init_from is None:
        from dfscan.train.backbones import missing_pretrained

        hint = missing_pretrained(opts.backbone)
        if hint:  # never train from random weights by accident
            raise InputError(f"no ImageNet weights for {opts.backbone} on this machine: {hint}; "
                             "or pass --no-pretrained to train from random weights")
    log = log or (lambda _msg: None)
    device = resolve_device(opts.device)
    sbi = opts.pseudo_fakes == "sbi"
    train_m = read_manifest(opts.train)
    warn = warn or (lambda _msg: None)
    if line := crops_warning("--train", train_m):
        warn(line)
    train_counts = train_m.counts()
    balance = None
    if opts.balance_groups == "synthetic":
        train_m, balance = balance_groups(train_m, opts.balance_target, opts.seed)
    # balanced batches need reals and (fakes or SBI): the sampler says so before anything is read further
    sampler = BalancedBatchSampler(train_m.labels, opts.batch_size, sbi=sbi, seed=opts.seed,
                                   max_steps=opts.max_steps_per_epoch,
                                   groups=[s.group for s in train_m.samples] if train_m.has_groups else None)
    val_m = read_manifest(opts.val)
    if line := crops_warning("--val", val_m):
        warn(line)
    if not (val_m.labels == 0).any() or not ((val_m.labels == 1).any() or sbi):
        raise InputError(f"{opts.val}: validation needs real and fake rows (or --pseudo-fakes sbi and real rows)")
    if not opts.allow_overlap:
        check_apart(train_m, val_m)

    out = Path(opts.out)
    last_ckpt, last_optim = out / "last.safetensors", out / "last_optim.safetensors"
    best_ckpt = out / "best.safetensors"
    metrics_csv = out / "metrics.csv"
    if opts.resume and not (last_ckpt.is_file() and last_optim.is_file()):
        raise InputError(f"{out}: nothing to resume (no last.safetensors and last_optim.safetensors)")
    if not opts.resume and (last_ckpt.exists() or metrics_csv.exists()):
        raise InputError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if balance is not None:
        (out / "balance.json").write_text(json.dumps(balance.to_json(), indent=2) + "\n")
        for line in balance.lines():
            log(line)
    curriculum = None
    if opts.curriculum == "quality":
        curriculum = QualityCurriculum(train_m, epochs=opts.epochs, steps_per_epoch=len(sampler),
                                       pacing_start=opts.pacing_start, pacing_end=opts.pacing_end,
                                       dynamic_weight=opts.quality_dynamic_weight, aug=opts.quality_aug)
        sampler.fake_weights = curriculum
    quality_state = out / "last_quality.safetensors"

    torch.manual_seed(opts.seed)
    methods = train_m.method_names
    if sbi and SBI_METHOD not in methods:
        methods = methods + [SBI_METHOD]
    groups = train_m.group_names
    config = ModelConfig(backbone=opts.backbone, input_size=opts.input_size, num_spe=len(methods),
                         method_names=methods, num_fair=len(groups), group_names=groups)

    if opts.resume or opts.init_from is not None:
        source = last_ckpt if opts.resume or opts.init_from is None else Path(opts.init_from)
        model, saved_cfg, _ = load_checkpoint(source, deploy=False, device=device)
        aligned = align_group_names(saved_cfg.group_names, groups)
        if aligned is not None:  # the checkpoint's head order, its pre-"|" names read as these groups
            groups = aligned
            config = dataclasses.replace(config, group_names=aligned)
            saved_cfg = dataclasses.replace(saved_cfg, group_names=aligned)
        if opts.init_from is not None:  # convolutions and a global pool: the weights fit any input size
            saved_cfg = dataclasses.replace(saved_cfg, input_size=config.input_size)
            if set(methods) < set(saved_cfg.method_names):  # e.g. real-only + SBI from a model that saw real fakes
                methods = list(saved_cfg.method_names)
                config = dataclasses.replace(config, method_names=methods, num_spe=len(methods))
        if saved_cfg != config:
            raise InputError(f"{source}: the run was started with another backbone, input size, groups or methods "
                             f"({saved_cfg.backbone}, {saved_cfg.input_size}px, {saved_cfg.group_names}, "
                             f"{saved_cfg.method_names})")
    else:
        model = PGFDD(config, pretrained=opts.pretrained).to(device)
    # channels-last convolutions: ~15% faster training steps on the 2-core CPU (recipes/bench_train_step.py)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented; not in torch's overloads

    gen = torch.Generator().manual_seed(opts.seed)
    loss_fn = PGFDDLoss(train_m.group_counts(groups), generator=gen, fairness=opts.fairness)
    base_cls, base_kwargs = OPTIMIZERS[opts.optimizer]
    base_kwargs = {**base_kwargs, "lr": opts.lr}
    opt: torch.optim.Optimizer = (base_cls(model.parameters(), **base_kwargs) if opts.no_sam
                                  else SAM(model.parameters(), base_cls, rho=0.05, **base_kwargs))
    sam = opt if isinstance(opt, SAM) else None  # the two-step update, unless --no-sam
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_auc": -math.inf, "best_epoch": 0, "seconds": 0.0}
    if opts.resume:
        state.update(load_optimizer(last_optim, opt, gen, device))
        if state["epoch"] >= opts.epochs:
            raise InputError(f"{out}: the run already finished {state['epoch']} epoch(s); raise --epochs to go on")
        if curriculum is not None:
            if not quality_state.is_file():
                raise InputError(f"{out}: the run was started without --curriculum quality (no {quality_state.name})")
            curriculum.load(quality_state)

    common: dict[str, Any] = {"group_names": groups, "method_names": methods, "size": config.input_size, "mean": config.mean,
              "std": config.std}
    train_ds = FaceDataset(train_m, augment=Augment(p_scale=opts.scale_jitter, p_video=opts.video_aug) if opts.augment else None, **common)
    batches = sampler if curriculum is None else QualityBatchSampler(sampler, curriculum)
    train_loader = make_loader(train_ds, batch_sampler=batches, num_workers=opts.num_workers)
    # inference needs no gradients or decoder: larger validation batches cost little memory
    keys, val_loader = validation_loader(val_m, config, sbi=sbi, batch_size=max(opts.batch_size, 16),
                                         num_workers=opts.num_workers)

    provenance_base = {
        "train_manifest": train_m.path.name, "train_manifest_sha256": train_m.sha256,
        "val_manifest": val_m.path.name, "val_manifest_sha256": val_m.sha256,
        "train_counts": train_counts, "val_counts": val_m.counts(), "group_counts": train_m.group_counts(groups),
        "options": opts.to_json(), "init_from": None if opts.init_from is None else Path(opts.init_from).name,
        "sam": not opts.no_sam, "pseudo_fakes": opts.pseudo_fakes, "fairness_terms": opts.fairness,
        "threshold_policy": threshold_policy(opts.threshold_method, opts.target_fpr),
        "torch": torch.__version__, "device": str(device),
        "curriculum": None if curriculum is None else {
            "kind": opts.curriculum, "pacing_start": opts.pacing_start, "pacing_end": opts.pacing_end,
            "dynamic_weight": opts.quality_dynamic_weight, "aug": opts.quality_aug},
        "balance": None if balance is None else balance.to_json(),
    }
    synthetic = len(train_m.samples) - train_counts["rows"]
    log(f"training {opts.backbone} PG-FDD on {train_counts['rows']} crops "
        f"({train_counts['real']} real, {train_counts['fake']} fake{', + SBI pseudo-fakes' if sbi else ''}"
        f"{f', + {synthetic} synthetic rows' if synthetic else ''}), "
        f"{len(sampler)} steps/epoch of {opts.batch_size}, {opts.optimizer.upper()}{'' if opts.no_sam else ' under SAM'} lr {opts.lr}"
        f"{' (cosine)' if opts.lr_schedule == 'cosine' else ''}, {device}")

    total_steps = opts.epochs * len(sampler)
    bars = _progress(progress)
    try:
        with bars:
            for epoch in range(state["epoch"] + 1, opts.epochs + 1):
                t0 = time.perf_counter()
                sampler.set_epoch(epoch)
                if curriculum is not None:  # the ratings that draw this epoch's fakes
                    curriculum.write_csv(out / "quality.csv", epoch)
                    log(curriculum.summary(epoch))
                model.train()
                sums = {k: 0.0 for k in ("loss", *LOSS_PARTS)}
                steps = 0
                task = bars.add_task(f"epoch {epoch}/{opts.epochs}", total=len(sampler), info="")
                last_line = time.perf_counter()
                for batch in train_loader:
                    x = batch["image"].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                    y, meth, grp = (batch[k].to(device) for k in ("label", "method", "group"))
                    lr_now = scheduled_lr(opts.lr, opts.lr_schedule, state["step"], total_steps)
                    for g in opt.param_groups:
                        g["lr"] = lr_now
                    pred = model(x)
                    parts = loss_fn(pred, y, meth, grp)
                    if curriculum is not None:  # the dynamic quality score: this step's own losses, no extra pass
                        curriculum.observe(batch["index"].numpy(), sample_losses(pred["cls_fused"], y))
                    if not torch.isfinite(parts["loss"]):
                        raise InputError(f"the training loss became {float(parts['loss'])} at epoch {epoch}, "
                                         f"step {steps + 1}; lower --lr")
                    parts["loss"].backward()
                    if sam is None:
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                    else:
                        sam.first_step(zero_grad=True)
                        with bn_stats_frozen(model):
                            loss_fn(model(x), y, meth, grp)["loss"].backward()
                        sam.second_step(zero_grad=True)
                    steps += 1
                    state["step"] += 1
                    for k in sums:
                        sums[k] += float(parts[k].detach())
                    bars.update(task, advance=1, info=f"loss {sums['loss'] / steps:.4f}")
                    if not bars.console.is_terminal and time.perf_counter() - last_line >= LOG_EVERY_S:
                        # no live bar in a CI log or a file: a line now and then instead of silence
                        last_line = time.perf_counter()
                        per_step = (last_line - t0) / steps
                        log(f"epoch {epoch}: step {steps}/{len(sampler)}, loss {sums['loss'] / steps:.4f}, "
                            f"{per_step:.2f} s/step, ~{per_step * (len(sampler) - steps) / 60:.0f} min left")
                train_seconds = time.perf_counter() - t0
                if curriculum is not None:
                    curriculum.end_epoch()

                vtask = bars.add_task(f"validate {epoch}", total=len(keys), info="")
                vm, parts_by, p, y_val, index = validate(model, val_m, val_loader, device, opts.threshold_method,
                                                         opts.target_fpr, bars, vtask)
                with open(out / "breakdown.jsonl", "a") as fh:  # one line per epoch
                    fh.write(json.dumps({"epoch": epoch, **parts_by}) + "\n")
                state["epoch"], state["seconds"] = epoch, state["seconds"] + time.perf_counter() - t0
                row = {"epoch": epoch, "steps": steps, "seconds": time.perf_counter() - t0, "lr": opt.param_groups[0]["lr"],
                       "train_loss": sums["loss"] / max(steps, 1),
                       **{f"loss_{k}": sums[k] / max(steps, 1) for k in LOSS_PARTS}, **vm}
                _append_csv(metrics_csv, row)

                auc = vm["val_auc"]
                improved = not math.isnan(auc) and auc > state["best_auc"]
                prov = {**provenance_base, "epochs": epoch, "train_seconds": round(state["seconds"], 1),
                        **validation_provenance(vm, parts_by)}
                if improved or state["best_epoch"] == 0:
                    state["best_auc"] = auc if not math.isnan(auc) else state["best_auc"]
                    state["best_epoch"] = epoch
                    save_best(out, model, config, vm["threshold"], prov, val_m, index, y_val, p, opts.fp16_deploy)
                save_checkpoint(last_ckpt, model, config, threshold=vm["threshold"], provenance=prov)
                if opts.keep_epochs:
                    save_checkpoint(out / f"epoch{epoch}.safetensors", model, config, threshold=vm["threshold"],
                                    provenance=prov)
                save_optimizer(last_optim, opt, state, gen)
                if curriculum is not None:
                    curriculum.save(quality_state)
                log(f"epoch {epoch}: loss {row['train_loss']:.4f} ({steps} steps, {train_seconds:.0f}s) · "
                    f"val AUC {auc:.4f} AP {vm['val_ap']:.4f} EER {vm['val_eer']:.4f} ACC {vm['val_acc']:.4f} "
                    f"@ {vm['threshold']:.3f}" + (" · best" if state["best_epoch"] == epoch else ""))
                log(f"epoch {epoch}: {auc_line(parts_by)}")
    except RuntimeError as exc:  # DataLoader re-raises worker errors as RuntimeError subclasses or the original type
        if "InputError" in str(exc):
            raise _sanitize_worker_error(exc) from None
        raise
    except InputError as exc:
        if "\n" in str(exc):
            raise _sanitize_worker_error(exc) from None
        raise
    return best_ckpt
