"""Backbones: each module here registers its encoder (B,3,S,S) -> (B,C,S/stride,S/stride) with
`@register_backbone` (dfscan.train.backbones.registry); importing this package imports all of them."""

from __future__ import annotations

import importlib

from dfscan.core.errors import InputError
from dfscan.train.backbones._encoder import Encoder
from dfscan.train.backbones.registry import BACKBONES, BackboneEntry, register_backbone
from dfscan.train.choices import BACKBONE_FILES

for _name in BACKBONE_FILES:  # the default first: the table's order is the choices' order
    importlib.import_module(f"{__name__}.{_name}")


def backbone(name: str) -> BackboneEntry:
    try:
        return BACKBONES[name]
    except KeyError:
        raise InputError(f"unknown backbone {name!r} (choose from {', '.join(BACKBONES)})") from None


def feature_grid(name: str, input_size: int) -> int:
    """Side of the encoder's feature map for an input size."""
    return backbone(name).feature_grid(input_size)


def missing_pretrained(name: str) -> str | None:
    """How to get a backbone's ImageNet weights when they are not on this machine; None when they are."""
    return backbone(name).missing_pretrained()


def create_backbone(name: str, pretrained: bool = False, **kwargs) -> Encoder:
    """Build a registered backbone; `pretrained` loads ImageNet weights where they are available."""
    return backbone(name).build(pretrained=pretrained, **kwargs)


__all__ = ["BACKBONES", "BackboneEntry", "backbone", "create_backbone", "feature_grid", "missing_pretrained",
           "register_backbone"]
