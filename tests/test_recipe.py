"""recipes/build_detector.py on bad input: one line saying what is wrong, no traceback."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import face_frame

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


def _recipe_module():
    spec = importlib.util.spec_from_file_location("build_detector", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_copies_under_other_names_stay_on_one_side_and_never_leave_the_reserved_set(tmp_path):
    """Byte-identical images tie their sources: one side, one copy, reserved when a copy is."""
    recipe = _recipe_module()
    content = {"x": b"x" * 50, "y": b"y" * 50, "z": b"z" * 50, "w": b"w" * 50, "v": b"v" * 50}

    def row(name, what, source, *, domain="dfdc", label="real", race="", reserved=False):
        (tmp_path / name).write_bytes(content[what])
        return {"image": tmp_path / name, "label": label, "source": source, "domain": domain, "method": label,
                "gender": "", "race": race, "reserved": reserved}

    rows = [row("a.jpg", "x", "A"), row("b.jpg", "x", "B"), row("f.jpg", "y", "B", label="fake"),
            row("r.jpg", "z", "R", reserved=True), row("c.jpg", "z", "C"), row("c_fake.jpg", "v", "C", label="fake"),
            row("u1.jpg", "w", "u1", domain="utkface", race="white"),
            row("u2.jpg", "w", "u2", domain="utkface", race="black")]
    for seed in range(8):
        splits, dropped = recipe.split_by_content(rows, 0.5, seed)
        names = {side: sorted(r["image"].name for r in splits[side]) for side in splits}
        side = "val" if "f.jpg" in names["val"] else "train"
        assert "f.jpg" in names[side] and len({"a.jpg", "b.jpg"} & set(names[side])) == 1  # one copy, B's side
        assert not {"a.jpg", "b.jpg"} & set(names["val" if side == "train" else "train"])
        assert sorted(names["reserved"]) == ["c.jpg", "c_fake.jpg", "r.jpg"]  # C shares R's image
        assert not {"u1.jpg", "u2.jpg"} & set(names["train"] + names["val"])  # one face, two races
        assert dropped == {"copies": 1, "conflicting_labels": 2, "reserved_by_content": 2}


def test_training_crops_get_the_boxes_the_scanner_draws_on_video(detector):
    """A tight crop cut around the scanner's face box in a real frame is found again in that box."""
    from dfscan.scanner.faces import FaceDetector

    recipe = _recipe_module()
    frame = face_frame()
    (x, y, w, h) = max(detector.detect(frame), key=lambda d: d.box[2] * d.box[3]).box
    side = 1.05 * max(w, h)
    x0, y0 = int(x + w / 2 - side / 2), int(y + h / 2 - side / 2)
    tight = np.ascontiguousarray(frame[y0:y0 + int(side), x0:x0 + int(side)])
    with FaceDetector("short") as short:
        (bx, by, bw, bh), kp, how = recipe.locate_face(tight, detector, short)
    assert how == "scanner" and kp is not None and kp.shape == (6, 2)
    bx, by = bx + x0, by + y0
    kp = kp + [x0, y0]  # back in the frame: the eyes, nose, mouth and ears lie in the scanner's box
    assert (kp[:, 0] > x - 0.1 * w).all() and (kp[:, 0] < x + 1.1 * w).all(), kp
    assert (kp[:, 1] > y - 0.1 * h).all() and (kp[:, 1] < y + 1.1 * h).all(), kp
    inter = max(0.0, min(x + w, bx + bw) - max(x, bx)) * max(0.0, min(y + h, by + bh) - max(y, by))
    assert inter / (w * h + bw * bh - inter) > 0.85, ((x, y, w, h), (bx, by, bw, bh))


def test_killing_the_recipe_stops_the_dfscan_command_it_runs(tmp_path):
    """`kill` of a recipe once left its `dfscan train` child training on in the background."""
    pidfile = tmp_path / "child.pid"
    child = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    wrapper = (f"import importlib.util, sys; spec = importlib.util.spec_from_file_location('r', {str(RECIPE)!r}); "
               f"m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
               f"m.run([sys.executable, '-c', {child!r}])")
    recipe = subprocess.Popen([sys.executable, "-c", wrapper], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(pidfile.read_text())
    recipe.send_signal(signal.SIGTERM)
    assert recipe.wait(timeout=30) != 0
    with pytest.raises(ProcessLookupError):  # gone, and reaped by the recipe
        os.kill(pid, 0)
