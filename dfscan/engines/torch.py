"""PyTorch backend: FP32 on the CPU, FP16 on a CUDA GPU (no TensorRT needed).

Crops go to the device as uint8 and are normalised there: a quarter of the bytes over PCIe, and
NHWC uint8 permuted to NCHW is already channels_last in memory, the layout cuDNN's FP16 kernels
want.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dfscan.core.errors import InputError
from dfscan.engines.base import check_crops, chunks

CPU_BATCH = 8
CUDA_BATCH = 64


def cuda_device() -> str | None:
    """'cuda:0' when this torch build sees a GPU, else None."""
    try:
        return "cuda:0" if torch.cuda.is_available() else None
    except Exception:  # a broken driver install raises instead of answering False
        return None


class TorchBackend:
    """Scores crops with the PGFDDDeploy module itself."""

    name = "torch"

    def __init__(self, weights: str | Path, device: str = "cpu", fp16: bool = False, batch_size: int | None = None,
                 channels_last: bool | None = None):
        from dfscan.train.checkpoint import load_checkpoint

        if device.startswith("cuda"):
            if cuda_device() is None:
                raise InputError(f"--backend torch on CUDA: this torch ({torch.__version__}) sees no CUDA GPU")
            device = device if ":" in device else "cuda:0"
        elif device != "cpu":
            raise InputError(f"unknown device {device!r}: use cpu or cuda")
        if fp16 and device == "cpu":
            raise InputError("FP16 needs a CUDA GPU; on the CPU the torch backend runs FP32")
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.device = device
        self.precision = "fp16" if fp16 else "fp32"
        self.batch_size = int(batch_size or (CUDA_BATCH if device != "cpu" else CPU_BATCH))
        # channels_last on the CPU too: 26 vs 15 faces/s at batch 8 on 2 cores (bench/backends.py)
        self.channels_last = True if channels_last is None else channels_last
        self.weights = Path(weights)

        model, config, info = load_checkpoint(self.weights, deploy=True, device="cpu")
        self.config, self.info = config, info
        self._dtype = torch.float16 if fp16 else torch.float32
        model = model.to(device=device, dtype=self._dtype).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented; not in torch's overloads
        self._model: torch.nn.Module | None = model
        std = torch.tensor(config.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        mean = torch.tensor(config.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std

    def _prepare(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(crops).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        x = x.float().mul_(self._scale).sub_(self._shift)  # normalise in FP32, then cast
        x = x.to(self._dtype)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def predict(self, crops: np.ndarray) -> np.ndarray:
        crops = check_crops(crops, self.config.input_size)
        if self._model is None:
            raise InputError("this torch backend was closed")
        out = np.empty(len(crops), np.float32)
        with torch.inference_mode():
            for part in chunks(len(crops), self.batch_size):
                p = self._model(self._prepare(np.ascontiguousarray(crops[part])))
                out[part] = p.float().cpu().numpy().reshape(-1)
        return out

    def close(self) -> None:
        self._model = None
        if self.device != "cpu":
            torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return f"TorchBackend({self.weights.name}, {self.device}, {self.precision}, batch={self.batch_size})"
