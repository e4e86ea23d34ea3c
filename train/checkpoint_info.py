"""A checkpoint's identity without torch: its metadata, config, threshold and sha256, read once.

Why a module of its own: scanning needs only what a checkpoint says about itself (which model,
which input size, which threshold, which file by hash) before any backend loads it, and the
scanner's worker processes and the ONNX Runtime backend must not pay for importing torch to
learn it. train.checkpoint (which needs torch to save and load weights) reads metadata here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.errors import CheckpointError

FORMAT = "dfscan.checkpoint/1"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints reach hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The raw string metadata of a dfscan checkpoint; CheckpointError if the file is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception:  # safetensors raises its own error types for a bad header
        raise CheckpointError(f"{path}: not a safetensors file (dfscan reads .safetensors checkpoints only)") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dfscan checkpoint (safetensors without dfscan metadata)")
    return meta


@dataclass(frozen=True)
class CheckpointInfo:
    """Who a checkpoint is: read (and hashed) once per scan, then handed to the backends and workers."""

    path: Path
    sha256: str
    config: dict[str, Any]  # the ModelConfig as stored (see model_config)
    threshold: float  # the calibrated decision threshold
    kind: str | None  # "full" | "deploy"
    deploy_graph: str | None  # deploy files: "single_pass" | "two_pass"
    caveat: str | None  # the model card's one-line warning, shown beside every verdict summary
    metadata: dict[str, str]  # the raw metadata, for what the fields above leave out

    @classmethod
    def read(cls, path: str | Path) -> "CheckpointInfo":
        """Metadata and sha256 of `path`; CheckpointError (one line, exit 2) when it is not a usable checkpoint."""
        path = Path(path)
        meta = read_metadata(path)
        try:
            config = json.loads(meta.get("config", "{}"))
            threshold = float(meta["threshold"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: bad checkpoint metadata ({exc})") from None
        return cls(path, file_sha256(path), config, threshold, meta.get("kind"), meta.get("deploy_graph"),
                   meta.get("caveat") or None, meta)

    @property
    def input_size(self) -> int:
        return int(self.config.get("input_size", 256))

    def model_config(self) -> Any:
        """The config as a train.config.ModelConfig (CheckpointError if it does not describe a model)."""
        return _model_config(self.path, lambda: self.metadata["config"])


def read_model_config(path: str | Path) -> Any:
    """The ModelConfig stored in a checkpoint's metadata, without hashing the file or building the network."""
    return _model_config(Path(path), lambda: read_metadata(path)["config"])


def _model_config(path: Path, config_json: Any) -> Any:
    from train.config import ModelConfig

    try:
        return ModelConfig.from_dict(json.loads(config_json()))
    except (KeyError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: bad checkpoint metadata ({exc})") from None
