"""Shared fixtures: small random-init PG-FDD checkpoints that other modules' tests load and
score, a sharpened one whose scores spread, one ONNX cache for the session, generated crop sets,
one MediaPipe face detector.

Pytest finds these by name, so test modules use them without importing anything. Shared plain
helpers and constants (media paths, TEST_SIZE, crop and CSV writers, broken inputs, scan
options) live in tests/helpers.py: test modules import from there, never from each other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TEST_SIZE, make_crops, sharpen_checkpoint


def _random_init_checkpoint(path: Path, *, seed: int, deploy: bool) -> Path:
    """An EfficientNet-Lite0 PG-FDD with random weights (threshold 0.5), deploy or full."""
    import torch

    from dfscan.train.checkpoint import save_checkpoint
    from dfscan.train.config import ModelConfig
    from dfscan.train.model import PGFDD

    torch.manual_seed(seed)
    config = ModelConfig(backbone="efficientnet_lite0", input_size=TEST_SIZE)
    model = PGFDD(config, pretrained=False).eval()
    return save_checkpoint(path, model.deploy() if deploy else model, config, threshold=0.5,
                           provenance={"note": "random init test fixture"})


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A deploy checkpoint of an EfficientNet-Lite0 PG-FDD (random init, threshold 0.5)."""
    return _random_init_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_deploy.safetensors", seed=0, deploy=True)


@pytest.fixture(scope="session")
def tiny_full_checkpoint(tmp_path_factory):
    """A full (training) checkpoint of the same architecture (another random init)."""
    return _random_init_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_full.safetensors", seed=1, deploy=False)


@pytest.fixture(scope="session")
def sharp_checkpoint(tiny_checkpoint, tmp_path_factory):
    """tiny_checkpoint sharpened (tests.helpers.sharpen_checkpoint), made once per session at a
    fixed path, so every test file reuses the file and its cached ONNX export (keyed by its hash)."""
    path = tmp_path_factory.getbasetemp() / "sharp" / "sharp.safetensors"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        sharpen_checkpoint(tiny_checkpoint, path)
    return path


@pytest.fixture()
def shared_cache(tmp_path_factory, monkeypatch):
    """One DFSCAN_CACHE for the whole session (out of the user's cache), so each checkpoint is
    exported once across files."""
    path = tmp_path_factory.getbasetemp() / "dfscan-cache"
    monkeypatch.setenv("DFSCAN_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def crop_sets(tmp_path_factory) -> tuple[Path, Path]:
    """Generated training (24 crops) and validation (8) manifests, half fakes; read-only."""
    root = tmp_path_factory.mktemp("crops")
    return make_crops(root / "train", 24, seed=0), make_crops(root / "val", 8, seed=1)


@pytest.fixture(scope="session")
def detector():
    """The full-range MediaPipe face detector, opened once (its tests only read from it)."""
    from dfscan.scanner.faces import FaceDetector

    with FaceDetector() as d:
        yield d
