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

from dfscan.scanner import report as rp
from tests.helpers import FACE_CLIP, IMAGES, damage_packets, face_frame, make_broken_inputs, two_stream_mkv

COLOR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7])m")


# `dfscan` whose scans carry a FaultPlan (the product reads none from the environment): the test passes it in
CLI_WITH_FAULTS = """
import dfscan.scanner.pipeline as pl
from dfscan.scanner.faults import FaultPlan
real = pl.scan_to_report
def with_faults(paths, options, *args, **kwargs):
    options.faults = FaultPlan.parse({plan!r})
    return real(paths, options, *args, **kwargs)
pl.scan_to_report = with_faults
from dfscan.scanner.cli import app
app()
"""


def dfscan(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "160", **(env or {})}
    return subprocess.run([sys.executable, "-c", "from dfscan.scanner.cli import app; app()", *map(str, args)],
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
    from dfscan.train.checkpoint import load_checkpoint, save_checkpoint

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


def test_output_faults_are_one_line_exit_2_before_the_scan(tmp_path, images, tiny_checkpoint):
    """A folder as --report, a parent that is a file, a read-only folder: found before any file
    is scanned (no stream is started), one line, exit 2 (1 means a fake was found)."""
    (tmp_path / "taken.json").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    cases = [(tmp_path / "taken.json", "is a folder"), (tmp_path / "notes.txt" / "out.json", "is not a folder")]
    if os.geteuid() != 0:  # root writes through chmod: there the file-as-parent case stands in for it
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        cases.append((ro / "out.json", "not writable"))
    for out, why in cases:
        r = dfscan("scan", images, "--report", out, *_common(tiny_checkpoint), env={"NO_COLOR": "1"})
        assert r.returncode == 2, (out, r.stderr)
        assert "Traceback" not in r.stderr and why in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.strip().startswith("error: cannot write the report to")
        assert not list(tmp_path.glob("*.stream.jsonl")) and not list(tmp_path.glob("*.lock"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_stdout_is_one_line_exit_2(tmp_path, images, tiny_checkpoint):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-c", "from dfscan.scanner.cli import app; app()", "scan", str(images / "one.jpg"),
                            *map(str, _common(tiny_checkpoint)), "--quiet"],
                           stdout=full, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"}, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == ["error: cannot write the report to <stdout>: No space left on device"]


def _wait_for(check, seconds: float = 240.0) -> None:
    import time

    deadline = time.time() + seconds
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def test_second_writer_is_refused_and_ctrl_c_removes_the_lock(tmp_path, images, tiny_checkpoint):
    import signal

    shutil.copy(IMAGES / "single_face.jpg", images / "z_hang.jpg")  # sorted last: one.jpg and two.jpg finish first
    out = tmp_path / "out.json"
    stream, lock = rp.stream_path_for(out), rp.lock_path_for(out)
    first = subprocess.Popen(
        [sys.executable, "-c", CLI_WITH_FAULTS.format(plan="hang:z_hang.jpg"), "scan", images, "--report", out,
         *map(str, _common(tiny_checkpoint)), "--timeout", "0", "--quiet"],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: first.poll() is not None or (stream.is_file() and len(stream.read_text().splitlines()) == 3))
        assert first.poll() is None, first.communicate()[1]
        before = stream.read_bytes()
        assert json.loads(lock.read_text())["pid"] == first.pid
        second = dfscan("scan", images, "--report", out, *_common(tiny_checkpoint), env={"NO_COLOR": "1"})
        assert second.returncode == 2, second.stderr
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert f"is being written by another scan (pid {first.pid} on " in second.stderr
        assert stream.read_bytes() == before  # the second scan wrote nothing
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err
    assert "Traceback" not in err and "wrote 2 finished items" in err
    report = json.loads(out.read_text())
    assert report["summary"]["interrupted"] is True and report["summary"]["files"] == 2
    assert not lock.exists()


def test_second_ctrl_c_still_writes_the_report(tmp_path, images, tiny_checkpoint, monkeypatch):
    """The first Ctrl-C stops the scan; a second one while it winds down used to end the process
    with no report at all. Both presses are real SIGINTs to this process."""
    import signal

    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    real_write, real_summarize = rp.ReportStream.write_item, rp.summarize

    def write_item(self, item):  # Ctrl-C once the first item is in the stream
        real_write(self, item)
        os.kill(os.getpid(), signal.SIGINT)

    def summarize(*args, **kwargs):  # and again while the report is being put together
        os.kill(os.getpid(), signal.SIGINT)
        return real_summarize(*args, **kwargs)

    monkeypatch.setattr(rp.ReportStream, "write_item", write_item)
    monkeypatch.setattr(rp, "summarize", summarize)
    out = tmp_path / "out.json"
    handler = signal.getsignal(signal.SIGINT)
    result = CliRunner().invoke(app, ["scan", str(images), "--report", str(out), *map(str, _common(tiny_checkpoint)), "--quiet"])
    assert result.exit_code == 130, result.output
    assert "wrote 1 finished items" in result.stderr and "Traceback" not in result.output
    report = json.loads(out.read_text())
    rp.validate_report(report)
    assert report["summary"]["interrupted"] is True and report["summary"]["files"] == 1
    assert not rp.lock_path_for(out).exists()
    assert signal.getsignal(signal.SIGINT) is handler  # put back after the scan


def test_disk_full_at_the_final_write_is_one_line_exit_2_and_resume_finishes(tmp_path, images, tiny_checkpoint, monkeypatch):
    import errno

    from typer.testing import CliRunner

    from dfscan.scanner.cli import app

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rp, "atomic_write_bytes", disk_full)
    out = tmp_path / "out.json"
    args = ["scan", str(images), "--report", str(out), *map(str, _common(tiny_checkpoint)), "--quiet"]
    result = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "400"}).invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write the report to {out}: No space left on device; the finished items are kept in "
        f"{rp.stream_path_for(out)}: make room and rerun with --resume"]
    assert not out.exists() and not rp.lock_path_for(out).exists()
    assert len(rp.read_report(rp.stream_path_for(out))["items"]) == 2
    monkeypatch.undo()
    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["summary"]["resumed"] == 2


def test_damaged_and_odd_media_from_cli(tmp_path, tiny_checkpoint):
    """Issue 11.1 and 11.5 as a user meets them: a damaged packet no longer ends the scan of a
    clip; a mostly undecodable clip is an error `damaged` (exit 3), not a silent ok/no_face;
    16-bit grey PNGs, animated WebPs and a face in a second video stream are all found."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    two_stream_mkv(folder / "two_streams.mkv")
    damage_packets(FACE_CLIP, folder / "one_bad_packet.mp4", lambda i: i == 10)
    damage_packets(FACE_CLIP, folder / "mostly_bad.mp4", lambda i: i >= 10)
    grey = np.asarray(Image.fromarray(face_frame()).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "grey16.png")
    pictures = [Image.fromarray(face_frame(i)) for i in range(0, 72, 6)]
    pictures[0].save(folder / "anim.webp", save_all=True, append_images=pictures[1:], duration=200, quality=90)
    out = tmp_path / "out.json"
    r = dfscan("scan", folder, "--report", out, "--weights", tiny_checkpoint, "--backend", "torch",
               "--workers", "1", "--frames", "8", env={"NO_COLOR": "1"})
    assert r.returncode == 3, r.stderr  # finished, but one input could not be read (trusted)
    assert "Traceback" not in r.stderr + r.stdout
    report = json.loads(out.read_text())
    rp.validate_report(report)
    items = {Path(i["path"]).name: i for i in report["items"]}

    bad = items["mostly_bad.mp4"]
    assert bad["status"] == "error" and bad["error"]["code"] == "damaged"
    assert "of 8 sampled frames could not be decoded" in bad["error"]["message"]
    assert bad["media"]["decode_errors"] >= 5 and bad["media"]["frames_sampled"] + bad["media"]["decode_errors"] == 8
    assert "damaged" in r.stdout  # in the "could not read" table

    one = items["one_bad_packet.mp4"]  # used to be 1 frame at t = 0 with --frames 8
    assert one["status"] == "ok" and one["media"]["frames_sampled"] == 8 and one["media"]["decode_errors"] == 0
    assert max(f["t"] for s in one["subjects"] for f in s["frames"]) > 2.0
    assert one["media"]["stream_index"] == 0

    g16 = items["grey16.png"]
    assert g16["status"] == "ok" and len(g16["subjects"]) == 1 and g16["media"]["stream_index"] is None

    two = items["two_streams.mkv"]  # the face is in the second, larger stream
    assert two["status"] == "ok" and two["media"]["stream_index"] == 1 and two["media"]["width"] == 640

    anim = items["anim.webp"]  # sampled like a video, faces tracked across its frames
    assert anim["status"] == "ok" and anim["media"]["frames_sampled"] == 8
    assert anim["media"]["duration"] == pytest.approx(2.4) and len(anim["subjects"]) == 1
    assert len(anim["subjects"][0]["frames"]) >= 6
