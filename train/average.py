"""Weight averaging: one model whose weights are the mean of several checkpoints of one run.

The last epochs of a low-learning-rate run circle a flat region of the loss; the mean of their
weights sits nearer its centre and usually validates better than any one of them (stochastic
weight averaging, Izmailov et al., 2018). Unlike an ensemble it costs nothing at inference.
BatchNorm running statistics are averaged too: checkpoints this close agree on them closely
enough (measured: the model card's averaging table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from train.checkpoint import load_checkpoint
from train.config import ModelConfig
from train.data import SBI_METHOD, FaceDataset, make_loader, read_manifest, validation_keys
from train.errors import CheckpointError, InputError
from train.loop import validation_groups, breakdown, predict, save_best, validation_metrics
from train.model import PGFDD


def average_checkpoints(paths: Sequence[str | Path]) -> tuple[PGFDD, ModelConfig, list[dict]]:
    """The uniform mean of full checkpoints' floating tensors (integer counters from the last file).

    All files must hold the same architecture, input size, groups and methods; returns the
    averaged model (eval mode), its config and each file's info (threshold, provenance, sha256).
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise InputError("weight averaging needs at least two checkpoints")
    total: dict[str, torch.Tensor] = {}
    config: ModelConfig | None = None
    infos = []
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        model, cfg, info = load_checkpoint(path, deploy=False)
        if config is not None and cfg != config:
            raise CheckpointError(f"{path}: another architecture, input size, groups or methods than {paths[0]}; "
                                  "only checkpoints of one model can be averaged")
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
                target_fpr: float = 0.05, fp16_deploy: bool = True, num_workers: int | None = None) -> dict:
    """Average `paths`, validate the result as the training loop does (same items, same seeded
    pseudo-fakes, threshold at `target_fpr` on the validation reals) and write it to `out` as a
    run's chosen model: best.safetensors, best_deploy.safetensors, val_predictions.csv.

    Returns the validation metrics and per-method/domain breakdown.
    """
    model, config, infos = average_checkpoints(paths)
    val_m = read_manifest(val_manifest)
    dataset = FaceDataset(val_m, augment=None, group_names=config.group_names, method_names=config.method_names,
                          size=config.input_size, mean=config.mean, std=config.std)
    keys = validation_keys(val_m, sbi=SBI_METHOD in config.method_names)
    loader = make_loader(dataset, keys=keys, batch_size=64, num_workers=num_workers)
    p, y, index = predict(model, loader, torch.device("cpu"))
    vm = validation_metrics(y, p, validation_groups(val_m, index), "fpr", target_fpr)
    parts_by = breakdown(val_m, index, y, p, vm["threshold"])
    provenance = {
        **infos[-1]["provenance"],
        "averaged_from": [{"file": Path(q).name, "sha256": info["sha256"],
                           "epochs": info["provenance"].get("epochs")} for q, info in zip(paths, infos)],
        "threshold_policy": f"lowest threshold with FPR <= {target_fpr:g} on the validation reals",
        "metrics": {k: v for k, v in vm.items() if isinstance(v, (int, float))},
        "auc_by": {part: {k: v["auc"] for k, v in table.items()} for part, table in parts_by.items()},
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_best(out, model, config, vm["threshold"], provenance, val_m, index, y, p, fp16_deploy)
    return {**vm, **parts_by}
