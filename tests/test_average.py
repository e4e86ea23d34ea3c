"""Weight averaging (dfscan.train.average): the mean of a run's epochs, validated and calibrated like an epoch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dfscan.core.errors import CheckpointError, InputError
from dfscan.train.average import average_checkpoints, average_run
from dfscan.train.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from dfscan.train.loop import train
from tests.helpers import make_crops, read_rows
from tests.helpers import train_options as _opts


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


@pytest.fixture(scope="module")
def sbi_work(crop_sets, tmp_path_factory):
    """A recipe-style work folder: val.csv and a one-epoch run with SBI pseudo-fakes, an EER
    threshold and float32 deploy weights (not the averaging defaults), without --keep-epochs."""
    root = tmp_path_factory.mktemp("sbi")
    val = make_crops(root, 8, seed=5, name="val.csv")
    train(_opts((crop_sets[0], val), root / "run", epochs=1, max_steps_per_epoch=1, no_sam=True, pseudo_fakes="sbi",
                threshold_method="eer"), progress=False)
    return root


def test_average_of_one_epoch_with_itself_reproduces_its_validation(sbi_work, tmp_path):
    """The mean of two copies is the epoch itself, so the averaged run must score the same items
    (rows, seeded pseudo-fakes) to the same p_fake and calibrate the same threshold by the run's policy."""
    best = sbi_work / "run" / "best.safetensors"
    assert not list((sbi_work / "run").glob("epoch*.safetensors"))  # kept only with --keep-epochs
    m = average_run([best, best], sbi_work / "val.csv", tmp_path / "avg", num_workers=0)
    own = read_rows(sbi_work / "run" / "val_predictions.csv")
    got = read_rows(tmp_path / "avg" / "val_predictions.csv")
    assert len(got) == len(own) == m["val_n"] == 12  # 8 rows + a pseudo-fake of each of the 4 reals
    assert [(r["path"], r["pseudo_fake"]) for r in got] == [(r["path"], r["pseudo_fake"]) for r in own]
    np.testing.assert_allclose([float(r["p_fake"]) for r in got], [float(r["p_fake"]) for r in own], atol=1e-5)
    _, _, run_info = load_checkpoint(best, deploy=False)
    model, _, info = load_checkpoint(tmp_path / "avg" / "best.safetensors", deploy=False)
    assert info["threshold"] == pytest.approx(run_info["threshold"], abs=1e-5) == pytest.approx(m["threshold"])
    prov = info["provenance"]
    assert prov["threshold_policy"] == "eer point on validation" and prov["epochs"] is None
    assert [a["epochs"] for a in prov["averaged_from"]] == [1, 1] and prov["val_manifest"] == "val.csv"
    assert prov["metrics"]["val_auc"] == pytest.approx(m["val_auc"]) and "sbi" in prov["auc_by"]["by_method"]
    deploy = tmp_path / "avg" / "best_deploy.safetensors"
    assert read_metadata(deploy)["dtype"] == "float32"  # as the run stored its own
    dep = load_checkpoint(deploy)[0]
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(dep(x), model(x, inference=True)["prob"], atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="already holds"):
        average_run([best, best], sbi_work / "val.csv", tmp_path / "avg", num_workers=0)


def test_average_refuses_another_validation_set(sbi_work, crop_sets, tmp_path):
    best = sbi_work / "run" / "best.safetensors"
    with pytest.raises(InputError, match="not the validation set the run was validated on"):
        average_run([best, best], crop_sets[1], tmp_path / "avg", num_workers=0)
    assert not (tmp_path / "avg").exists()


def test_recipe_average_subcommand(sbi_work):
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "build_detector.py"
    best = str(sbi_work / "run" / "best.safetensors")
    cmd = [sys.executable, str(recipe), "average", "--work", str(sbi_work), "--run", "avg", best, best]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "val AUC" in r.stdout and "AUC by method" in r.stdout and (sbi_work / "avg" / "best.safetensors").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.strip().startswith("error: ") and "already holds" in again.stderr


def test_average_refuses_mixed_models_and_single_files(kept_epochs, tmp_path):
    one = kept_epochs / "epoch1.safetensors"
    with pytest.raises(InputError, match="at least two"):
        average_checkpoints([one])
    with pytest.raises(InputError, match="not found"):
        average_checkpoints([one, tmp_path / "missing.safetensors"])
    model, cfg, _ = load_checkpoint(one, deploy=False)
    other = save_checkpoint(tmp_path / "other.safetensors", model,
                            dataclasses.replace(cfg, group_names=[f"x{i}" for i in range(len(cfg.group_names))]))
    with pytest.raises(CheckpointError, match="groups or methods differ .* only checkpoints of one run"):
        average_checkpoints([one, other])
    _, _, info = load_checkpoint(one, deploy=False)
    other_data = save_checkpoint(tmp_path / "other_data.safetensors", model, cfg,
                                 provenance={**info["provenance"], "train_manifest_sha256": "0" * 64})
    with pytest.raises(CheckpointError, match="train_manifest_sha256 differ"):
        average_checkpoints([one, other_data])
    other_run = save_checkpoint(tmp_path / "other_run.safetensors", model, cfg, provenance={
        **info["provenance"], "options": {**info["provenance"]["options"], "out": str(tmp_path / "another")}})
    with pytest.raises(CheckpointError, match=r"run folder \(options.out\) differ"):
        average_checkpoints([one, other_run])  # same data and settings, another run
    average_checkpoints([one, kept_epochs / "epoch2.safetensors"])  # epochs of one run average


def test_recipe_evaluate_scores_the_loops_own_validation_items(sbi_work):
    """recipes/build_detector.py `evaluate` reads the deploy weights on the loop's validation
    items (rows, then one seeded pseudo-fake per real), so its figures are the epoch's own."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "recipes" / "build_detector.py"
    spec = importlib.util.spec_from_file_location("build_detector", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    p, y, kind, _, group, info = recipe._scores(sbi_work / "run" / "best.safetensors", sbi_work / "val.csv")
    own = read_rows(sbi_work / "run" / "val_predictions.csv")
    assert len(p) == len(own) == 12 and list(kind).count("sbi") == 4
    assert y.tolist() == [int(r["label"]) for r in own]
    np.testing.assert_allclose(p, [float(r["p_fake"]) for r in own], atol=1e-5)
    assert group[0] == "male|asian" and info["threshold"] == pytest.approx(
        load_checkpoint(sbi_work / "run" / "best.safetensors", deploy=False)[2]["threshold"])


def _fine_tune(path: Path, to: Path, *, data: str, scale: float, seed: int) -> Path:
    """A copy of `path` as if fine-tuned on other data: weights nudged by `scale` of their own size."""
    model, cfg, info = load_checkpoint(path, deploy=False)
    torch.manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * t.abs().mean() * scale)
    prov = {**info["provenance"], "train_manifest_sha256": data * 64, "train_manifest": f"{data}.csv",
            "options": {**info["provenance"]["options"], "out": str(to.parent)}}
    return save_checkpoint(to, model, cfg, threshold=info["threshold"], provenance=prov)


def test_soup_weights_fine_tunes_of_other_runs_and_refuses_strangers(kept_epochs, tmp_path):
    parent = kept_epochs / "epoch3.safetensors"
    child = _fine_tune(parent, tmp_path / "child" / "epoch1.safetensors", data="a", scale=0.01, seed=1)
    with pytest.raises(CheckpointError, match="train_manifest_sha256, run folder .* only checkpoints of one run"):
        average_checkpoints([parent, child])  # the one-run average still refuses other runs
    model, _, infos = average_checkpoints([parent, child], weights=[3, 1], one_run=False)
    a, b = (load_checkpoint(p, deploy=False)[0].state_dict() for p in (parent, child))
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (0.75 * a[k].double() + 0.25 * b[k].double()).float(), msg=k)
    stranger = _fine_tune(parent, tmp_path / "far" / "epoch1.safetensors", data="b", scale=1.0, seed=2)
    with pytest.raises(CheckpointError, match=r"apart .* not fine-tunes of one parent"):
        average_checkpoints([parent, stranger], one_run=False)
    with pytest.raises(InputError, match="needs 2 positive numbers"):
        average_checkpoints([parent, child], weights=[1, 0], one_run=False)
    with pytest.raises(InputError, match="needs 2 positive numbers"):
        average_checkpoints([parent, child], weights=[1], one_run=False)


def test_soup_refuses_ingredients_validated_on_other_items(kept_epochs, tmp_path):
    parent = kept_epochs / "epoch3.safetensors"
    model, cfg, info = load_checkpoint(parent, deploy=False)
    other_val = save_checkpoint(tmp_path / "o" / "e.safetensors", model, cfg,
                                provenance={**info["provenance"], "val_manifest_sha256": "f" * 64})
    with pytest.raises(CheckpointError, match="val_manifest_sha256 differ .* souped"):
        average_checkpoints([parent, other_val], one_run=False)


def test_recipe_soup_records_its_ingredients(sbi_work, tmp_path):
    best = sbi_work / "run" / "best.safetensors"
    child = _fine_tune(best, sbi_work / "child" / "best.safetensors", data="c", scale=0.01, seed=3)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "build_detector.py"
    cmd = [sys.executable, str(recipe), "average", "--work", str(sbi_work), "--run", "soup", "--soup",
           "--weights", "1", "1", "--val", str(sbi_work / "val.csv"), str(best), str(child)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    prov = load_checkpoint(sbi_work / "soup" / "best.safetensors", deploy=False)[2]["provenance"]
    assert prov["average_kind"] == "soup of fine-tunes of one parent"
    assert [(f["file"], f["weight"], f["train_manifest"]) for f in prov["averaged_from"]] == [
        ("run/best.safetensors", 0.5, "manifest.csv"), ("child/best.safetensors", 0.5, "c.csv")]
