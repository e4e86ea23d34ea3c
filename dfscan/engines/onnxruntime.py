"""ONNX Runtime on the CPU: the fastest backend on a machine without a GPU.

The first use of a checkpoint exports it to ONNX and caches the file by the weights' sha256
(dfscan.engines.onnx_cache.cached_onnx), so later scans start in a second. This module does not import
torch: scan workers build their own session from an exported file, and importing torch would
cost each of them more start-up time than a short clip takes to scan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfscan.core.errors import InputError
from dfscan.engines.base import check_crops, checkpoint_config, chunks, cpu_threads, normalise
from dfscan.engines.onnx_model import INPUT_NAME, OUTPUT_NAME, ort_session

CPU_BATCH = 8  # bench/backends.py: throughput is flat past 8 on CPU, latency keeps growing


class OnnxRuntimeBackend:
    """Scores crops with ONNX Runtime's CPUExecutionProvider in FP32.

    `onnx_path` and `config` (the checkpoint's ModelConfig) skip the export and the metadata
    read, which both need torch: a process that is handed them never imports it.
    """

    name = "onnxruntime"
    device = "cpu"
    precision = "fp32"

    def __init__(self, weights: str | Path, batch_size: int | None = None, threads: int | None = None,
                 onnx_path: str | Path | None = None, config=None):
        self.weights = Path(weights)
        self.config = config if config is not None else checkpoint_config(self.weights)
        if onnx_path is None:
            from dfscan.engines.onnx_cache import cached_onnx

            onnx_path = cached_onnx(self.weights)
        self.onnx_path = Path(onnx_path)
        self.threads = max(1, threads or min(cpu_threads(), 8))
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size or CPU_BATCH)
        self._session = ort_session(self.onnx_path, self.threads)

    def predict(self, crops: np.ndarray) -> np.ndarray:
        crops = check_crops(crops, self.config.input_size)
        if self._session is None:
            raise InputError("this ONNX Runtime backend was closed")
        out = np.empty(len(crops), np.float32)
        for part in chunks(len(crops), self.batch_size):
            x = normalise(crops[part], self.config.mean, self.config.std)
            out[part] = self._session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].reshape(-1)
        return out

    def close(self) -> None:
        self._session = None

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({self.onnx_path.name}, threads={self.threads}, batch={self.batch_size})"
