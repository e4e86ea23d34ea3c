"""What every backend shares: the Backend protocol, crop checks, normalisation and the cache folder.

Backends take uint8 RGB crops (N, 256, 256, 3), the exact output of `dfscan.scanner.crop.crop_face`, and
return float32 p_fake (N,). Normalisation happens here, once, from the checkpoint's mean/std, so
no caller can feed a backend differently scaled pixels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from dfscan.core.errors import InputError

if TYPE_CHECKING:
    from dfscan.train.checkpoint_info import CheckpointInfo


@runtime_checkable
class Backend(Protocol):
    """A loaded detector that scores face crops on one device."""

    name: str  # dfscan.engines.select.BACKEND_NAMES: "tensorrt" | "torch" | "onnxruntime"
    device: str  # "cpu" | "cuda:0"
    precision: str  # "fp32" | "fp16"
    batch_size: int  # preferred batch size on this device

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, S, S, 3) -> float32 p_fake (N,)."""
        ...

    def close(self) -> None:
        """Free sessions / device memory now rather than at garbage collection."""
        ...


def check_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """Validate the crop batch once, with a one-line error, so every backend rejects bad input alike."""
    if not isinstance(crops, np.ndarray):
        raise InputError(f"crops must be a numpy array, got {type(crops).__name__}")
    if crops.dtype != np.uint8:
        raise InputError(f"crops must be uint8 RGB, got dtype {crops.dtype}")
    if crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
        raise InputError(f"crops must have shape (N, {size}, {size}, 3), got {tuple(crops.shape)}")
    return crops


def normalise(crops: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 NHWC RGB -> float32 NCHW, (x/255 - mean)/std per channel (the training preprocessing)."""
    scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(1, 3, 1, 1)
    # annotated: numpy 2.4's stubs type float32 / float32 as complex128
    shift: np.ndarray = (np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(1, 3, 1, 1)
    x = crops.transpose(0, 3, 1, 2).astype(np.float32)
    x *= scale
    x -= shift
    return np.ascontiguousarray(x)


def chunks(n: int, size: int) -> Iterator[slice]:
    """Slices of at most `size` covering range(n): backends run large batches in pieces."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def cache_dir() -> Path:
    """The user cache (ONNX exports, TensorRT engines): $DFSCAN_CACHE, else ~/.cache/dfscan."""
    env = os.environ.get("DFSCAN_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "dfscan"


def cpu_threads() -> int:
    """CPU cores this process may use (affinity-aware, so containers and taskset are honoured)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def checkpoint_config(weights: "str | Path | CheckpointInfo"):
    """The ModelConfig stored in a checkpoint's metadata, without building the network (or hashing the file)."""
    from dfscan.train.checkpoint_info import CheckpointInfo, read_model_config

    if isinstance(weights, CheckpointInfo):
        return weights.model_config()
    return read_model_config(weights)
