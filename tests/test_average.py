"""Weight averaging (train.average): the mean of a run's epochs, validated and calibrated like an epoch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.helpers import read_rows, train_options as _opts
from train.average import average_checkpoints, average_run
from train.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from train.errors import CheckpointError, InputError
from train.loop import train
from train.metrics import binary_metrics


@pytest.fixture(scope="module")
def kept_epochs(crop_sets, tmp_path_factory):
    """A 3-epoch run that keeps every epoch's weights."""
    out = tmp_path_factory.mktemp("kept") / "run"
    train(_opts(crop_sets, out, epochs=3, max_steps_per_epoch=1, no_sam=True, keep_epochs=True), progress=False)
    return out


def test_keep_epochs_writes_each_epoch_and_last_is_the_final_one(kept_epochs):
    files = sorted(p.name for p in kept_epochs.glob("epoch*.safetensors"))
    assert files == ["epoch1.safetensors", "epoch2.safetensors", "epoch3.safetensors"]
    last = load_checkpoint(kept_epochs / "last.safetensors", deploy=False)[0].state_dict()
    third = load_checkpoint(kept_epochs / "epoch3.safetensors", deploy=False)[0].state_dict()
    first = load_checkpoint(kept_epochs / "epoch1.safetensors", deploy=False)[0].state_dict()
    assert all(torch.equal(last[k], third[k]) for k in last)
    assert any(not torch.equal(first[k], third[k]) for k in first)


def test_average_is_the_elementwise_mean(kept_epochs):
    paths = [kept_epochs / f"epoch{i}.safetensors" for i in (1, 2, 3)]
    model, cfg, infos = average_checkpoints(paths)
    states = [load_checkpoint(p, deploy=False)[0].state_dict() for p in paths]
    avg = model.state_dict()
    assert cfg.input_size == 64 and [i["provenance"]["epochs"] for i in infos] == [1, 2, 3]
    for k, v in avg.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, sum(s[k].double() for s in states).float() / 3, msg=k)
        else:
            assert torch.equal(v, states[-1][k])
    assert not model.training


def test_average_run_validates_calibrates_and_writes_a_run(kept_epochs, crop_sets, tmp_path):
    paths = [kept_epochs / f"epoch{i}.safetensors" for i in (2, 3)]
    m = average_run(paths, crop_sets[1], tmp_path / "avg", target_fpr=0.25, num_workers=0)
    rows = read_rows(tmp_path / "avg" / "val_predictions.csv")
    y = np.array([int(r["label"]) for r in rows])
    p = np.array([float(r["p_fake"]) for r in rows])
    assert len(rows) == m["val_n"] == 8
    assert m["val_auc"] == pytest.approx(binary_metrics(y, p)["auc"])
    assert (p[y == 0] >= m["threshold"]).mean() <= 0.25  # calibrated at the requested FPR on the reals
    assert "by_method" in m
    model, _, info = load_checkpoint(tmp_path / "avg" / "best.safetensors", deploy=False)
    assert info["threshold"] == pytest.approx(m["threshold"])
    assert [a["file"] for a in info["provenance"]["averaged_from"]] == ["epoch2.safetensors", "epoch3.safetensors"]
    assert info["provenance"]["threshold_policy"] == "lowest threshold with FPR <= 0.25 on the validation reals"
    deploy = tmp_path / "avg" / "best_deploy.safetensors"
    assert read_metadata(deploy)["dtype"] == "float16"
    dep = load_checkpoint(deploy)[0]
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(dep(x), model(x, inference=True)["prob"], atol=2e-3, rtol=0)


def test_average_refuses_mixed_models_and_single_files(kept_epochs, tmp_path):
    one = kept_epochs / "epoch1.safetensors"
    with pytest.raises(InputError, match="at least two"):
        average_checkpoints([one])
    with pytest.raises(InputError, match="not found"):
        average_checkpoints([one, tmp_path / "missing.safetensors"])
    model, cfg, _ = load_checkpoint(one, deploy=False)
    other = save_checkpoint(tmp_path / "other.safetensors", model,
                            dataclasses.replace(cfg, group_names=[f"x{i}" for i in range(len(cfg.group_names))]))
    with pytest.raises(CheckpointError, match="only checkpoints of one model"):
        average_checkpoints([one, other])
