"""extract-faces: crops + training manifest through the scan's decode/detect/track/crop; resume; labels."""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dfscan.core.errors import InputError
from dfscan.scanner.cli import app
from dfscan.scanner.crop import crop_face
from dfscan.scanner.extract import crop_dir_name, extract_faces, parse_kp, read_labels_csv, read_manifest_rows
from dfscan.scanner.faces import FaceDetector
from dfscan.scanner.faults import FaultPlan
from dfscan.scanner.media import iter_frames
from dfscan.scanner.options import ScanOptions
from dfscan.scanner.pipeline import resolve_model, stage_config
from dfscan.scanner.stage import CropSink, process_file

MEDIA = Path(__file__).parent / "data" / "media"
CLIP = MEDIA / "videos" / "single_face.mp4"
GROUP = MEDIA / "images" / "multi_face.jpg"

runner = CliRunner()


@pytest.fixture()
def workdir(tmp_path):
    """A labelled folder: a clip, a group photo, a broken file, and labels.csv beside them."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(CLIP, data / "clip.mp4")
    shutil.copy(GROUP, data / "group.jpg")
    (data / "broken.mp4").write_bytes(b"not a video at all" * 100)
    (data / "labels.csv").write_text(
        "path,label,gender,age\nclip.mp4,real,male,30-39\ngroup.jpg,1,mixed,20-29\nbroken.mp4,fake,female,40-49\n")
    return tmp_path


def read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img[:, :, ::-1]


def test_cli_writes_crops_and_labelled_manifest(workdir):
    data, out, manifest = workdir / "data", workdir / "crops", workdir / "sets" / "train.csv"
    r = runner.invoke(app, ["extract-faces", str(data), "--out", str(out), "--manifest", str(manifest),
                            "--labels", str(data / "labels.csv"), "--frames", "8"])
    assert r.exit_code == 3, r.output  # the broken file is reported, the rest extracted
    assert "broken.mp4" in r.output and "not_media" in r.output and "Traceback" not in r.output
    with manifest.open(newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["path", "label", "gender", "age", "source", "subject", "frame", "kp"]
    rows = read_manifest_rows(manifest)
    clip_rows = [r for r in rows if r["source"].endswith("clip.mp4")]
    group_rows = [r for r in rows if r["source"].endswith("group.jpg")]
    assert len(clip_rows) >= 7 and {r["subject"] for r in clip_rows} == {"0"}  # one man, 8 frames sampled
    assert {(r["label"], r["gender"], r["age"]) for r in clip_rows} == {("real", "male", "30-39")}
    assert len(group_rows) == 5 and {r["subject"] for r in group_rows} == {"0", "1", "2", "3", "4"}
    assert {(r["label"], r["gender"], r["frame"]) for r in group_rows} == {("fake", "mixed", "0")}
    assert not any("broken" in r["source"] for r in rows)
    for row in rows:
        png = manifest.parent / row["path"]  # relative to the manifest's folder
        assert not Path(row["path"]).is_absolute() and png.is_file()
        assert png.parent.parent.resolve() == out.resolve()
        assert png.name == f"s{row['subject']}_f{row['frame']}.png"
        img = read_png(png)
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8
        kp = parse_kp(row["kp"])
        assert kp.shape == (6, 2) and len(row["kp"].split()) == 12
        assert abs(kp[0, 1] - kp[1, 1]) < 0.02 and 40 < kp[0, 0] < kp[1, 0] < 216  # eyes level, inside
    frames = sorted(int(r["frame"]) for r in clip_rows)
    assert len(set(frames)) == len(frames)


def test_crops_are_the_scanners_crops_and_kp_sits_on_the_face(workdir):
    """A crop on disk equals crop_face on the decoded frame; kp matches a fresh detection on it."""
    data, out, manifest = workdir / "data", workdir / "crops", workdir / "m.csv"
    result = extract_faces([data / "clip.mp4"], out, manifest, frames=4)
    assert result.extracted == [data / "clip.mp4"] and result.crops == 4 and not result.skipped
    rows = read_manifest_rows(manifest)
    assert {r["label"] for r in rows} == {"real"} and rows[0]["source"] == "data/clip.mp4"
    frames = {f.index: f.image for f in iter_frames(data / "clip.mp4", frames=4)}
    with FaceDetector() as det:
        for row in rows:
            image = frames[int(row["frame"])]
            (face,) = det.detect(image)
            on_disk = read_png(workdir / row["path"])
            np.testing.assert_array_equal(on_disk, crop_face(image, face.keypoints, face.box))
            (again,) = det.detect(on_disk)
            kp = parse_kp(row["kp"])
            assert np.abs(again.keypoints[:4] - kp[:4]).max() < 0.3 * (kp[1, 0] - kp[0, 0])  # detector noise


def test_training_crops_are_the_scans_crops_for_the_same_frame(workdir, tiny_checkpoint):
    """Each PNG equals the crop the scan's own stage (its config for this model) makes of that subject's frame."""
    data, out, manifest = workdir / "data", workdir / "crops", workdir / "m.csv"
    options = ScanOptions(frames=4, weights=tiny_checkpoint)
    checkpoint = resolve_model(options)[0]
    inputs = [data / "clip.mp4", data / "group.jpg"]
    result = extract_faces(inputs, out, manifest, frames=4, size=checkpoint.input_size)
    assert result.extracted == inputs and not result.skipped
    rows = read_manifest_rows(manifest)
    for path, kind in ((data / "clip.mp4", "video"), (data / "group.jpg", "image")):
        parts: list[np.ndarray] = []
        with FaceDetector() as det:
            payload = process_file(str(path), kind, det, stage_config(options, checkpoint, 32),
                                   CropSink(32, lambda _first, crops: parts.append(crops)))
        crops = np.concatenate(parts)
        scanned = {(str(s["id"]), str(fr["index"])): crops[fr["crop"]] for s in payload["subjects"] for fr in s["frames"]}
        mine = {(r["subject"], r["frame"]): read_png(workdir / r["path"]) for r in rows if r["source"].endswith(path.name)}
        assert sorted(mine) == sorted(scanned) and len(mine) == (4 if kind == "video" else 5)
        for key, crop in scanned.items():
            np.testing.assert_array_equal(mine[key], crop)


def test_crash_and_hang_become_skipped_inputs_with_the_scans_codes(workdir):
    """extract-faces runs on the scan's worker pool: a crashing or hanging file is that file's error alone."""
    data, out, manifest = workdir / "data", workdir / "crops", workdir / "m.csv"
    for name in ("crash.jpg", "hang.jpg"):
        shutil.copy(data / "group.jpg", data / name)
    inputs = [data / "crash.jpg", data / "hang.jpg", data / "clip.mp4", data / "broken.mp4"]
    result = extract_faces(inputs, out, manifest, frames=2, workers=1, timeout=3,
                           faults=FaultPlan.parse("crash:crash.jpg,hang:hang.jpg"))
    codes = {p.name: (code, message) for p, code, message in result.skipped}
    assert codes["crash.jpg"][0] == "worker_crashed" and "SIGSEGV" in codes["crash.jpg"][1]
    assert codes["hang.jpg"][0] == "timeout"
    assert codes["broken.mp4"][0].startswith("not_media")
    assert result.errors == result.skipped and result.extracted == [data / "clip.mp4"]
    rows = read_manifest_rows(manifest)
    assert len(rows) == result.crops == 2 and {r["source"] for r in rows} == {"data/clip.mp4"}
    assert not mp.active_children()
    # the failed inputs are not recorded as done: a rerun tries them again
    again = extract_faces(inputs, out, manifest, frames=2, workers=1)
    assert again.resumed == [data / "clip.mp4"] and sorted(p.name for p in again.extracted) == ["crash.jpg", "hang.jpg"]


def test_cli_workers_and_timeout_reach_the_pool(workdir, monkeypatch):
    """--workers and --timeout are the scan's options, passed to the worker pool (0: no time limit)."""
    import dfscan.scanner.extract as ex

    seen = []
    real = ex._run_pool

    def spy(jobs, cfg, finished, *, workers, timeout, faults):
        seen.append((workers, timeout))
        return real(jobs, cfg, finished, workers=workers, timeout=timeout, faults=faults)

    monkeypatch.setattr(ex, "_run_pool", spy)
    data = workdir / "data"
    args = ["extract-faces", str(data / "clip.mp4"), str(data / "group.jpg"), "--frames", "2", "--workers", "1"]
    r = runner.invoke(app, [*args, "--out", str(workdir / "a"), "--manifest", str(workdir / "a.csv"), "--timeout", "60"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--out", str(workdir / "b"), "--manifest", str(workdir / "b.csv"), "--timeout", "0"])
    assert r.exit_code == 0, r.output
    assert seen == [(1, 60.0), (1, None)]
    rows = read_manifest_rows(workdir / "a.csv")
    assert {r["source"] for r in rows} == {"data/clip.mp4", "data/group.jpg"} and len(rows) == 2 + 5
    assert [r["path"].split("/", 1)[1] for r in rows] == [r["path"].split("/", 1)[1] for r in read_manifest_rows(workdir / "b.csv")]


@pytest.mark.parametrize("option,value", [("--workers", "0"), ("--workers", "two"), ("--timeout", "-1")])
def test_cli_bad_workers_or_timeout_exit_2(workdir, option, value):
    data = workdir / "data"
    r = runner.invoke(app, ["extract-faces", str(data / "clip.mp4"), "--out", str(workdir / "c"),
                            "--manifest", str(workdir / "m.csv"), option, value], terminal_width=200)
    assert r.exit_code == 2, r.output
    assert sum("Invalid value" in line for line in r.output.splitlines()) == 1 and option in r.output
    assert "Traceback" not in r.output and not (workdir / "m.csv").exists()


def test_resume_skips_unchanged_and_redoes_changed(workdir):
    data, out, manifest = workdir / "data", workdir / "crops", workdir / "m.csv"
    inputs = [data / "clip.mp4", data / "group.jpg"]
    first = extract_faces(inputs, out, manifest, frames=4)
    assert len(first.extracted) == 2 and first.crops == 4 + 5
    text = manifest.read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}

    again = extract_faces(inputs, out, manifest, frames=4)
    assert again.resumed == inputs and again.crops == 0 and again.rows == 9
    assert manifest.read_text() == text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps

    # the photo is replaced by another one: only it is extracted again, its old crops removed
    shutil.copy(MEDIA / "images" / "single_face.jpg", data / "group.jpg")
    third = extract_faces(inputs, out, manifest, frames=4)
    assert third.resumed == [data / "clip.mp4"] and third.extracted == [data / "group.jpg"]
    rows = read_manifest_rows(manifest)
    assert len(rows) == 4 + 1 and third.rows == 5
    assert sorted(p.name for p in (out / crop_dir_name(data / "group.jpg")).iterdir()) == ["s0_f0.png"]

    # other settings are another extraction: nothing is reused
    fourth = extract_faces(inputs, out, manifest, frames=2)
    assert fourth.resumed == [] and fourth.crops == 2 + 1


def test_label_option_and_unlabelled_inputs(workdir):
    data, out = workdir / "data", workdir / "crops"
    r = runner.invoke(app, ["extract-faces", str(data / "group.jpg"), "--label", "fake", "--out", str(out),
                            "--manifest", str(workdir / "fakes.csv"), "-q"])
    assert r.exit_code == 0, r.output
    rows = read_manifest_rows(workdir / "fakes.csv")
    assert len(rows) == 5 and {r["label"] for r in rows} == {"fake"}
    assert list(rows[0]) == ["path", "label", "source", "subject", "frame", "kp"]

    # with labels.csv: an input it does not list is skipped with a note, and no INPUTS = its files
    (data / "labels.csv").write_text("path,label,gender\nclip.mp4,real,male\n")
    res = extract_faces([data / "clip.mp4", data / "group.jpg"], out, workdir / "m.csv",
                        labels=data / "labels.csv", frames=2)
    assert [(p.name, code) for p, code, _ in res.skipped] == [("group.jpg", "no_label")] and not res.errors
    res = extract_faces([], out, workdir / "m2.csv", labels=data / "labels.csv", frames=2)
    assert [p.name for p in res.extracted] == ["clip.mp4"]


@pytest.mark.parametrize("content, message", [
    ("path,label\nclip.mp4,real\ngroup.jpg,maybe\n", "labels.csv line 3: label 'maybe'"),
    ("path,gender\nclip.mp4,male\n", "missing column(s) 'label'"),
    ("path,label\nclip.mp4,real\n./clip.mp4,fake\n", "labels.csv line 3: duplicate path"),
    ("path,label,gender\nclip.mp4,real\n", "labels.csv line 2: expected 3 fields, found 2"),
    ("path,label,frame\nclip.mp4,real,1\n", "column 'frame' is reserved"),
    ("", "empty file"),
])
def test_bad_labels_exit_2_with_one_line(workdir, content, message):
    data = workdir / "data"
    (data / "labels.csv").write_text(content)
    r = runner.invoke(app, ["extract-faces", str(data / "clip.mp4"), "--out", str(workdir / "c"),
                            "--manifest", str(workdir / "m.csv"), "--labels", str(data / "labels.csv")])
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (workdir / "m.csv").exists()  # failed before any work


def test_labels_reader_formats(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "labels.csv").write_text("img_path,label,ismale\n../a.mp4,0,1\nb.jpg,FAKE,0\n")
    table = read_labels_csv(tmp_path / "sub" / "labels.csv")
    assert table.attributes == ["ismale"]
    assert table.rows[Path(os.path.realpath(tmp_path / "a.mp4"))] == ("real", ["1"])
    assert table.rows[Path(os.path.realpath(tmp_path / "sub" / "b.jpg"))] == ("fake", ["0"])
    with pytest.raises(InputError, match="not found"):
        read_labels_csv(tmp_path / "none.csv")


def test_bad_options(workdir):
    data = workdir / "data"
    with pytest.raises(InputError, match="no inputs"):
        extract_faces([], workdir / "c", workdir / "m.csv")
    with pytest.raises(InputError, match="label"):
        extract_faces([data / "clip.mp4"], workdir / "c", workdir / "m.csv", label="maybe")
    with pytest.raises(InputError, match="no such file"):
        extract_faces([data / "missing.mp4"], workdir / "c", workdir / "m.csv")
    with pytest.raises(InputError, match="--workers must be at least 1"):
        extract_faces([data / "clip.mp4"], workdir / "c", workdir / "m.csv", workers=0)
    with pytest.raises(InputError, match="--timeout must be positive"):
        extract_faces([data / "clip.mp4"], workdir / "c", workdir / "m.csv", timeout=-1)
    with pytest.raises(InputError, match="--frames must be at least 1"):
        extract_faces([data / "clip.mp4"], workdir / "c", workdir / "m.csv", frames=0)
    assert not (workdir / "m.csv").exists()
    r = runner.invoke(app, ["extract-faces", "--help"])
    assert r.exit_code == 0 and "dfscan extract-faces videos/" in r.output
