"""A new backbone is one definition and a decorator: registered here, inside this file, it trains
through PG-FDD, round-trips a checkpoint, is recognised from its keys and exports to ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dfscan.core.errors import CheckpointError
from dfscan.train import PGFDD, ModelConfig, load_checkpoint, save_checkpoint
from dfscan.train.backbones import BACKBONES, register_backbone
from dfscan.train.checkpoint import detect_backbone
from dfscan.train.choices import BACKBONE_FILES, backbone_names


class TinyCNN(nn.Module):
    """Two strided convolutions to stride 32: the smallest encoder PG-FDD accepts."""

    def __init__(self, feature_channels: int = 512):
        super().__init__()
        self.tiny_stem = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.tiny_head = nn.Conv2d(8, feature_channels, 3, stride=8, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tiny_head(torch.relu(self.tiny_stem(x)))


@pytest.fixture
def tiny_cnn():
    @register_backbone(state_key="encoder_f.tiny_stem.weight")
    def tiny_cnn(pretrained: bool = False, feature_channels: int = 512) -> TinyCNN:
        return TinyCNN(feature_channels)

    yield "tiny_cnn"
    BACKBONES.pop("tiny_cnn", None)


def test_the_shipped_files_are_the_table():
    assert tuple(BACKBONES) == BACKBONE_FILES == ("efficientnet_lite0", "dinov2_vits14", "xception")
    assert detect_backbone({"encoder_f.conv_stem.weight": torch.zeros(1)}) == "efficientnet_lite0"
    assert detect_backbone({"encoder_f.nothing": torch.zeros(1)}) is None


def test_a_backbone_registered_in_one_file_works_end_to_end(tiny_cnn, tmp_path):
    from dfscan.engines.export import export_with_parity

    assert tiny_cnn in backbone_names()
    torch.manual_seed(0)
    config = ModelConfig(backbone=tiny_cnn, input_size=64, feature_channels=32)
    model = PGFDD(config)
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    out = model(x)
    assert out["cls_fused"].shape == (4, config.num_fused) and torch.isfinite(out["prob"]).all()
    out["cls_fused"].sum().backward()
    assert model.encoder_f.tiny_stem.weight.grad.abs().sum() > 0
    assert detect_backbone(model.state_dict()) == tiny_cnn

    path = save_checkpoint(tmp_path / "tiny.safetensors", model.eval().deploy(), config, threshold=0.4)
    loaded, loaded_config, info = load_checkpoint(path)
    assert loaded_config.backbone == tiny_cnn and info["threshold"] == pytest.approx(0.4)
    crops = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    onnx_path, parity = export_with_parity(path, tmp_path / "tiny.onnx", crops=crops)
    assert onnx_path.is_file() and parity["max_abs_diff"] < 1e-4


def test_an_unregistered_name_in_a_checkpoint_is_refused(tiny_cnn, tmp_path):
    model = PGFDD(ModelConfig(backbone=tiny_cnn, input_size=64, feature_channels=32)).eval()
    path = save_checkpoint(tmp_path / "tiny.safetensors", model.deploy(), threshold=0.5)
    BACKBONES.pop(tiny_cnn)
    with pytest.raises(CheckpointError, match="backbone"):
        load_checkpoint(path)
