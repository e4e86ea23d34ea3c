"""The training loop: short CPU runs on generated crops, both backbones, SBI, resume, outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dfscan.core.errors import InputError
from dfscan.train.checkpoint import load_checkpoint, read_metadata
from dfscan.train.choices import OPTIMIZER_NAMES
from dfscan.train.loop import COSINE_FLOOR, OPTIMIZERS, scheduled_lr, train
from dfscan.train.model import PGFDD, PGFDDDeploy
from tests.helpers import make_crops, read_rows
from tests.helpers import train_options as _opts


@pytest.fixture(scope="module")
def grouped(tmp_path_factory) -> tuple[Path, Path]:
    """Two balanced groups (each real/fake pair shares one), shown by the background tone."""
    root = tmp_path_factory.mktemp("grouped")
    groups = ["g0" if (i // 2) % 2 == 0 else "g1" for i in range(16)]
    return make_crops(root / "train", 16, seed=0, groups=groups), make_crops(root / "val", 8, seed=1, groups=groups[:8])


@pytest.mark.slow
@pytest.mark.parametrize("backbone,no_sam", [("efficientnet_lite0", False), ("xception", True)])
def test_two_epochs_lower_the_loss_and_write_outputs(grouped, tmp_path, backbone, no_sam):
    """Each epoch covers the same 16 crops in 4 batches (no augmentation), so the epoch means
    compare like with like."""
    torch.manual_seed(0)
    lines: list[str] = []
    best = train(_opts(grouped, tmp_path / "run", backbone=backbone, no_sam=no_sam, fp16_deploy=True,
                       batch_size=4, max_steps_per_epoch=None, augment=False),
                 progress=False, log=lines.append)
    rows = read_rows(tmp_path / "run" / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["steps"] == "4" for r in rows)
    # the reconstruction term falls steadily; LDAM at s=30 on 2 groups is too noisy over 8 steps
    # under SAM to ask the same of the total
    assert float(rows[1]["loss_rec"]) < float(rows[0]["loss_rec"])
    if no_sam:
        assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    for r in rows:  # validation ran on 8 crops with groups: detection and fairness metrics
        assert r["val_n"] == "8" and 0.0 <= float(r["val_auc"]) <= 1.0 and r["F_FPR"] != ""
    best_epoch = max(rows, key=lambda r: float(r["val_auc"]))
    model, cfg, info = load_checkpoint(best, deploy=False)
    assert isinstance(model, PGFDD) and cfg.backbone == backbone
    assert cfg.group_names == ["g0", "g1"] and cfg.method_names == ["real", "fake"]
    assert info["threshold"] == pytest.approx(float(best_epoch["threshold"]), rel=1e-5)
    assert info["provenance"]["sam"] is (not no_sam) and info["provenance"]["group_counts"] == [8, 8]
    dep, _, dinfo = load_checkpoint(best.with_name("best_deploy.safetensors"))
    assert isinstance(dep, PGFDDDeploy) and dinfo["kind"] == "deploy"
    assert read_metadata(best.with_name("best_deploy.safetensors"))["dtype"] == "float16"
    assert cfg.input_size == 64 and info["provenance"]["threshold_policy"].startswith("lowest threshold with FPR <= 0.05")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(dep(x), model(x, inference=True)["prob"], atol=2e-3, rtol=0)
    lines = [ln for ln in lines if " s/step, " not in ln]  # a minute's progress line: only on a loaded machine
    assert len(lines) == 5 and "val AUC" in lines[1] and "AUC by method" in lines[2]  # start, 2 x (epoch, breakdown)


def test_pseudo_fakes_sbi_from_real_only_manifest_cli(tmp_path):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    tr = make_crops(tmp_path / "train", 8, seed=2, fakes=False)
    va = make_crops(tmp_path / "val", 4, seed=3, fakes=False)
    out = tmp_path / "run"
    args = ["train", "--train", str(tr), "--val", str(va), "--out", str(out), "--epochs", "1",
            "--batch-size", "4", "--max-steps-per-epoch", "2", "--no-pretrained", "--no-sam", "--input-size", "64",
            "--pseudo-fakes", "sbi", "--optimizer", "adam", "--lr", "1e-3", "--workers", "1", "--device", "cpu", "--quiet"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = read_rows(out / "metrics.csv")
    assert rows[0]["val_n"] == "8"  # 4 real crops + their 4 seeded pseudo-fakes
    _, cfg, info = load_checkpoint(out / "best.safetensors", deploy=False)
    assert cfg.method_names == ["real", "sbi"] and cfg.group_names == ["female|asian", "female|white", "male|asian", "male|white"]
    assert info["provenance"]["pseudo_fakes"] == "sbi" and info["provenance"]["options"]["optimizer"] == "adam"
    # without pseudo-fakes a real-only manifest cannot train: one line, exit 2
    plain = [a for a in args if a not in ("--pseudo-fakes", "sbi", "--optimizer", "adam")]
    plain[plain.index(str(out))] = str(tmp_path / "run2")
    r = CliRunner().invoke(app, plain)
    assert r.exit_code == 2 and "no fake rows" in r.output


def test_resume_continues_after_the_last_epoch(crop_sets, tmp_path):
    out = tmp_path / "run"
    train(_opts(crop_sets, out, epochs=1, max_steps_per_epoch=2, no_sam=True), progress=False)
    first = load_checkpoint(out / "last.safetensors", deploy=False)[0].state_dict()
    with pytest.raises(InputError, match="already holds a training run"):
        train(_opts(crop_sets, out, epochs=2, max_steps_per_epoch=2, no_sam=True), progress=False)
    train(_opts(crop_sets, out, epochs=2, max_steps_per_epoch=2, no_sam=True, resume=True), progress=False)
    rows = read_rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    second = load_checkpoint(out / "last.safetensors", deploy=False)[0].state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first)  # trained on from epoch 1's weights
    with pytest.raises(InputError, match="already finished 2 epoch"):
        train(_opts(crop_sets, out, epochs=2, no_sam=True, resume=True), progress=False)
    with pytest.raises(InputError, match="nothing to resume"):
        train(_opts(crop_sets, tmp_path / "empty", resume=True), progress=False)


@pytest.mark.parametrize("optimizer,lr,schedule", [("sgd", 0.02, "constant"), ("adam", 1e-3, "cosine")])
def test_resume_restores_optimizer_and_matches_an_uninterrupted_run(crop_sets, tmp_path, optimizer, lr, schedule):
    """1 epoch + resume to 2 gives the same weights as 2 epochs straight (momentum or Adam's
    moments and step count, RNG and the point on the learning-rate curve restored)."""
    kw = dict(max_steps_per_epoch=1, no_sam=True, augment=False, optimizer=optimizer, lr=lr, lr_schedule=schedule)
    train(_opts(crop_sets, tmp_path / "a", epochs=2, **kw), progress=False)
    train(_opts(crop_sets, tmp_path / "b", epochs=1, **kw), progress=False)
    train(_opts(crop_sets, tmp_path / "b", epochs=2, resume=True, **kw), progress=False)
    a = load_checkpoint(tmp_path / "a" / "last.safetensors", deploy=False)[0].state_dict()
    b = load_checkpoint(tmp_path / "b" / "last.safetensors", deploy=False)[0].state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_cosine_schedule_decays_from_lr_to_the_floor():
    lrs = [scheduled_lr(1e-3, "cosine", s, 11) for s in range(11)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-3 * COSINE_FLOOR)
    assert lrs[5] == pytest.approx(1e-3 * (1 + COSINE_FLOOR) / 2)  # halfway: the mean of both ends
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert scheduled_lr(1e-3, "cosine", 50, 11) == pytest.approx(1e-3 * COSINE_FLOOR)  # past the end: stays low
    assert {scheduled_lr(1e-3, "constant", s, 11) for s in range(11)} == {1e-3}


def test_cosine_run_logs_the_decayed_lr(crop_sets, tmp_path):
    train(_opts(crop_sets, tmp_path / "r", epochs=2, max_steps_per_epoch=2, no_sam=True, lr=0.01, lr_schedule="cosine"),
          progress=False)
    lrs = [float(r["lr"]) for r in read_rows(tmp_path / "r" / "metrics.csv")]
    # 4 steps in all: epoch 1 ends on step 2 (t = 1/3), epoch 2 on step 4 (t = 1, the floor)
    assert lrs == pytest.approx([scheduled_lr(0.01, "cosine", 1, 4), 0.01 * COSINE_FLOOR])


def test_bad_options(crop_sets, tmp_path):
    with pytest.raises(InputError, match="pseudo-fakes"):
        train(_opts(crop_sets, tmp_path / "r", pseudo_fakes="gan"), progress=False)
    with pytest.raises(InputError, match="even"):
        train(_opts(crop_sets, tmp_path / "r", batch_size=3), progress=False)
    with pytest.raises(InputError, match="--optimizer must be one of sgd, adam"):
        train(_opts(crop_sets, tmp_path / "r", optimizer="rmsprop"), progress=False)
    with pytest.raises(InputError, match="unknown backbone"):
        train(_opts(crop_sets, tmp_path / "r", backbone="resnet"), progress=False)
    with pytest.raises(InputError, match="--lr-schedule must be one of constant, cosine"):
        train(_opts(crop_sets, tmp_path / "r", lr_schedule="step"), progress=False)
    assert not (tmp_path / "r").exists()
    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES  # every name the options accept has an optimizer


def test_init_from_warm_starts_a_new_run_and_no_fairness_is_recorded(crop_sets, tmp_path):
    first = train(_opts(crop_sets, tmp_path / "a", epochs=1, max_steps_per_epoch=1, no_sam=True), progress=False)
    weights = load_checkpoint(first, deploy=False)[0].state_dict()
    lines: list[str] = []
    best = train(_opts(crop_sets, tmp_path / "b", epochs=1, max_steps_per_epoch=1, no_sam=True, init_from=first,
                       fairness=False, lr=1e-9, optimizer="adam"), progress=False, log=lines.append)
    _, _, info = load_checkpoint(best, deploy=False)
    assert info["provenance"]["init_from"] == first.name and info["provenance"]["fairness_terms"] is False
    after = load_checkpoint(tmp_path / "b" / "last.safetensors", deploy=False)[0].state_dict()
    k = "head_fused.mlp.2.weight"
    torch.testing.assert_close(after[k], weights[k], atol=1e-6, rtol=0)  # started from those weights
    with pytest.raises(InputError, match="pass one"):
        train(_opts(crop_sets, tmp_path / "b", resume=True, init_from=first), progress=False)
    bigger = _opts(crop_sets, tmp_path / "c", epochs=1, max_steps_per_epoch=1, no_sam=True, init_from=first)
    bigger.input_size = 96  # a warm start may change the input size: the weights are size-independent
    assert load_checkpoint(train(bigger, progress=False), deploy=False)[1].input_size == 96
    with pytest.raises(InputError, match="another backbone, input size"):
        train(_opts(crop_sets, tmp_path / "c", resume=True), progress=False)  # ...a resumed run may not


def test_init_from_reads_group_names_stored_before_the_naming_rule(crop_sets, tmp_path):
    """A checkpoint that stored "female-asian" (training's old "-" join) still warm-starts a run
    on a manifest whose groups now read "female|asian", its fairness head rows in its own order."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    first = train(_opts(crop_sets, tmp_path / "a", epochs=1, max_steps_per_epoch=1, no_sam=True), progress=False)
    with safe_open(str(first), "pt") as fh:
        meta = fh.metadata()
    cfg = json.loads(meta["config"])
    assert cfg["group_names"] == ["female|asian", "female|white", "male|asian", "male|white"]
    cfg["group_names"] = [n.replace("|", "-") for n in reversed(cfg["group_names"])]
    legacy = tmp_path / "legacy.safetensors"
    save_file(load_file(str(first)), str(legacy), metadata={**meta, "config": json.dumps(cfg)})
    best = train(_opts(crop_sets, tmp_path / "b", epochs=1, max_steps_per_epoch=1, no_sam=True, init_from=legacy),
                 progress=False)
    _, saved, _ = load_checkpoint(best, deploy=False)
    assert saved.group_names == ["male|white", "male|asian", "female|white", "female|asian"]


def test_real_only_run_warm_starts_from_a_model_that_saw_fakes(crop_sets, tmp_path):
    """Real rows + SBI (methods real, sbi) continue a checkpoint whose methods were real, fake_1, sbi:
    its method head keeps its rows; video augmentation is accepted and a bad probability is not."""
    first = train(_opts(crop_sets, tmp_path / "a", epochs=1, max_steps_per_epoch=1, no_sam=True,
                        pseudo_fakes="sbi"), progress=False)
    methods = load_checkpoint(first, deploy=False)[1].method_names
    assert len(methods) == 3 and methods[-1] == "sbi"
    reals = make_crops(tmp_path / "reals", 8, seed=3, fakes=False)
    best = train(_opts((reals, crop_sets[1]), tmp_path / "b", epochs=1, max_steps_per_epoch=1, no_sam=True,
                       pseudo_fakes="sbi", init_from=first, video_aug=1.0), progress=False)
    assert load_checkpoint(best, deploy=False)[1].method_names == methods
    with pytest.raises(InputError, match="--video-aug must be a probability"):
        train(_opts(crop_sets, tmp_path / "c", video_aug=float("nan")), progress=False)


def test_progress_lines_when_not_on_a_terminal(crop_sets, tmp_path, monkeypatch):
    import dfscan.train.loop as loop

    monkeypatch.setattr(loop, "LOG_EVERY_S", 0.0)
    lines: list[str] = []
    train(_opts(crop_sets, tmp_path / "r", epochs=1, max_steps_per_epoch=2, no_sam=True), progress=True, log=lines.append)
    steps = [ln for ln in lines if "s/step" in ln]
    assert steps and steps[0].startswith("epoch 1: step 1/2") and "min left" in steps[0]


def test_missing_imagenet_weights_stop_training(crop_sets, tmp_path, monkeypatch):
    import importlib

    lite0 = importlib.import_module("dfscan.train.backbones.efficientnet_lite0")  # the module, not the factory
    monkeypatch.setattr(lite0, "imagenet_weights_path", lambda: None)
    with pytest.raises(InputError, match=r"dfscan\[train\].*--no-pretrained"):
        train(_opts(crop_sets, tmp_path / "r", pretrained=True), progress=False)
    assert not (tmp_path / "r").exists()


def test_validation_fairness_ignores_rows_without_a_group():
    """DFDC-style rows carry no demographic label: the gaps are over the labelled rows only."""
    import numpy as np

    from dfscan.core.metrics import fairness_metrics
    from dfscan.train.loop import validation_metrics

    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    p = np.array([0.1, 0.9, 0.6, 0.8, 0.2, 0.3, 0.9, 0.95])
    groups = ["a", "a", "b", "b", None, None, None, None]
    vm = validation_metrics(y, p, groups, "eer")
    ref = fairness_metrics(y[:4], p[:4], ["a", "a", "b", "b"], vm["threshold"])
    assert vm["F_FPR"] == pytest.approx(ref["F_FPR"]) and vm["val_n"] == 8
    assert "F_FPR" not in validation_metrics(y, p, ["a"] * 4 + [None] * 4, "eer")  # one group: no gap


def test_method_metrics_pit_each_methods_fakes_against_every_real():
    from dfscan.core.metrics import method_metrics

    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.8, 0.25, 0.35])
    m = ["real", "x", "", "real", "faceswap", "faceswap", "reenact", "reenact"]
    t = method_metrics(y, p, m, threshold=0.5)
    assert list(t) == ["faceswap", "reenact"]  # reals' own method values are not methods
    assert t["faceswap"]["auc"] == 1.0 and t["faceswap"]["tpr"] == 1.0 and t["faceswap"]["n"] == 6
    assert t["reenact"]["auc"] == pytest.approx(5 / 8)  # 5 of 8 (fake, real) pairs ordered right and t["reenact"]["tpr"] == 0.0


def test_validation_breakdown_by_method_and_domain(tmp_path):
    """Validation writes AUC per forgery method (SBI pseudo-fakes as "sbi") and per domain."""
    root = tmp_path / "d"
    train_csv, val_csv = make_crops(root / "train", 16, seed=0), make_crops(root / "val", 12, seed=1)
    rows = read_rows(val_csv)
    for i, r in enumerate(rows):
        r["method"] = "real" if r["label"] == "real" else ("swap" if i % 4 == 1 else "reenact")
        r["domain"] = "setA" if i < 6 else "setB"
    with open(val_csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "run"
    train(_opts((train_csv, val_csv), out, epochs=1, max_steps_per_epoch=1, no_sam=True, pseudo_fakes="sbi"),
          progress=False)
    line = json.loads((out / "breakdown.jsonl").read_text().splitlines()[0])
    assert line["epoch"] == 1
    assert set(line["by_method"]) == {"reenact", "sbi", "swap"}
    assert line["by_method"]["sbi"]["n_pos"] == 6 and line["by_method"]["swap"]["n_pos"] == 3
    assert all(v["n_neg"] == 6 for v in line["by_method"].values())  # every real in each
    assert set(line["by_domain"]) == {"setA", "setB"}
    assert sum(v["n"] for v in line["by_domain"].values()) == 12 + 6  # rows + one pseudo-fake per real
    meta = read_metadata(out / "best.safetensors")
    assert set(json.loads(meta["provenance"])["auc_by"]["by_method"]) == {"reenact", "sbi", "swap"}
    # the best epoch's scores, one line per validation item, for comparing runs without rescoring
    with open(out / "val_predictions.csv", newline="") as fh:
        preds = list(csv.DictReader(fh))
    assert len(preds) == 12 + 6
    assert sum(r["pseudo_fake"] == "1" for r in preds) == 6 and {r["method"] for r in preds if r["pseudo_fake"] == "1"} == {"sbi"}
    assert all(0.0 <= float(r["p_fake"]) <= 1.0 for r in preds)
    assert [r["label"] for r in preds if r["pseudo_fake"] == "0"] == ["0" if r["label"] == "real" else "1" for r in rows]


def _photos(root: Path, n: int = 8) -> Path:
    """A manifest of n 320x180 pictures (whole frames, not face crops), half fakes."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        cv2.imwrite(str(root / f"photo{i}.png"), rng.integers(0, 255, (180, 320, 3), dtype=np.uint8))
        rows.append({"path": f"photo{i}.png", "label": "fake" if i % 2 else "real"})
    with open(root / "photos.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label"])
        w.writeheader()
        w.writerows(rows)
    return root / "photos.csv"


def test_whole_photos_instead_of_crops_get_a_one_line_warning(crop_sets, tmp_path):
    from typer.testing import CliRunner

    from dfscan.scanner.cli import app
    from dfscan.train.data import read_manifest
    from dfscan.train.loop import crops_warning

    photos = _photos(tmp_path / "photos")
    line = crops_warning("--train", read_manifest(photos))
    assert line.startswith("--train: 8 of 8 sampled images do not look like face crops (e.g. photo0.png, 320x180)")
    assert "dfscan extract-faces" in line
    assert crops_warning("--train", read_manifest(crop_sets[0])) is None  # extract-faces-like crops: silent
    # the CLI says it before any slow work (here the run stops at once: --out already holds a run)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("epoch\n")
    r = CliRunner().invoke(app, ["train", "--train", str(photos), "--val", str(crop_sets[1]), "--out", str(out),
                                 "--no-pretrained", "--quiet"])
    assert r.exit_code == 2, r.output
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "--train: 8 of 8 sampled images do not look like face crops" in warnings[0]
