"""A checkpoint's identity without torch: its metadata, config, threshold and sha256, read once.

Why a module of its own: scanning needs only what a checkpoint says about itself (which model,
which input size, which threshold, which file by hash) before any backend loads it, and the
scanner's worker processes and the ONNX Runtime backend must not pay for importing torch to
learn it. dfscan.train.checkpoint (which needs torch to save and load weights) reads metadata here.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfscan.core.errors import CheckpointError

FORMAT = "dfscan.checkpoint/1"
KINDS = ("full", "deploy")
DTYPES = ("float32", "float16")
DEPLOY_GRAPHS = ("single_pass", "two_pass")


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
    check_metadata(path, meta)
    return meta


def _json_field(meta: dict[str, str], name: str) -> Any:
    """A JSON-valued metadata field; CheckpointError naming it when it does not parse."""
    try:
        return json.loads(meta[name])
    except (ValueError, RecursionError):  # RecursionError: a deeply nested value
        raise CheckpointError(f"{name} is not valid JSON") from None


def check_metadata(path: Path, meta: dict[str, str]) -> None:
    """Every field of a checkpoint's metadata, checked once where any reader gets it (read_metadata).

    Why here: the metadata is user input that scans, doctor, build-engine and training all trust
    (a 20000-px input_size allocated >10 GB before any error; a threshold of 5 or nan was taken
    as calibrated). One line, exit 2, naming the field.
    """
    from dfscan.train.config import ModelConfig

    try:
        if meta.get("kind") not in KINDS:
            raise CheckpointError(f"kind must be {' or '.join(KINDS)}, got {meta.get('kind')!r:.40}")
        if "config" not in meta:
            raise CheckpointError("config is missing")
        ModelConfig.from_dict(_json_field(meta, "config"))  # every field's type and range (check_config_dict)
        if "threshold" not in meta:
            raise CheckpointError("threshold is missing")
        try:
            threshold = float(meta["threshold"])
        except ValueError:
            threshold = math.nan
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise CheckpointError(f"threshold must be a number from 0 to 1, got {meta['threshold']!r:.40}")
        if "provenance" in meta and not isinstance(_json_field(meta, "provenance"), dict):
            raise CheckpointError("provenance must be a JSON object")
        for name, allowed in (("dtype", DTYPES), ("deploy_graph", DEPLOY_GRAPHS)):
            if name in meta and meta[name] not in allowed:
                raise CheckpointError(f"{name} must be {' or '.join(allowed)}, got {meta[name]!r:.40}")
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: bad checkpoint metadata: {exc}") from None


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
        """The config as a dfscan.train.config.ModelConfig (CheckpointError if it does not describe a model)."""
        return _model_config(self.path, lambda: self.metadata["config"])


def read_model_config(path: str | Path) -> Any:
    """The ModelConfig stored in a checkpoint's metadata, without hashing the file or building the network."""
    return _model_config(Path(path), lambda: read_metadata(path)["config"])


def _model_config(path: Path, config_json: Any) -> Any:
    from dfscan.train.config import ModelConfig

    try:
        return ModelConfig.from_dict(json.loads(config_json()))
    except (KeyError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: bad checkpoint metadata ({exc})") from None
