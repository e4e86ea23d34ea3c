"""Backbone registry: each entry builds an encoder mapping (B,3,256,256) to (B,out_channels,8,8)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from train.errors import InputError

from .efficientnet_lite0 import EfficientNetLite0, efficientnet_lite0
from .xception import Xception, xception

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "efficientnet_lite0": efficientnet_lite0,
    "xception": xception,
}


def create_backbone(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a registered backbone; `pretrained` loads ImageNet weights where they are available."""
    try:
        factory = BACKBONES[name]
    except KeyError:
        raise InputError(f"unknown backbone {name!r} (choose from {', '.join(sorted(BACKBONES))})") from None
    return factory(pretrained=pretrained, **kwargs)


__all__ = ["BACKBONES", "create_backbone", "EfficientNetLite0", "Xception", "efficientnet_lite0", "xception"]
