"""Shared fixtures: small random-init PG-FDD checkpoints that other modules' tests load and score."""

from __future__ import annotations

import pytest

# The fixture models take 128-px crops: the code under test does not depend on the size (the
# shipped model's is in its config), and inference and scans cost a quarter of 256 px.
TEST_SIZE = 128


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A deploy checkpoint of an EfficientNet-Lite0 PG-FDD (random init, threshold 0.5)."""
    import torch

    from train.checkpoint import save_checkpoint
    from train.config import ModelConfig
    from train.model import PGFDD

    torch.manual_seed(0)
    config = ModelConfig(backbone="efficientnet_lite0", input_size=TEST_SIZE)
    model = PGFDD(config, pretrained=False).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny_deploy.safetensors"
    return save_checkpoint(path, model.deploy(), config, threshold=0.5,
                           provenance={"note": "random init test fixture"})


@pytest.fixture(scope="session")
def tiny_full_checkpoint(tmp_path_factory):
    """A full (training) checkpoint of an EfficientNet-Lite0 PG-FDD (random init, threshold 0.5)."""
    import torch

    from train.checkpoint import save_checkpoint
    from train.config import ModelConfig
    from train.model import PGFDD

    torch.manual_seed(1)
    config = ModelConfig(backbone="efficientnet_lite0", input_size=TEST_SIZE)
    model = PGFDD(config, pretrained=False).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny_full.safetensors"
    return save_checkpoint(path, model, config, threshold=0.5,
                           provenance={"note": "random init test fixture"})
