"""The shipped starter detector: a small deploy-only checkpoint that reads real faces as real.

Real PyAV decoding, real MediaPipe detections, ONNX Runtime on the CPU (the scanner's default
here), on real videos of people the model never saw in training (held-out identities) and on
the other shared real clips.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.assets import default_weights
from scanner.pipeline import ScanOptions, scan
from train.checkpoint import load_checkpoint, read_metadata
from train.model import PGFDDDeploy

VIDEOS = Path(__file__).parent / "data" / "media" / "videos"


def test_shipped_weights_are_a_small_calibrated_deploy_checkpoint():
    path = default_weights()
    assert path.stat().st_size < 30 * 2**20  # deploy-only, float16: tens of MB at most
    meta = read_metadata(path)
    assert meta["dtype"] == "float16"
    model, cfg, info = load_checkpoint(path)
    assert isinstance(model, PGFDDDeploy) and cfg.backbone == "efficientnet_lite0"
    assert 0.0 < info["threshold"] < 1.0
    assert info["provenance"]["pseudo_fakes"] == "sbi"
    assert (path.parent / "MODEL_CARD.md").is_file()


@pytest.mark.slow
def test_default_model_reads_the_shared_real_videos_as_real(tmp_path, monkeypatch):
    monkeypatch.setenv("DFSCAN_CACHE", str(tmp_path / "cache"))
    videos = [VIDEOS / n for n in ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov")]
    report = scan(videos, ScanOptions(backend="onnxruntime", frames=16, workers=2, timeout=120))
    items = {Path(i["path"]).name: i for i in report["items"]}
    for name, item in items.items():
        assert item["status"] == "ok", name
        assert item["verdict"] == "real", (name, item["score"], report["model"]["threshold"])
