"""Issue 30, items 9, 10, 15, 16: worker counts a machine can hold, checkpoint metadata checked
at load, train/val manifests that overlap, nan/inf audit features and build-engine outputs
checked before the export. Real inputs (the tiny fixture checkpoint rewritten, generated
images), no mocks of the code under test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import IMAGES, scan_options

runner = CliRunner()


def one_error_line(r) -> str:
    """The CLI's answer to bad input: exit 2 and one `error:` line, no traceback."""
    err = r.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    assert r.exit_code == 2, (r.stdout, err, r.exception)
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err + r.stdout
    return lines[0]


# ---------------------------------------------------------------- 9. worker counts

MiB = 1 << 20


def test_worker_plan_caps_at_files_and_memory():
    from dfscan.scanner.options import ScanOptions
    from dfscan.scanner.resources import WORKER_MEMORY, resource_plan

    # 40 files, --workers 64, room for 6 ONNX Runtime workers: 6, and the line says why
    plan = resource_plan(ScanOptions(workers=64), 40, "cpu", backend="onnxruntime",
                         available=6 * WORKER_MEMORY["onnxruntime"] + MiB)
    assert plan.workers == 6
    assert plan.note and plan.note.startswith("note: --workers 64 lowered to 6 (") and "memory" in plan.note
    # the same memory holds fewer torch workers (each loads its own model)
    assert resource_plan(ScanOptions(workers=64), 40, "cpu", backend="torch",
                         available=6 * WORKER_MEMORY["onnxruntime"] + MiB).workers == 4
    # plenty of memory, 3 files: 3 workers, the note names the files
    plan = resource_plan(ScanOptions(workers=64), 3, "cpu", available=64 << 30)
    assert (plan.workers, plan.note) == (3, "note: --workers 64 lowered to 3 (3 files to scan)")
    # on a GPU the workers only decode and detect: the smaller footprint
    assert resource_plan(ScanOptions(workers=64), 40, "cuda:0", available=10 * WORKER_MEMORY["decode"]).workers == 10
    # what was asked for and fits: no note; the default trimmed to one file: nothing to explain
    assert resource_plan(ScanOptions(workers=2), 5, "cpu", available=64 << 30).note is None
    plan = resource_plan(ScanOptions(), 1, "cpu", available=64 << 30)
    assert (plan.workers, plan.note) == (1, None)
    # too little memory for even one: one worker, never zero
    assert resource_plan(ScanOptions(workers=4), 4, "cpu", available=MiB).workers == 1


def test_available_memory_reads_this_machine():
    import os

    from dfscan.scanner.resources import available_memory

    free = available_memory()
    assert free is not None and 16 * MiB < free <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_scan_lowers_workers_to_the_files_and_says_so(tmp_path, tiny_checkpoint, shared_cache, capfd):
    from dfscan.scanner.pipeline import scan

    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("not media: skipped, so not a file to scan\n")
    result = scan([tmp_path], scan_options(tiny_checkpoint, workers=64, frames=2))
    assert result["summary"]["workers"] == 1 and result["summary"]["files"] == 1
    err = capfd.readouterr().err
    assert "note: --workers 64 lowered to 1 (1 file to scan)" in err


# ---------------------------------------------------------------- 10. checkpoint metadata

def rewrite_metadata(src: Path, dst: Path, *, config_keys: dict | None = None, **fields: str | None) -> Path:
    """A copy of checkpoint `src` (same tensors) whose metadata has `fields` replaced (None: removed)
    and, within its config, `config_keys` replaced."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(src), framework="numpy") as f:
        meta = dict(f.metadata())
    if config_keys:
        meta["config"] = json.dumps({**json.loads(meta["config"]), **config_keys})
    for key, value in fields.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


BAD_METADATA = {  # id: (metadata changes, the field the error names)
    "input-size-huge": ({"config_keys": {"input_size": 20000}}, "input_size"),
    "input-size-tiny": ({"config_keys": {"input_size": 8}}, "input_size"),
    "input-size-text": ({"config_keys": {"input_size": "abc"}}, "input_size"),
    "input-size-float": ({"config_keys": {"input_size": 128.5}}, "input_size"),
    "input-size-bool": ({"config_keys": {"input_size": True}}, "input_size"),
    "threshold-5": ({"threshold": "5"}, "threshold"),
    "threshold-negative": ({"threshold": "-1"}, "threshold"),
    "threshold-nan": ({"threshold": "nan"}, "threshold"),
    "threshold-inf": ({"threshold": "inf"}, "threshold"),
    "threshold-text": ({"threshold": "abc"}, "threshold"),
    "threshold-missing": ({"threshold": None}, "threshold"),
    "config-list": ({"config": "[]"}, "config"),
    "config-not-json": ({"config": "{not json"}, "config"),
    "config-missing": ({"config": None}, "config"),
    "config-deep": ({"config": "[" * 100000 + "]" * 100000}, "config"),
    "config-unknown-key": ({"config_keys": {"bogus": 1}}, "bogus"),
    "backbone-unknown": ({"config_keys": {"backbone": "resnet50"}}, "backbone"),
    "backbone-not-text": ({"config_keys": {"backbone": 3}}, "backbone"),
    "mean-short": ({"config_keys": {"mean": [0.5, 0.5]}}, "mean"),
    "mean-nan": ({"config_keys": {"mean": [0.5, "nan", 0.5]}}, "mean"),
    "std-zero": ({"config_keys": {"std": [0.5, 0.0, 0.5]}}, "std"),
    "heads-negative": ({"config_keys": {"num_fair": -1}}, "num_fair"),
    "heads-huge": ({"config_keys": {"num_spe": 10 ** 9}}, "num_spe"),
    "channels-huge": ({"config_keys": {"feature_channels": 10 ** 7}}, "feature_channels"),
    "group-names-text": ({"config_keys": {"group_names": "abc"}}, "group_names"),
    "provenance-list": ({"provenance": "[]"}, "provenance"),
    "kind-unknown": ({"kind": "trainer"}, "kind"),
    "dtype-unknown": ({"dtype": "int8"}, "dtype"),
    "deploy-graph-unknown": ({"deploy_graph": "three_pass"}, "deploy_graph"),
}


@pytest.fixture(scope="module")
def bad_checkpoints(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-meta")
    return {name: rewrite_metadata(tiny_checkpoint, root / f"{name}.safetensors", **change)
            for name, (change, _field) in BAD_METADATA.items()}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_scan_refuses_bad_checkpoint_metadata(case, bad_checkpoints, tmp_path):
    from dfscan.scanner.cli import app

    field = BAD_METADATA[case][1]
    r = runner.invoke(app, ["scan", str(IMAGES / "single_face.jpg"), "--weights", str(bad_checkpoints[case]),
                            "--backend", "torch", "--workers", "1", "--quiet", "--report", str(tmp_path / "r.json")])
    line = one_error_line(r)
    assert field in line and "metadata" in line, line
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("case", ["input-size-huge", "input-size-text", "threshold-nan", "config-list", "mean-short"])
def test_doctor_names_the_bad_metadata_field(case, bad_checkpoints):
    import json

    from dfscan.scanner.cli import app

    r = runner.invoke(app, ["doctor", "--weights", str(bad_checkpoints[case]), "--json"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    weights = json.loads(r.stdout)["weights"]
    assert weights["ok"] is False and BAD_METADATA[case][1] in weights["problem"]


def test_every_loader_checks_metadata(bad_checkpoints):
    """The torch loader, the torch-free reader and the config reader refuse alike (one check at read)."""
    from dfscan.core.errors import CheckpointError
    from dfscan.train.checkpoint import load_checkpoint
    from dfscan.train.checkpoint_info import CheckpointInfo, read_model_config

    bad = bad_checkpoints["input-size-huge"]
    for load in (load_checkpoint, CheckpointInfo.read, read_model_config):
        with pytest.raises(CheckpointError, match="input_size"):
            load(bad)


def test_good_metadata_still_loads(tiny_checkpoint, tmp_path):
    """Optional fields absent, boundary values: still a checkpoint."""
    from dfscan.train.checkpoint_info import CheckpointInfo

    ok = rewrite_metadata(tiny_checkpoint, tmp_path / "ok.safetensors", threshold="1.0", provenance=None, dtype=None,
                          deploy_graph=None, deploy_note=None)
    info = CheckpointInfo.read(ok)
    assert info.threshold == 1.0 and info.input_size == 128


def test_train_refuses_an_input_size_no_checkpoint_loader_takes(tmp_path):
    """Training at 2048 px would write a checkpoint that every loader refuses (config.input_size)."""
    from dfscan.core.errors import InputError
    from tests.helpers import train_options

    with pytest.raises(InputError, match="--input-size must be a multiple of 32 from 64 to 1024"):
        train_options((tmp_path / "t.csv", tmp_path / "v.csv"), tmp_path / "out", input_size=2048).check()


# ---------------------------------------------------------------- 15. train/val overlap

@pytest.fixture(scope="module")
def small_sets(tmp_path_factory) -> tuple[Path, Path]:
    """Two disjoint generated manifests (6 and 4 crops, half fakes)."""
    from tests.helpers import make_crops

    root = tmp_path_factory.mktemp("sets")
    return make_crops(root / "train", 6, seed=0), make_crops(root / "val", 4, seed=1)


def train_cli(train: Path, val: Path, out: Path, *extra: str):
    from dfscan.scanner.cli import app

    return runner.invoke(app, ["train", "--train", str(train), "--val", str(val), "--out", str(out), "--no-pretrained",
                               "--epochs", "1", "--batch-size", "2", "--max-steps-per-epoch", "1", "--input-size", "64",
                               "--device", "cpu", "--workers", "0", "--quiet", *extra])


def test_train_refuses_the_same_manifest_for_val(small_sets, tmp_path):
    r = train_cli(small_sets[0], small_sets[0], tmp_path / "run")
    line = one_error_line(r)
    assert "6 validation row(s) are training images" in line and "same file" in line and "--allow-overlap" in line
    assert not (tmp_path / "run").exists()


def test_train_refuses_val_rows_that_are_copies_of_training_images(small_sets, tmp_path):
    """Other names, other folder, same bytes: still the training images."""
    import csv

    train, _ = small_sets
    rows = list(csv.DictReader(train.open()))
    (tmp_path / "copies").mkdir()
    for i, row in enumerate(rows[:2] + rows[3:5]):  # two reals, two fakes
        shutil.copy(train.parent / row["path"], tmp_path / "copies" / f"v{i}.png")
        row["path"] = f"copies/v{i}.png"
    val = tmp_path / "val.csv"
    with val.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[:2] + rows[3:5])
    line = one_error_line(train_cli(train, val, tmp_path / "run"))
    assert "4 validation row(s) are training images" in line and "same content" in line and "v0.png" in line


def test_allow_overlap_gets_past_the_check(small_sets, tmp_path):
    """--allow-overlap: the run goes on (here to the next check: --out already holds a run)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("epoch\n")
    line = one_error_line(train_cli(small_sets[0], small_sets[0], out, "--allow-overlap"))
    assert "already holds a training run" in line


def test_disjoint_manifests_pass(small_sets):
    from dfscan.train.data import check_apart, read_manifest

    check_apart(read_manifest(small_sets[0]), read_manifest(small_sets[1]))  # no overlap: no error


# ---------------------------------------------------------------- 16. audit features, build-engine outputs

@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_audit_refuses_non_finite_feature_values(tmp_path, bad):
    """A nan/inf cell is refused like a non-number (one line, exit 2), never dropped: dropping would
    audit another set than the one given, and inf may well be what separates the fakes."""
    import csv

    import numpy as np
    from PIL import Image

    from dfscan.scanner.cli import app

    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        for label in ("real", "fake"):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{label}{i}.png")
            rows.append([f"{label}{i}.png", label, str(100 + i)])
    rows[3][2] = bad
    with (tmp_path / "labels.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "original_width"], *rows])
    r = runner.invoke(app, ["audit", str(tmp_path / "labels.csv"), "--feature", "original_width", "--bootstrap", "0",
                            "--workers", "1"])
    line = one_error_line(r)
    assert "original_width" in line and "line 5" in line and "finite" in line and bad in line


@pytest.mark.parametrize("fmt, out, why", [
    ("onnx", "dir.onnx", "is a folder"),  # an existing folder where the .onnx file would go
    ("onnx", "file.txt/model.onnx", "is a file"),  # a path under an existing file
    ("onnx", "file.txt", "is a file"),  # a folder argument (model.onnx inside) that is a file
    ("onnx", "weights.safetensors", "is a file"),  # would go inside the checkpoint itself
    ("tensorrt", "file.txt", "is a file"),  # the engine folder is a file (checked before TensorRT is needed)
    ("tensorrt", "file.txt/engine", "is a file"),
], ids=["onnx-existing-folder", "onnx-under-a-file", "onnx-folder-is-a-file", "onnx-inside-the-weights",
        "tensorrt-folder-is-a-file", "tensorrt-under-a-file"])
def test_build_engine_checks_out_before_exporting(tiny_checkpoint, tmp_path, fmt, out, why):
    from dfscan.scanner.cli import app

    (tmp_path / "dir.onnx").mkdir()
    (tmp_path / "file.txt").write_text("keep me\n")
    weights = tmp_path / "weights.safetensors"
    shutil.copy(tiny_checkpoint, weights)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = runner.invoke(app, ["build-engine", "--format", fmt, "--weights", str(weights), "--out", str(tmp_path / out)])
    line = one_error_line(r)
    assert "--out" in line and why in line, line
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing exported, no temporary file left
    assert (tmp_path / "file.txt").read_text() == "keep me\n"


def test_build_engine_refuses_to_export_over_its_weights(tiny_checkpoint, tmp_path):
    from dfscan.scanner.cli import app

    weights = tmp_path / "model.onnx"  # a checkpoint under an .onnx name: --out would replace it
    shutil.copy(tiny_checkpoint, weights)
    r = runner.invoke(app, ["build-engine", "--format", "onnx", "--weights", str(weights), "--out", str(weights)])
    assert "it is an input" in one_error_line(r)
    assert weights.read_bytes() == tiny_checkpoint.read_bytes()
