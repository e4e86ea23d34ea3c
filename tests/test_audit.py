"""dfscan audit on generated media: leading silence, resolution and JPEG-quality shortcuts are
found, a set without one passes, and bad input gets fairness-check's one-line errors.

Clips are tiny (64x48, ~1 s, 25 fps, H.264 + AAC). Within a "pair" the real and the fake share
their picture and tone, so every feature a test did not plant is equal across labels.
"""

from __future__ import annotations

import csv
import fractions
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dfscan.scanner.audit.analysis import separation
from dfscan.scanner.audit.features import jpeg_quality, media_features
from dfscan.scanner.audit.run import AuditOptions, run_audit
from dfscan.scanner.cli import app

runner = CliRunner()
RATE, SR = 25, 16000


def make_clip(path: Path, seed: int, *, lead_ms: float = 0.0, size: tuple[int, int] = (64, 48),
              seconds: float = 1.0) -> Path:
    """A clip whose first `lead_ms` are black and digitally silent (the prefix a fake pipeline
    adds), then `seconds` of a moving square over a tone; seed picks the square and the tone."""
    rng = np.random.default_rng(seed)
    colour, hz = rng.integers(40, 255, 3), 220 + 40 * seed
    lead_frames = int(round(lead_ms / 1000 * RATE))
    n = lead_frames + int(seconds * RATE)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=RATE, options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        a = out.add_stream("aac", rate=SR)
        a.layout = "mono"
        for i in range(n):
            img = np.zeros((size[1], size[0], 3), np.uint8)
            if i >= lead_frames:
                x = (i * 2 + seed * 5) % (size[0] - 16)
                img[10:26, x:x + 16] = colour
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        lead = int(round(lead_ms / 1000 * SR))
        t = np.arange(int(seconds * SR)) / SR
        samples = np.concatenate([np.zeros(lead), 0.4 * np.sin(2 * np.pi * hz * t)]).astype(np.float32)
        for s in range(0, samples.size, 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, s:s + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SR, s, fractions.Fraction(1, SR)
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    return path


def write_labels(folder: Path, rows: list[tuple], header: tuple = ("path", "label", "gender")) -> Path:
    """folder/labels.csv: the audit's labelled set (a path, label and gender column unless `header` says otherwise)."""
    path = folder / "labels.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


LEADS = [40 + 160 * i / 11 for i in range(12)]  # 40-200 ms


@pytest.fixture(scope="module")
def silence_set(tmp_path_factory) -> tuple[Path, Path]:
    """12 pairs: each fake is its real with 40-200 ms of black, silent lead; and the same set
    with that lead trimmed off again (audio and video together)."""
    root = tmp_path_factory.mktemp("silence")
    rows, trimmed = [], []
    for i, lead in enumerate(LEADS):
        g = "f" if i % 2 else "m"
        real = make_clip(root / f"real{i}.mp4", i)
        rows += [(real.name, "real", g), (make_clip(root / f"fake{i}.mp4", i, lead_ms=lead).name, "fake", g)]
        (root / "trimmed").mkdir(exist_ok=True)
        make_clip(root / "trimmed" / real.name, i)
        trimmed += [(real.name, "real", g), (make_clip(root / "trimmed" / f"fake{i}.mp4", i).name, "fake", g)]
    return write_labels(root, rows), write_labels(root / "trimmed", trimmed)


def test_leading_silence_is_measured_in_ms(tmp_path):
    clean = media_features(make_clip(tmp_path / "a.mp4", 1))
    lead = media_features(make_clip(tmp_path / "b.mp4", 1, lead_ms=120))
    assert clean["leading_silence_ms"] < 5
    assert lead["leading_silence_ms"] == pytest.approx(120, abs=15)  # AAC smears an onset by a few ms
    assert lead["duration_s"] > clean["duration_s"] and lead["has_audio"] == "true"
    assert (lead["width"], lead["height"], lead["audio_codec"], lead["audio_sample_rate"]) == (64, 48, "aac", SR)


def test_leading_silence_shortcut_fails_the_gate(silence_set, tmp_path):
    r = runner.invoke(app, ["audit", str(silence_set[0]), "--json", str(tmp_path / "a.json"),
                            "--markdown", str(tmp_path / "a.md"), "--plots", str(tmp_path / "plots"),
                            "--bootstrap", "50", "--min-items", "12"])
    assert r.exit_code == 1, r.output
    doc = json.loads((tmp_path / "a.json").read_text())
    feats = {f["feature"]: f for f in doc["features"]}
    assert feats["leading_silence_ms"]["auc"] >= 0.95 and feats["leading_silence_ms"]["shortcut"]
    assert "higher in fakes" in feats["leading_silence_ms"]["detail"]
    assert "leading_silence_ms" in doc["shortcuts"] and not doc["passed"]
    assert feats["leading_silence_ms"]["ci95"][0] > 0.7
    # the mechanical clean-up: per-file trims, only of files that start silent
    trims = {t["path"]: t["trim_s"] for t in doc["trim"]}
    assert set(trims) >= {f"fake{i}.mp4" for i in range(12)}
    assert trims["fake11.mp4"] == pytest.approx(0.2, abs=0.02)
    assert "ffmpeg -ss" in feats["leading_silence_ms"]["suggestion"]
    assert not feats["width"]["shortcut"] and feats["width"]["auc"] == 0.5
    md = (tmp_path / "a.md").read_text()
    assert "❌" in md and "leading\\_silence\\_ms" in md
    assert sorted(p.name for p in (tmp_path / "plots").iterdir())[:1]  # PNGs of the worst features
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in (tmp_path / "plots").iterdir())
    assert "SHORTCUT" in r.output and "FAILED" in r.output


def test_the_same_set_with_the_silence_trimmed_passes(silence_set):
    result = run_audit(silence_set[1], AuditOptions(bootstrap=0, min_items=12))
    assert result.passed, result.report["shortcuts"]
    feats = {f["feature"]: f for f in result.report["features"]}
    assert feats["leading_silence_ms"]["auc"] == 0.5
    assert result.report["model"]["auc"] <= 0.7
    assert set(result.report["by_group"]["gender"]) == {"f", "m"}
    r = runner.invoke(app, ["audit", str(silence_set[1]), "--bootstrap", "0", "--quiet", "--min-items", "12"])
    assert r.exit_code == 0 and r.output.startswith("PASSED"), r.output


def test_resolution_shortcut_is_flagged(tmp_path):
    rows = []
    for i in range(8):
        rows += [(make_clip(tmp_path / f"r{i}.mp4", i, seconds=0.4).name, "real", "x"),
                 (make_clip(tmp_path / f"f{i}.mp4", i, seconds=0.4, size=(96, 64)).name, "fake", "x")]
    result = run_audit(write_labels(tmp_path, rows), AuditOptions(bootstrap=0, attrs=[], min_items=8))
    feats = {f["feature"]: f for f in result.report["features"]}
    assert feats["width"]["auc"] == 1.0 and feats["height"]["auc"] == 1.0
    assert {"width", "height"} <= set(result.report["shortcuts"])
    assert not feats["leading_silence_ms"]["shortcut"] and not feats["fps"]["shortcut"]
    assert "scale=W:H" in feats["width"]["suggestion"]
    assert result.report["by_group"] == {}


def test_jpeg_quality_shortcut_and_csv_feature(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        img = Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
        img.save(tmp_path / f"r{i}.jpg", quality=95)
        img.save(tmp_path / f"f{i}.jpg", quality=60)
        rows += [(f"r{i}.jpg", "real", 200 + i), (f"f{i}.jpg", "fake", 200 + i)]
    labels = write_labels(tmp_path, rows, header=("path", "label", "original_width"))
    result = run_audit(labels, AuditOptions(bootstrap=0, features=["original_width"], min_items=10))
    feats = {f["feature"]: f for f in result.report["features"]}
    assert feats["jpeg_quality"]["auc"] == 1.0 and "lower in fakes" in feats["jpeg_quality"]["detail"]
    assert feats["csv:original_width"]["auc"] == 0.5 and not feats["csv:original_width"]["shortcut"]
    assert result.report["by_group"] == {}  # the --feature column is not an attribute
    r = runner.invoke(app, ["audit", str(labels), "--feature", "nope"])
    assert r.exit_code == 2 and "--feature 'nope'" in r.output and len(r.output.strip().splitlines()) == 1


def test_jpeg_quality_estimate_tracks_the_encoder_setting(tmp_path):
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    for q in (30, 60, 75, 90, 95):
        img.save(tmp_path / "q.jpg", quality=q)
        with Image.open(tmp_path / "q.jpg") as j:
            assert jpeg_quality(j.quantization[0]) == pytest.approx(q, abs=6)


def test_categorical_separation_names_the_category():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = separation(["h264"] * 4 + ["vp9", "vp9", "vp9", "h264"], y, "cat")
    assert s.auc == pytest.approx(0.875) and "'vp9': 75% of fakes vs 0% of reals" in s.detail
    assert separation([None] * 8, y, "num").auc is None


def test_unreadable_items_are_excluded_with_exit_3(tmp_path):
    rows = []
    for i in range(4):
        rows += [(make_clip(tmp_path / f"r{i}.mp4", i, seconds=0.4).name, "real", "x"),
                 (make_clip(tmp_path / f"f{i}.mp4", i, seconds=0.4).name, "fake", "x")]
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    rows.append(("broken.mp4", "fake", "x"))
    r = runner.invoke(app, ["audit", str(write_labels(tmp_path, rows)), "--bootstrap", "0", "--json",
                            str(tmp_path / "a.json"), "--min-items", "4"])
    assert r.exit_code == 3, r.output
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["excluded"][0]["path"] == "broken.mp4" and doc["scored"]["rows"] == 8


@pytest.mark.parametrize("rows,header", [
    ([("a.mp4", "maybe", "x")], ("path", "label", "g")),
    ([("missing.mp4", "real", "x")], ("path", "label", "g")),
    ([("a.mp4", "real")], ("path", "labl")),
])
def test_bad_csv_gets_fairness_checks_error(tmp_path, rows, header):
    make_clip(tmp_path / "a.mp4", 0, seconds=0.2)
    labels = write_labels(tmp_path, rows, header=header)
    audit = runner.invoke(app, ["audit", str(labels)])
    fair = runner.invoke(app, ["fairness-check", str(labels), "--scores", str(labels)])
    assert audit.exit_code == 2 and fair.exit_code == 2
    line = audit.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line == fair.output.strip()


def _size_set(tmp_path: Path, n: int) -> Path:
    """n real 48x48 and n fake 96x64 JPEGs: width and height separate them perfectly."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / f"r{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(tmp_path / f"f{i}.jpg")
        rows += [(f"r{i}.jpg", "real", "x"), (f"f{i}.jpg", "fake", "x")]
    return write_labels(tmp_path, rows)


def test_two_items_per_label_are_too_few_not_a_shortcut(tmp_path):
    """Two items always separate perfectly: that is no finding, and it must not read as one, nor pass."""
    labels = _size_set(tmp_path, 2)
    r = runner.invoke(app, ["audit", str(labels), "--bootstrap", "0", "--json", str(tmp_path / "a.json")])
    assert r.exit_code == 1, r.output  # a gate failed, as fairness-check's min-group gate does
    assert "too few items to audit: 2 real and 2 fake read" in r.output and "--min-items" in r.output
    assert "SHORTCUT" not in r.output and "PASSED" not in r.output
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["too_few"] and not doc["passed"] and doc["shortcuts"] == []
    assert doc["settings"]["min_items"] == 30
    quiet = runner.invoke(app, ["audit", str(labels), "--bootstrap", "0", "-q"])
    assert quiet.exit_code == 1 and quiet.output.startswith("FAILED: too few items"), quiet.output


def test_suggestions_print_as_text_and_the_model_auc_is_explained(tmp_path):
    r = runner.invoke(app, ["audit", str(_size_set(tmp_path, 3)), "--bootstrap", "0", "--min-items", "3"])
    assert r.exit_code == 1 and "SHORTCUT" in r.output, r.output
    assert "[bold]" not in r.output and "[/]" not in r.output  # markup is rendered, never printed
    assert "width: resize every item" in " ".join(r.output.split())
    assert "scale=W:H" in r.output  # the command the suggestion quotes survives
    assert "model's is out-of-fold and not folded" in " ".join(r.output.split())


def test_the_metadata_models_auc_under_half_reads_as_chance():
    from dfscan.scanner.audit.output import model_auc_text

    assert model_auc_text({"auc": 0.255}) == "0.255 (< 0.5: chance)"
    assert model_auc_text({"auc": 0.8}) == "0.800" and model_auc_text({"auc": None}) == "n/a"


def test_workers_short_option_is_not_w():
    """-w is --weights in scan, doctor and build-engine; audit's --workers is -j."""
    r = runner.invoke(app, ["audit", "x.csv", "-w", "2"])
    assert r.exit_code == 2 and "No such option" in r.output, r.output
