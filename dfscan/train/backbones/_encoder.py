"""The base of every registered backbone: what PG-FDD (dfscan.train.model) and the frozen-trunk trainer
(dfscan.train.frozen) call on an encoder, declared once so the type checker knows it too."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """An ImageNet trunk (`forward_backbone`, which dfscan.train.frozen caches) followed by PG-FDD's
    `adjust_channel` projection (1x1 conv + BN + ReLU) from `num_features` to `out_channels`."""

    adjust_channel: nn.Sequential
    num_features: int
    out_channels: int

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk: (B,3,S,S) -> (B, num_features, h, w), before adjust_channel."""
        raise NotImplementedError
