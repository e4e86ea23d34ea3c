"""recipes/build_detector.py on bad input: one line saying what is wrong, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "build_detector.py"


def _recipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPE), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,says", [
    (["train"], "no prepare.json; run `python recipes/build_detector.py prepare` first"),
    (["train", "--resume", "--init-from", "x.safetensors"], "drop --init-from"),
    (["ablation", "--dry-run"], "no prepare.json"),
    (["prepare", "--dfdc", "{w}/dfdc", "--utkface", "{w}", "--reserved", "{w}"], "not found: {w}/dfdc/metadata.csv"),
])
def test_bad_input_is_one_line(tmp_path, args, says):
    r = _recipe(*[a.format(w=tmp_path) for a in args], "--work", str(tmp_path / "work"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert says.format(w=tmp_path) in r.stderr


def test_prepare_names_missing_metadata_columns(tmp_path):
    (tmp_path / "dfdc" / "faces_224").mkdir(parents=True)
    (tmp_path / "dfdc" / "metadata.csv").write_text("videoname,label\na.mp4,REAL\n")
    for name in ("dfdc_sources.txt", "utkface.txt"):
        (tmp_path / name).write_text("")
    r = _recipe("prepare", "--dfdc", str(tmp_path / "dfdc"), "--utkface", str(tmp_path), "--reserved",
                str(tmp_path), "--work", str(tmp_path / "work"))
    assert r.returncode == 1 and "Traceback" not in r.stderr and "no original column" in r.stderr
    assert not (tmp_path / "work").exists()  # nothing written before the inputs are known good


def test_a_failing_dfscan_step_ends_the_recipe_without_a_traceback(tmp_path):
    (tmp_path / "prepare.json").write_text('{"size": 64}')  # prepared, but no manifests
    r = _recipe("train", "--work", str(tmp_path), "--epochs", "1")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "train.csv" in r.stderr  # dfscan train's own one-line error
