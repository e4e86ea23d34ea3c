"""The shipped detector: a small single-pass deploy checkpoint trained on DFDC + UTKFace that reads
the shared real videos as real, and a repository that carries none of their images.

Real PyAV decoding, real MediaPipe detections, ONNX Runtime on the CPU (the scanner's default
here), on real videos of people the model never saw in training.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from dfscan.scanner.assets import default_weights
from dfscan.scanner.pipeline import ScanOptions, scan
from dfscan.train.checkpoint import load_checkpoint, read_metadata
from dfscan.train.model import PGFDDDeploy

ROOT = Path(__file__).resolve().parent.parent
VIDEOS = Path(__file__).parent / "data" / "media" / "videos"
MEDIA_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}
# the test media, as tests/data/media/LICENSES.md lists them (all MIT, BSD-3 or public domain)
LICENSED_MEDIA = {
    "videos/WolfgangLanger_Pexels.mp4", "videos/single_face.mp4", "videos/face_noface.mov", "videos/noface_face.mov",
    "videos/no_face.mp4", "videos/carphone_pristine.mp4", "videos/bigbuckbunny.mp4", "images/0-f1-su-ph.jpg",
    "images/0-f15-hao-ph.jpg", "images/15-f13-anc-ph.jpg", "images/45-m7-di-ph.jpg", "images/single_face.jpg",
    "images/multi_face.jpg", "images/BWPictureHuman.jpg", "images/astronaut.png",
    *(f"images/group_sample{i}.jpg" for i in range(1, 7)),
}
UTKFACE_NAME = re.compile(r"^\d+_[01]_\d_\d+\.jpg(\.chip\.jpg)?$")  # age_gender_race_date
DFDC_NAME = re.compile(r"^[a-z]{10}\.(jpg|png|mp4)$")  # DFDC video ids: ten lower-case letters
SKIP_DIRS = {".git", ".venv", "venv", "runs", "__pycache__", ".pytest_cache", "build", "dist", "node_modules"}


def test_shipped_weights_are_a_small_calibrated_single_pass_checkpoint():
    path = default_weights()
    assert path.stat().st_size < 20 * 2**20  # single-pass deploy weights, float16
    meta = read_metadata(path)
    assert meta["dtype"] == "float16" and meta["deploy_graph"] == "single_pass"
    assert "non-commercial" in meta["caveat"] or "commercial use" in meta["caveat"]
    model, cfg, info = load_checkpoint(path)
    assert isinstance(model, PGFDDDeploy) and model.single_pass and cfg.backbone == "efficientnet_lite0"
    assert 0.0 < info["threshold"] < 1.0
    prov = info["provenance"]
    assert prov["threshold_policy"].startswith("lowest threshold with FPR <= 0.05")
    assert prov["metrics"]["val_fpr"] <= 0.05
    assert prov["train_counts"]["fake"] > 10_000 and prov["pseudo_fakes"] == "sbi"  # real face swaps, not only SBI
    from dfscan.core.labels import SEPARATOR

    assert len(cfg.group_names) == 10 and f"female{SEPARATOR}black" in cfg.group_names  # gender x race from UTKFace
    assert prov["fairness_terms"] is True
    assert (path.parent / "MODEL_CARD.md").is_file()


@pytest.mark.slow
def test_default_model_reads_the_shared_real_videos_as_real(tmp_path, monkeypatch):
    monkeypatch.setenv("DFSCAN_CACHE", str(tmp_path / "cache"))
    videos = sorted(p for p in VIDEOS.iterdir() if p.name not in ("no_face.mp4", "bigbuckbunny.mp4"))
    report = scan(videos, ScanOptions(backend="onnxruntime", frames=16, workers=2, timeout=120))
    items = {Path(i["path"]).name: i for i in report["items"]}
    assert len(items) == 5
    for name, item in items.items():
        assert item["status"] == "ok", name
        assert item["verdict"] == "real", (name, item["score"], report["model"]["threshold"])


def test_no_dfdc_or_utkface_image_is_in_the_repository():
    """Their terms forbid redistribution: the only media here are the licensed test files."""
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            assert not UTKFACE_NAME.match(name) and not DFDC_NAME.match(name), os.path.join(folder, name)
            if Path(name).suffix.lower() in MEDIA_SUFFIXES:
                found.add(Path(folder, name).relative_to(ROOT / "tests" / "data" / "media").as_posix()
                          if (ROOT / "tests" / "data" / "media") in Path(folder, name).parents else
                          Path(folder, name).relative_to(ROOT).as_posix())
    assert found == LICENSED_MEDIA
