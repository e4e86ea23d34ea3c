"""The model configuration that travels inside every checkpoint, so a file alone rebuilds its network."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from train.errors import CheckpointError
from train.labels import OFFICIAL_GROUPS




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
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
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
        if not isinstance(d, dict):
            raise CheckpointError("config: expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"config: unknown keys {', '.join(unknown)}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"config: {exc}") from None
