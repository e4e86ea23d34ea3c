"""PG-FDD on a frozen pretrained trunk, trained from cached trunk maps: a CPU-sized route.

Fine-tuning a whole backbone three times over (PG-FDD's three encoders) costs seconds a step on
a 2-core CPU; a frozen trunk is the same function in all three encoders, so its maps are computed
once per crop (and once per seeded SBI pseudo-fake), cached, and only what PG-FDD adds on top
trains: each encoder's `adjust_channel` projection, the blocks, heads and the conditional decoder,
under the full PG-FDD loss (`dfscan.train.losses.PGFDDLoss`; the decoder rebuilds a 64-px copy of the
crop). The result is an ordinary PG-FDD checkpoint: encoder_f = the pretrained trunk + its trained
projection, so scanning, ONNX export and the single pass need nothing new.

Model choice is leave-one-domain-out: with `holdout` manifests (forgery domains never trained on)
the epoch kept is the one with the best mean AUC over them, not the best in-domain AUC; the
threshold is still calibrated on the in-domain validation reals at `target_fpr`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from dfscan.core.errors import InputError
from dfscan.core.metrics import binary_metrics, calibrate_threshold
from dfscan.train.backbones._encoder import Encoder
from dfscan.train.checkpoint import save_checkpoint
from dfscan.train.config import ModelConfig
from dfscan.train.data import (
    SBI_METHOD,
    FaceDataset,
    Manifest,
    check_apart,
    make_loader,
    read_manifest,
    validation_keys,
)
from dfscan.train.losses import PGFDDLoss
from dfscan.train.model import PGFDD

RECON_SIZE = 64
ENCODERS = ("encoder_f", "encoder_c", "encoder_fair")


@dataclass
class FrozenOptions:
    """What `train_frozen` needs; the defaults are the recipe's."""

    train: Path
    val: Path
    out: Path
    holdout: list[Path] = field(default_factory=list)
    backbone: str = "dinov2_vits14"
    input_size: int = 168
    epochs: int = 8
    steps: int = 150
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    fairness: bool = True
    target_fpr: float = 0.05
    allow_overlap: bool = False  # validate on rows that are also training images (dfscan.train.data.check_apart)


@dataclass
class Cache:
    """Trunk maps (fp16) and what the loss needs of each cached item."""

    trunk: torch.Tensor
    small: torch.Tensor
    label: torch.Tensor
    group: torch.Tensor
    method: torch.Tensor
    domain: list[str]

    def __len__(self) -> int:
        return int(self.label.shape[0])


def trainable(name: str) -> bool:
    """Everything but the trunks: PG-FDD's own parts and each encoder's projection."""
    return not name.startswith(ENCODERS) or ".adjust_channel." in name


def build_cache(trunk: Encoder, manifest: Manifest, config: ModelConfig, *, sbi: bool, path: Path,
                log: Callable[[str], None], batch_size: int = 32) -> Cache:
    """Trunk maps of every row (and, with `sbi`, of one seeded pseudo-fake per real), on disk at
    `path` keyed by the manifest's hash, backbone and size: a second run reads them back."""
    key = {"manifest_sha256": manifest.sha256, "backbone": config.backbone, "size": str(config.input_size),
           "sbi": str(sbi)}
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        if all(meta.get(k) == v for k, v in key.items()):
            t = load_file(str(path))
            return Cache(t["trunk"], t["small"], t["label"], t["group"], t["method"], json.loads(meta["domain"]))
    ds = FaceDataset(manifest, group_names=config.group_names, method_names=config.method_names,
                     size=config.input_size, mean=config.mean, std=config.std)
    keys = validation_keys(manifest, sbi=sbi)
    # a worker process pays off only on a set worth more than its start-up
    loader = make_loader(ds, keys=keys, batch_size=batch_size, num_workers=1 if len(keys) > 512 else 0)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("trunk", "small", "label", "group", "method")}
    t0, done = time.perf_counter(), 0
    trunk.eval()
    with torch.no_grad():
        for batch in loader:
            x = batch["image"]
            parts["trunk"].append(trunk.forward_backbone(x).half())
            parts["small"].append(F.interpolate(x, size=(RECON_SIZE, RECON_SIZE), mode="area").half())
            for k in ("label", "group", "method"):
                parts[k].append(batch[k].long())
            done += len(x)
            if len(parts["label"]) % 20 == 0:
                rate = done / (time.perf_counter() - t0)
                log(f"  {path.name}: {done}/{len(keys)} crops, {rate:.1f}/s, ~{(len(keys) - done) / rate / 60:.0f} min left")
    n = len(manifest.samples)
    domain = [manifest.samples[i if i < n else i - n].domain or "" for i, _ in keys]
    tensors = {k: torch.cat(v) for k, v in parts.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={**key, "domain": json.dumps(domain)})
    return Cache(**tensors, domain=domain)


def _batches(cache: Cache, steps: int, batch_size: int, gen: torch.Generator):
    """Index batches of batch_size/2 reals then as many fakes (PG-FDD reads the halves as a, b)."""
    reals = torch.nonzero(cache.label == 0).flatten()
    fakes = torch.nonzero(cache.label == 1).flatten()
    half = batch_size // 2
    for _ in range(steps):
        r = reals[torch.randint(len(reals), (half,), generator=gen)]
        f = fakes[torch.randint(len(fakes), (half,), generator=gen)]
        yield torch.cat([r, f])


def scores(model: PGFDD, cache: Cache, batch_size: int = 256) -> np.ndarray:
    """p_fake of every cached item through the deploy path: head_fused(block_sha(encoder_f))."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(cache), batch_size):
            f_sha = model.block_sha(model.encoder_f.adjust_channel(cache.trunk[i:i + batch_size].float()))
            logits, _ = model.head_fused(f_sha)
            out.append(torch.softmax(logits, dim=1)[:, 1])
    return torch.cat(out).double().numpy()  # float64: a float32 score would meet the threshold rounded


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(binary_metrics(y, p, 0.5)["auc"])


def train_frozen(opts: FrozenOptions, log: Callable[[str], None] = print) -> dict:
    """Cache, train, validate each epoch (in-domain and held-out domains), keep the best by the
    held-out AUC; writes `best.safetensors` (deploy, fp16), `heads.safetensors` (what trained,
    to resume or inspect) and `metrics.jsonl` in `opts.out`. Returns the best epoch's figures."""
    from dfscan.train.backbones import create_backbone, missing_pretrained

    hint = missing_pretrained(opts.backbone)
    if hint:
        raise InputError(f"no pretrained weights for {opts.backbone} on this machine: {hint}")
    train_m, val_m = read_manifest(opts.train), read_manifest(opts.val)
    if not opts.allow_overlap:
        check_apart(train_m, val_m)
    methods = train_m.method_names + ([SBI_METHOD] if SBI_METHOD not in train_m.method_names else [])
    groups = train_m.group_names
    config = ModelConfig(backbone=opts.backbone, input_size=opts.input_size, num_spe=len(methods),
                         method_names=methods, num_fair=len(groups), group_names=groups)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    trunk = create_backbone(opts.backbone, pretrained=True)
    cache_dir = out / "cache"
    train_c = build_cache(trunk, train_m, config, sbi=True, path=cache_dir / "train.safetensors", log=log)
    val_c = build_cache(trunk, val_m, config, sbi=True, path=cache_dir / "val.safetensors", log=log)
    held = [(p.stem, build_cache(trunk, read_manifest(p), config, sbi=False, path=cache_dir / f"{p.stem}.safetensors",
                                 log=log)) for p in opts.holdout]

    torch.manual_seed(opts.seed)
    model = PGFDD(config, pretrained=False)
    params = [p for n, p in model.named_parameters() if trainable(n)]
    for n, p in model.named_parameters():
        p.requires_grad_(trainable(n))
    gen = torch.Generator().manual_seed(opts.seed)
    counts = np.bincount(train_c.group[train_c.group >= 0].numpy(), minlength=len(groups)).tolist()
    loss_fn = PGFDDLoss(counts, generator=gen, fairness=opts.fairness)
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    total = opts.epochs * opts.steps
    best: dict = {"select": -math.inf}
    y_val = val_c.label.numpy()
    for epoch in range(1, opts.epochs + 1):
        model.train()
        t0, loss_sum = time.perf_counter(), 0.0
        for step, idx in enumerate(_batches(train_c, opts.steps, opts.batch_size, gen)):
            lr = opts.lr * 0.5 * (1 + math.cos(math.pi * ((epoch - 1) * opts.steps + step) / total))
            for g in opt.param_groups:
                g["lr"] = lr
            pred = model(train_c.small[idx].float(), trunk=train_c.trunk[idx].float())
            parts = loss_fn(pred, train_c.label[idx], train_c.method[idx], train_c.group[idx])
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt.step()
            loss_sum += float(parts["loss"].detach())
        p_val = scores(model, val_c)
        threshold = calibrate_threshold(y_val, p_val, "fpr", opts.target_fpr)
        dom = np.array(val_c.domain)
        row: dict[str, Any] = {"epoch": epoch, "loss": loss_sum / opts.steps, "seconds": round(time.perf_counter() - t0, 1),
               "threshold": threshold, "val_auc": _auc(y_val, p_val),
               "val_auc_by_domain": {d: _auc(y_val[dom == d], p_val[dom == d]) for d in sorted(set(dom))},
               "val_fpr": float((p_val[y_val == 0] >= threshold).mean())}
        for name, c in held:
            p_h, y_h = scores(model, c), c.label.numpy()
            row[f"holdout_auc:{name}"] = _auc(y_h, p_h)
            row[f"holdout_tpr:{name}"] = float((p_h[y_h == 1] >= threshold).mean())
            row[f"holdout_fpr:{name}"] = float((p_h[y_h == 0] >= threshold).mean())
        hold = [row[f"holdout_auc:{n}"] for n, _ in held]
        row["select"] = float(np.mean(hold)) if hold else row["val_auc"]
        with open(out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        log(f"epoch {epoch}: loss {row['loss']:.4f} ({row['seconds']:.0f}s) · val AUC {row['val_auc']:.4f} "
            + " ".join(f"{k.split(':', 1)[1]} {v:.4f}" for k, v in row.items() if k.startswith("holdout_auc:")))
        if row["select"] > best["select"]:
            best = row
            _save(out, model, trunk, config, threshold, row, opts, train_m, val_m)
    return best


def _save(out: Path, model: PGFDD, trunk: torch.nn.Module, config: ModelConfig, threshold: float, row: dict,
          opts: FrozenOptions, train_m: Manifest, val_m: Manifest) -> None:
    """The deploy checkpoint (pretrained trunk + trained projection as encoder_f) and the trained parts."""
    trained = {n: t.detach().clone() for n, t in model.state_dict().items() if trainable(n)}
    save_file({n: t.half() if t.is_floating_point() else t for n, t in trained.items()}, str(out / "heads.safetensors"),
              metadata={"config": config.to_json(), "epoch": str(row["epoch"])})
    full_trunk = {f"encoder_f.{k}": v for k, v in trunk.state_dict().items() if not k.startswith("adjust_channel.")}
    model.load_state_dict(full_trunk, strict=False)
    provenance = {"method": "PG-FDD on a frozen pretrained trunk (dfscan.train.frozen)", "epochs": row["epoch"],
                  "train_manifest": train_m.path.name, "train_manifest_sha256": train_m.sha256,
                  "val_manifest": val_m.path.name, "val_manifest_sha256": val_m.sha256,
                  "selected_by": "mean held-out AUC" if opts.holdout else "validation AUC",
                  "threshold_policy": f"lowest threshold with FPR <= {opts.target_fpr:g} on the validation reals",
                  "metrics": {k: v for k, v in row.items() if k != "select"}}
    save_checkpoint(out / "best.safetensors", model.deploy(), config, threshold=threshold, provenance=provenance,
                    half=True)
