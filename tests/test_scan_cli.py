"""`dfscan scan` as a user runs it: a real subprocess, exit codes, formats, no tracebacks."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scanner import report as rp
from tests.test_pipeline import IMAGES, make_broken_inputs

COLOR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7])m")


def dfscan(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "160", **(env or {})}
    return subprocess.run([sys.executable, "-c", "from scanner.cli import app; app()", *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=timeout)


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    return {"DFSCAN_CACHE": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(IMAGES / "single_face.jpg", folder / "one.jpg")
    shutil.copy(IMAGES / "45-m7-di-ph.jpg", folder / "two.jpg")
    return folder


def _common(weights: Path) -> list[str]:
    return ["--weights", weights, "--backend", "torch", "--workers", "1", "--frames", "4"]


@pytest.mark.slow  # ~25 s: two workers and a first-use ONNX export
def test_broken_inputs_exit_3_without_traceback(tmp_path, images, tiny_checkpoint, cache_env):
    broken = make_broken_inputs(images / "broken")
    out = tmp_path / "out.json"
    r = dfscan("scan", images, "--report", out, *_common(tiny_checkpoint), "--backend", "onnxruntime",
               "--workers", "2", env={**cache_env, "NO_COLOR": "1"})
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    report = json.loads(out.read_text())
    rp.validate_report(report)
    assert report["backend"]["name"] == "onnxruntime"
    by_status = {Path(i["path"]).name: i["status"] for i in report["items"]}
    assert by_status["one.jpg"] == by_status["two.jpg"] == "ok"
    assert sum(s == "error" for s in by_status.values()) == len(broken)
    assert "could not read" in r.stdout and "empty" in r.stdout
    # the stream beside the report holds every item, one line each
    stream = rp.read_report(rp.stream_path_for(out))
    assert len(stream["items"]) == len(report["items"])


def test_fail_on_fake_and_threshold(tmp_path, images, tiny_checkpoint):
    out = tmp_path / "out.json"
    r = dfscan("scan", images, "--report", out, *_common(tiny_checkpoint), "--threshold", "0", "--fail-on-fake", "--quiet")
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""  # --quiet: no summary, but one line says why the exit code is 1
    assert r.stderr.strip().splitlines() == [f"--fail-on-fake: 2 file(s) judged fake (see {out})"]
    report = json.loads(out.read_text())
    assert report["summary"]["fakes"] == 2 and report["model"]["threshold"] == 0
    r = dfscan("scan", images, "--report", out, *_common(tiny_checkpoint), "--threshold", "1", "--fail-on-fake", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["summary"]["fakes"] == 0


def test_csv_and_jsonl_formats_and_stdout(tmp_path, images, tiny_checkpoint):
    out = tmp_path / "out.csv"
    r = dfscan("scan", images, "--report", out, *_common(tiny_checkpoint), "--quiet")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sorted(Path(row["path"]).name for row in rows) == ["one.jpg", "two.jpg"]
    assert all(row["status"] == "ok" and row["subject_id"] == "0" for row in rows)

    out = tmp_path / "out.txt"
    r = dfscan("scan", images, "--report", out, "--format", "jsonl", *_common(tiny_checkpoint), "--quiet")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["schema"] == "dfscan.report/1" and "summary" in lines[-1] and len(lines) == 4
    rp.validate_report(rp.read_report(out))

    r = dfscan("scan", images / "one.jpg", *_common(tiny_checkpoint))  # no --report: JSON on stdout
    assert r.returncode == 0, r.stderr
    rp.validate_report(json.loads(r.stdout))
    assert "dfscan scan" in r.stderr  # the summary table moved to stderr


def test_summary_shows_threshold_caveat_skipped_files_and_odd_crops(tmp_path, images, tiny_checkpoint):
    from train.checkpoint import load_checkpoint, save_checkpoint

    model, cfg, info = load_checkpoint(tiny_checkpoint)
    weights = save_checkpoint(tmp_path / "research.safetensors", model, cfg, threshold=0.5,
                              caveat="Research use only: a test caveat.")
    (images / "notes.txt").write_text("not media")
    shutil.copy(IMAGES / "group_sample1.jpg", images / "group.jpg")  # a 1920-wide photo, not a crop
    out = tmp_path / "out.json"
    r = dfscan("scan", images, "--report", out, *_common(weights), "--crops", env={"NO_COLOR": "1"})
    assert r.returncode == 0, r.stderr
    assert "(fake when p_fake >= 0.5)" in r.stdout and "Research use only: a test caveat." in r.stdout
    assert "1 other file(s) skipped" in r.stdout
    assert "--crops: 1 input(s) do not look like face crops" in r.stderr and "group.jpg" in r.stderr
    report = json.loads(out.read_text())
    rp.validate_report(report)
    assert report["model"]["caveat"] == "Research use only: a test caveat."


def test_resume_from_cli(tmp_path, images, tiny_checkpoint):
    out = tmp_path / "out.json"
    assert dfscan("scan", images, "--report", out, *_common(tiny_checkpoint), "--quiet").returncode == 0
    shutil.copy(IMAGES / "0-f1-su-ph.jpg", images / "three.jpg")
    r = dfscan("scan", images, "--report", out, *_common(tiny_checkpoint), "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads(out.read_text())["summary"]
    assert summary["resumed"] == 2 and summary["files"] == 3
    r = dfscan("scan", images, "--report", out, *_common(tiny_checkpoint), "--resume", "--frames", "8")
    assert r.returncode == 2 and "settings changed (frames)" in r.stderr and "Traceback" not in r.stderr


def test_usage_errors_are_one_line_exit_2(tmp_path, images, tiny_checkpoint):
    r = dfscan("scan", tmp_path / "missing.mp4", *_common(tiny_checkpoint))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error:" in r.stderr
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not weights")
    r = dfscan("scan", images, "--weights", bad, "--backend", "torch")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error:" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = dfscan("scan", empty, *_common(tiny_checkpoint))
    assert r.returncode == 2 and "no video or image files" in r.stderr


def test_help_has_examples():
    r = dfscan("scan", "--help")
    assert r.returncode == 0
    assert "dfscan scan ./uploads --report out.json" in r.stdout
    for option in ("--fail-on-fake", "--crops", "--resume", "--strategy", "--timeout", "--face-model"):
        assert option in r.stdout
    flags = [line for line in r.stdout.splitlines() if "--resume" in line or "--fail-on-fake" in line]
    assert flags and not any("<bool>" in line for line in flags)  # a flag takes no value: none shown


def test_no_color_is_honoured(tmp_path, images, tiny_checkpoint):
    args = ["scan", images, "--report", tmp_path / "o.json", *_common(tiny_checkpoint), "--threshold", "0"]
    colored = dfscan(*args, env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    assert colored.returncode == 0, colored.stderr
    assert COLOR.search(colored.stdout), "the check cannot fail unless colour is on without NO_COLOR"
    plain = dfscan(*args, env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"})
    assert plain.returncode == 0
    assert not COLOR.search(plain.stdout + plain.stderr)
