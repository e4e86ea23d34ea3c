"""The backbone table: a backbone is one module in this folder whose factory says `@register_backbone`.

Why a decorator and not a list: adding a family is its own file and nothing else, as in timm.
The names are also known without importing torch (dfscan.train.choices reads this folder's file
names), which the CLI needs at start-up; this module itself imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


def cnn_feature_grid(input_size: int) -> int:
    """Side of a CNN's feature map: stride 32 with 'same'-style padding (rounding up)."""
    return -(-input_size // 32)


def _always_there() -> str | None:
    return None


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    build: Callable[..., Any]  # (pretrained=False, feature_channels=512) -> an Encoder (_encoder.py)
    state_key: str  # a key only this family's encoder has, so a bare state_dict says what it is
    feature_grid: Callable[[int], int]  # input side -> feature map side
    missing_pretrained: Callable[[], str | None]  # how to get its ImageNet weights; None when they are here


BACKBONES: dict[str, BackboneEntry] = {}


def register_backbone(*, state_key: str, feature_grid: Callable[[int], int] = cnn_feature_grid,
                      missing_pretrained: Callable[[], str | None] = _always_there) -> Callable:
    """Register the decorated factory under its own name (which is its module's name in this folder)."""
    def add(build: Callable[..., Any]) -> Callable[..., Any]:
        name = build.__name__
        if name in BACKBONES and BACKBONES[name].build is not build:
            raise ValueError(f"backbone {name!r} is registered twice")
        BACKBONES[name] = BackboneEntry(name, build, state_key, feature_grid, missing_pretrained)
        return build
    return add
