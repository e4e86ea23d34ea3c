"""Weight averaging: one model whose weights are the mean of several checkpoints of one run.

The last epochs of a low-learning-rate run circle a flat region of the loss; the mean of their
weights sits nearer its centre and often validates better than any one of them (stochastic
weight averaging, Izmailov et al., 2018). Unlike an ensemble it costs nothing at inference.
BatchNorm running statistics are averaged, not re-estimated on training data: close enough for
nearby epochs of one low-rate run, which is what this is for; validation says whether it paid.

A *soup* (`one_run=False`) averages fine-tunes of one parent trained on different data or
objectives (Wortsman et al., 2022, "model soups"): fine-tunes of one initialisation stay in one
basin of the loss, so their mean is a model, not noise. A checkpoint cannot prove its parent
(`init_from` is only a file name), so a soup is refused when the weights are further apart than
fine-tunes are (`SOUP_MAX_DISTANCE`); two trainings from scratch are about 100 % apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from dfscan.core.errors import CheckpointError, InputError
from dfscan.train.checkpoint import load_checkpoint
from dfscan.train.config import ModelConfig
from dfscan.train.data import read_manifest
from dfscan.train.loop import (
    resolve_device,
    save_best,
    threshold_policy,
    validate,
    validation_loader,
    validation_provenance,
)
from dfscan.train.model import PGFDD

# provenance fields that tell runs apart: files whose values differ are not epochs of one run
RUN_FIELDS = ("train_manifest_sha256", "val_manifest_sha256", "pseudo_fakes", "fairness_terms")
# fields a soup's ingredients must share: validated on the same items, so one threshold means the same
SOUP_FIELDS = ("val_manifest_sha256",)
# relative L2 distance of learned weights above which files are not fine-tunes of one parent
# (measured: two fine-tunes of one parent 0.3 %; a fine-tune against its ImageNet start 23 %)
SOUP_MAX_DISTANCE = 0.10


def weight_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """||a - b|| / ||a|| over learned floating tensors (BatchNorm statistics and counters left out)."""
    keys = [k for k, v in a.items() if v.is_floating_point() and "running_" not in k]
    num = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in keys)
    den = sum(float((a[k].double() ** 2).sum()) for k in keys)
    return (num / den) ** 0.5 if den else float("inf")


def _run_folder(info: dict) -> str | None:
    return (info["provenance"].get("options") or {}).get("out")


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n or any(not w > 0 for w in weights):
        raise InputError(f"--weights needs {n} positive numbers, one per checkpoint (got {list(weights)})")
    total = float(sum(weights))
    return [w / total for w in weights]


def average_checkpoints(paths: Sequence[str | Path], *, weights: Sequence[float] | None = None,
                        one_run: bool = True) -> tuple[PGFDD, ModelConfig, list[dict]]:
    """The mean (uniform, or by `weights`) of full checkpoints' floating tensors; integer counters
    come from the last file.

    With `one_run` the files must be of one run: the same architecture, input size, groups and
    methods, and the same training data and validation set. Without it (a soup) they may differ in
    data and run but must share the architecture and validation set and lie within
    `SOUP_MAX_DISTANCE` of the first. Returns the averaged model (eval mode), its config and each
    file's info (threshold, provenance, sha256, and its normalised `weight`).
    """
    files = [Path(p) for p in paths]
    if len(files) < 2:
        raise InputError("weight averaging needs at least two checkpoints")
    shares = _weights(weights, len(files))
    what = "only checkpoints of one run can be averaged" if one_run else "only fine-tunes of one parent can be souped"
    fields = RUN_FIELDS if one_run else SOUP_FIELDS
    total: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}
    config: ModelConfig | None = None
    infos: list[dict] = []
    for path, share in zip(files, shares):
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        model, cfg, info = load_checkpoint(path, deploy=False)
        if config is not None and cfg != config:
            raise CheckpointError(f"{path}: backbone, input size, groups or methods differ from {files[0]}; {what}")
        differ = [k for k in fields if infos and info["provenance"].get(k) != infos[0]["provenance"].get(k)]
        if one_run and infos and _run_folder(info) != _run_folder(infos[0]):
            differ.append("run folder (options.out)")
        if differ:
            raise CheckpointError(f"{path}: {', '.join(differ)} differ from {files[0]}; {what}")
        state = model.state_dict()
        if not infos:
            first = state
        elif not one_run and (d := weight_distance(first, state)) > SOUP_MAX_DISTANCE:
            raise CheckpointError(f"{path}: weights {d:.0%} apart from {files[0]} (a soup needs at most "
                                  f"{SOUP_MAX_DISTANCE:.0%}); these are not fine-tunes of one parent")
        config = cfg
        infos.append({**info, "weight": share})
        for k, v in state.items():
            if v.is_floating_point():
                total[k] = total[k] + share * v.double() if k in total else share * v.double()
            else:  # e.g. BatchNorm's num_batches_tracked: a counter, not a weight
                total[k] = v.clone()
    assert config is not None
    averaged = PGFDD(config, pretrained=False)
    averaged.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in total.items()})
    return averaged.eval(), config, infos


def average_run(paths: Sequence[str | Path], val_manifest: str | Path, out: str | Path, *,
                weights: Sequence[float] | None = None, one_run: bool = True,
                num_workers: int | None = None, device: str = "auto") -> dict:
    """Average `paths`, validate the result as the run's epochs were (same items, same seeded
    pseudo-fakes, the run's threshold policy) and write it to `out` as a run's chosen model:
    best.safetensors, best_deploy.safetensors (stored as the run stored it), val_predictions.csv.

    Returns the validation metrics and the per-method/domain breakdown.
    """
    out = Path(out)
    if (out / "best.safetensors").exists():
        raise InputError(f"{out} already holds a run's best.safetensors; choose another folder")
    model, config, infos = average_checkpoints(paths, weights=weights, one_run=one_run)
    run = infos[-1]["provenance"]
    options = run.get("options", {})
    val_m = read_manifest(val_manifest)
    if run.get("val_manifest_sha256") not in (None, val_m.sha256):
        raise InputError(f"{val_manifest} is not the validation set the run was validated on "
                         f"({run.get('val_manifest')}); pass that one")
    method, target_fpr = options.get("threshold_method", "fpr"), float(options.get("target_fpr", 0.05))
    dev = resolve_device(device)
    _, loader = validation_loader(val_m, config, sbi=run.get("pseudo_fakes") == "sbi", batch_size=64,
                                  num_workers=num_workers)
    vm, parts_by, p, y, index = validate(model.to(dev), val_m, loader, dev, method, target_fpr)
    provenance = {
        **run,
        "epochs": None, "train_seconds": None,  # per file in averaged_from
        "averaged_from": [{"file": Path(q).name if one_run else f"{Path(q).parent.name}/{Path(q).name}", "sha256": info["sha256"],
                           "epochs": info["provenance"].get("epochs"), "weight": round(info["weight"], 6),
                           "train_manifest": info["provenance"].get("train_manifest")}
                          for q, info in zip(paths, infos)],
        "average_kind": "epochs of one run" if one_run else "soup of fine-tunes of one parent",
        "val_manifest": val_m.path.name, "val_manifest_sha256": val_m.sha256, "val_counts": val_m.counts(),
        "threshold_policy": threshold_policy(method, target_fpr),
        **validation_provenance(vm, parts_by),
    }
    out.mkdir(parents=True, exist_ok=True)
    save_best(out, model.cpu(), config, vm["threshold"], provenance, val_m, index, y, p,
              bool(options.get("fp16_deploy", False)))
    return {**vm, **parts_by}
