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
    from scanner.options import ScanOptions
    from scanner.resources import WORKER_MEMORY, resource_plan

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
    from scanner.resources import available_memory

    import os

    free = available_memory()
    assert free is not None and 16 * MiB < free <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_scan_lowers_workers_to_the_files_and_says_so(tmp_path, tiny_checkpoint, shared_cache, capfd):
    from scanner.pipeline import scan

    shutil.copy(IMAGES / "single_face.jpg", tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("not media: skipped, so not a file to scan\n")
    result = scan([tmp_path], scan_options(tiny_checkpoint, workers=64, frames=2))
    assert result["summary"]["workers"] == 1 and result["summary"]["files"] == 1
    err = capfd.readouterr().err
    assert "note: --workers 64 lowered to 1 (1 file to scan)" in err
