"""Xception with the parameter layout of the official PG-FDD encoders, so their weights load key for key.

Facts from the official code (Purdue-M2/Fairness-Generalization, MIT; itself after FaceForensics++):
entry conv1 (3x3 s2, no padding) / conv2 (3x3, no padding), twelve residual `block{i}` whose `rep`
Sequential interleaves ReLU, separable convs (`conv1` depthwise + `pointwise`) and BN, so parameter
indices depend on where the ReLUs sit; exit `conv3`/`conv4` separable convs with `bn3`/`bn4`; an
unused 2-way `last_linear`; and `adjust_channel` (1x1 conv with bias to 512, BN, ReLU) applied to
the BN4 output (no ReLU in between). At 256x256 input the output is (B, 512, 8, 8).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from dfscan.train.backbones._encoder import Encoder
from dfscan.train.backbones.registry import register_backbone

IMAGENET_ENV = "DFSCAN_XCEPTION_IMAGENET"  # path to the Cadene/FF++ `xception-b5690688.pth`, if any


class SeparableConv2d(nn.Module):
    """Depthwise kxk (`conv1`) then pointwise 1x1 (`pointwise`), both without bias."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, bias: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, kernel, stride, padding, groups=cin, bias=bias)
        self.pointwise = nn.Conv2d(cin, cout, 1, 1, 0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """Xception residual block; `rep` indices reproduce the official ReLU placement exactly."""

    def __init__(self, cin: int, cout: int, reps: int, stride: int = 1,
                 start_with_relu: bool = True, grow_first: bool = True):
        super().__init__()
        if cout != cin or stride != 1:
            self.skip: nn.Conv2d | None = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.skipbn: nn.BatchNorm2d | None = nn.BatchNorm2d(cout)
        else:
            self.skip, self.skipbn = None, None

        def unit(a: int, b: int) -> list[nn.Module]:
            return [nn.ReLU(inplace=True), SeparableConv2d(a, b, 3, 1, 1), nn.BatchNorm2d(b)]

        layers: list[nn.Module] = []
        width = cin
        if grow_first:
            layers += unit(cin, cout)
            width = cout
        for _ in range(reps - 1):
            layers += unit(width, width)
        if not grow_first:
            layers += unit(cin, cout)
        if start_with_relu:
            layers[0] = nn.ReLU(inplace=False)  # the block input is reused by the skip path
        else:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skipbn(self.skip(x)) if self.skip is not None and self.skipbn is not None else x  # set together
        return self.rep(x) + skip


class Xception(Encoder):
    """PG-FDD's Xception encoder (mode 'adjust_channel')."""

    def __init__(self, feature_channels: int = 512, num_classes: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.block1 = Block(64, 128, 2, 2, start_with_relu=False, grow_first=True)
        self.block2 = Block(128, 256, 2, 2)
        self.block3 = Block(256, 728, 2, 2)
        for i in range(4, 12):  # middle flow
            setattr(self, f"block{i}", Block(728, 728, 3, 1))
        self.block12 = Block(728, 1024, 2, 2, grow_first=False)
        self.conv3 = SeparableConv2d(1024, 1536, 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(1536)
        self.conv4 = SeparableConv2d(1536, 2048, 3, 1, 1)
        self.bn4 = nn.BatchNorm2d(2048)
        # Unused by PG-FDD but present in its state_dict: kept so official files load strictly.
        self.last_linear = nn.Linear(2048, num_classes)
        self.num_features = 2048
        self.adjust_channel = nn.Sequential(
            nn.Conv2d(2048, feature_channels, 1, 1), nn.BatchNorm2d(feature_channels), nn.ReLU(inplace=True)
        )
        self.out_channels = feature_channels

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Xception trunk up to BN4: (B,3,256,256) -> (B,2048,8,8)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        for i in range(1, 13):
            x = getattr(self, f"block{i}")(x)
        x = self.relu(self.bn3(self.conv3(x)))
        return self.bn4(self.conv4(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.adjust_channel(self.forward_backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def load_imagenet_weights(model: Xception, path: str | Path) -> None:
    """Load the FF++/Cadene ImageNet Xception (2-D pointwise weights, `fc` head) into the trunk."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for key, value in state.items():
        if key.startswith(("fc.", "last_linear.")):
            continue
        mapped[key] = value[..., None, None] if "pointwise" in key and value.ndim == 2 else value
    own = {k for k in model.state_dict() if not k.startswith(("adjust_channel.", "last_linear."))}
    own_req = {k for k in own if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(own_req - set(mapped)), sorted(set(mapped) - own)
    if missing or unexpected:
        raise RuntimeError(f"Xception ImageNet weights do not match: missing {missing}, unexpected {unexpected}")
    model.load_state_dict(mapped, strict=False)


def imagenet_weights_path() -> Path | None:
    """The ImageNet Xception file $DFSCAN_XCEPTION_IMAGENET names, if it is there."""
    path = os.environ.get(IMAGENET_ENV)
    return Path(path) if path and Path(path).is_file() else None


def _missing_pretrained() -> str | None:
    if imagenet_weights_path() is None:
        return f"set {IMAGENET_ENV} to the ImageNet Xception file (xception-b5690688.pth)"
    return None


@register_backbone(state_key="encoder_f.block1.rep.0.pointwise.weight", missing_pretrained=_missing_pretrained)
def xception(pretrained: bool = False, feature_channels: int = 512) -> Xception:
    """Official-layout Xception encoder; ImageNet weights come from $DFSCAN_XCEPTION_IMAGENET when set."""
    model = Xception(feature_channels=feature_channels)
    if pretrained:
        path = imagenet_weights_path()
        if path is not None:
            load_imagenet_weights(model, path)
        else:
            warnings.warn(
                f"no ImageNet Xception weights (set {IMAGENET_ENV} to xception-b5690688.pth): "
                "Xception starts from random weights",
                stacklevel=2,
            )
    return model
