"""The model configuration that travels inside every checkpoint, so a file alone rebuilds its network."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from dfscan.core.errors import CheckpointError
from dfscan.core.labels import OFFICIAL_GROUPS
from dfscan.train.choices import backbone_names

# What a config read from a file may hold. Every backbone takes any crop side in this range (the
# CNNs reduce by 32 rounding up, the ViT cuts whole 14-px patches); a crop of 20000 px would
# allocate >10 GB per batch before anything else failed.
INPUT_SIZE_RANGE = (32, 1024)
HEADS_MAX = 1024  # classes per head (methods, groups): the heads' widths come from these
FEATURE_CHANNELS_MAX = 4096
_INT_RANGES = {"input_size": INPUT_SIZE_RANGE, "num_spe": (1, HEADS_MAX), "num_sha": (2, HEADS_MAX),
               "num_fair": (1, HEADS_MAX), "num_fused": (2, HEADS_MAX), "feature_channels": (1, FEATURE_CHANNELS_MAX)}


def _show(value: Any) -> str:
    """A value for an error line: short, whatever a hostile file put there."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_config_dict(d: Any) -> None:
    """Types and ranges of every field of a config read from a file, before anything is built from it.

    Why: a checkpoint's metadata is user input; an unchecked value surfaces later as a traceback
    (a string input size) or as a huge allocation (a 20000-px input, a billion-class head).
    CheckpointError names the field: `config.<field> ...`.
    """
    if not isinstance(d, dict):
        raise CheckpointError(f"config must be a JSON object, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise CheckpointError(f"config: unknown keys {', '.join(_show(k) for k in unknown)}")
    if "backbone" in d and d["backbone"] not in backbone_names():
        raise CheckpointError(f"config.backbone: unknown backbone {_show(d['backbone'])} "
                              f"(choose from {', '.join(backbone_names())})")
    for name, (low, high) in _INT_RANGES.items():
        if name in d:
            v = d[name]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise CheckpointError(f"config.{name} must be a whole number from {low} to {high}, got {_show(v)}")
    for name in ("mean", "std"):
        if name in d:
            v = d[name]
            if (not isinstance(v, list) or len(v) != 3
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
                    or (name == "std" and not all(x > 0 for x in v))):
                what = "three positive numbers" if name == "std" else "three finite numbers"
                raise CheckpointError(f"config.{name} must be {what} (one per RGB channel), got {_show(v)}")
    for name in ("group_names", "method_names"):
        if name in d and (not isinstance(d[name], list) or not all(isinstance(x, str) for x in d[name])):
            raise CheckpointError(f"config.{name} must be a list of names, got {_show(d[name])}")




def _default_methods(n: int) -> list[str]:
    return ["real"] + [f"fake_{i}" for i in range(1, n)]


@dataclass
class ModelConfig:
    """What is needed to rebuild a PG-FDD network and feed it: backbone, input, head sizes, names."""

    backbone: str = "efficientnet_lite0"
    input_size: int = 256
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    num_spe: int = 6
    num_sha: int = 2
    num_fair: int = 8
    num_fused: int = 2
    feature_channels: int = 512
    group_names: list[str] = field(default_factory=lambda: list(OFFICIAL_GROUPS))
    method_names: list[str] = field(default_factory=lambda: _default_methods(6))

    def __post_init__(self) -> None:
        # a config read from JSON gives lists: the same numbers as a tuple (of the length given)
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]  # length not checked here
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]  # length not checked here
        self.group_names = [str(g) for g in self.group_names]
        self.method_names = [str(m) for m in self.method_names]
        if len(self.group_names) != self.num_fair:
            if self.group_names == OFFICIAL_GROUPS:  # default names, custom size: number them
                self.group_names = [f"group_{i}" for i in range(self.num_fair)]
            else:
                raise CheckpointError(
                    f"config: {len(self.group_names)} group_names for num_fair={self.num_fair}")
        if len(self.method_names) != self.num_spe:
            if self.method_names == _default_methods(6):
                self.method_names = _default_methods(self.num_spe)
            else:
                raise CheckpointError(
                    f"config: {len(self.method_names)} method_names for num_spe={self.num_spe}")
        if self.num_fused < 2 or self.num_sha < 2:
            raise CheckpointError("config: num_sha and num_fused must be at least 2 (index 1 is 'fake')")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """A config read from a file (checkpoint metadata): every field checked first (check_config_dict)."""
        check_config_dict(d)
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"config: {exc}") from None
