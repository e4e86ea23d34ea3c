"""Weight averaging: one model whose weights are the mean of several checkpoints of one run.

The last epochs of a low-learning-rate run circle a flat region of the loss; the mean of their
weights sits nearer its centre and often validates better than any one of them (stochastic
weight averaging, Izmailov et al., 2018). Unlike an ensemble it costs nothing at inference.
BatchNorm running statistics are averaged, not re-estimated on training data: close enough for
nearby epochs of one low-rate run, which is what this is for; validation says whether it paid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from train.checkpoint import load_checkpoint
from train.config import ModelConfig
from train.data import read_manifest
from train.errors import CheckpointError, InputError
from train.loop import resolve_device, save_best, threshold_policy, validate, validation_loader, validation_provenance
from train.model import PGFDD

# provenance fields that tell runs apart: files whose values differ are not epochs of one run
RUN_FIELDS = ("train_manifest_sha256", "val_manifest_sha256", "pseudo_fakes", "fairness_terms")


def _run_folder(info: dict) -> str | None:
    return (info["provenance"].get("options") or {}).get("out")


def average_checkpoints(paths: Sequence[str | Path]) -> tuple[PGFDD, ModelConfig, list[dict]]:
    """The uniform mean of full checkpoints' floating tensors (integer counters from the last file).

    The files must be of one run: the same architecture, input size, groups and methods, and the
    same training data and validation set. Returns the averaged model (eval mode), its config and
    each file's info (threshold, provenance, sha256).
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise InputError("weight averaging needs at least two checkpoints")
    total: dict[str, torch.Tensor] = {}
    config: ModelConfig | None = None
    infos: list[dict] = []
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        model, cfg, info = load_checkpoint(path, deploy=False)
        if config is not None and cfg != config:
            raise CheckpointError(f"{path}: backbone, input size, groups or methods differ from {paths[0]}; "
                                  "only checkpoints of one run can be averaged")
        differ = [k for k in RUN_FIELDS if infos and info["provenance"].get(k) != infos[0]["provenance"].get(k)]
        if infos and _run_folder(info) != _run_folder(infos[0]):
            differ.append("run folder (options.out)")
        if differ:
            raise CheckpointError(f"{path}: {', '.join(differ)} differ from {paths[0]}; "
                                  "only checkpoints of one run can be averaged")
        config = cfg
        infos.append(info)
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                total[k] = total[k] + v.double() if k in total else v.double()
            else:  # e.g. BatchNorm's num_batches_tracked: a counter, not a weight
                total[k] = v.clone()
    assert config is not None
    averaged = PGFDD(config, pretrained=False)
    averaged.load_state_dict({k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in total.items()})
    return averaged.eval(), config, infos


def average_run(paths: Sequence[str | Path], val_manifest: str | Path, out: str | Path, *,
                num_workers: int | None = None, device: str = "auto") -> dict:
    """Average `paths`, validate the result as the run's epochs were (same items, same seeded
    pseudo-fakes, the run's threshold policy) and write it to `out` as a run's chosen model:
    best.safetensors, best_deploy.safetensors (stored as the run stored it), val_predictions.csv.

    Returns the validation metrics and the per-method/domain breakdown.
    """
    out = Path(out)
    if (out / "best.safetensors").exists():
        raise InputError(f"{out} already holds a run's best.safetensors; choose another folder")
    model, config, infos = average_checkpoints(paths)
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
        "averaged_from": [{"file": Path(q).name, "sha256": info["sha256"], "epochs": info["provenance"].get("epochs")}
                          for q, info in zip(paths, infos)],
        "val_manifest": val_m.path.name, "val_manifest_sha256": val_m.sha256, "val_counts": val_m.counts(),
        "threshold_policy": threshold_policy(method, target_fpr),
        **validation_provenance(vm, parts_by),
    }
    out.mkdir(parents=True, exist_ok=True)
    save_best(out, model.cpu(), config, vm["threshold"], provenance, val_m, index, y, p,
              bool(options.get("fp16_deploy", False)))
    return {**vm, **parts_by}
