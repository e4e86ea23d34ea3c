"""How a scan uses the machine's cores: worker processes, inference threads, and where inference runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.base import cpu_threads
from scanner.options import ScanOptions


@dataclass
class ResourcePlan:
    """How a scan uses the machine: worker processes, inference threads, and where inference runs."""

    workers: int
    threads: int | None  # inference threads of a CPU backend (per worker when in_workers); None on a GPU
    in_workers: bool  # True: each worker scores its own crops; False: the main process batches across files


def resource_plan(options: ScanOptions, files: int, device: str) -> ResourcePlan:
    """Where the cores go for a scan of `files` files on a backend running on `device`.

    On a GPU the workers get every core and the main process batches crops across files for
    it. On the CPU, scoring a default clip (32 crops, two EfficientNet-Lite0 passes each) costs
    about as much as decoding and detecting it, and the same cores do both: one main-process
    inference thread then becomes the critical path while the workers wait on it, so by
    default each worker scores its own crops with a one-thread session and every core does
    every stage (bench/scan.py on 2 cores: 2.x the decode-only time against 3.4x with one
    worker plus one inference thread). `infer_in_workers=False` restores main-process
    inference on the CPU (workers get half the cores, inference the rest).
    """
    cores = cpu_threads()  # affinity-aware: containers and taskset are honoured
    files = max(1, files)
    if device != "cpu":
        return ResourcePlan(max(1, min(options.workers or cores, files)), None, False)
    in_workers = True if options.infer_in_workers is None else bool(options.infer_in_workers)
    if in_workers:
        return ResourcePlan(max(1, min(options.workers or cores, files)), options.threads or 1, True)
    workers = max(1, min(options.workers or max(1, cores // 2), files))
    return ResourcePlan(workers, options.threads or max(1, cores - workers), False)


def fit_cpu_threads(backend: Any, weights: Path, threads: int, batch_size: int | None) -> Any:
    """Give a CPU backend only the cores the workers leave free.

    The workers keep every core busy decoding and detecting; an inference pool sized for the
    whole machine on top of them oversubscribes it, and ONNX Runtime's spinning threads then
    slow everything down (bench/scan.py measures it).
    """
    if getattr(backend, "device", "") != "cpu":
        return backend
    if backend.name == "onnxruntime" and getattr(backend, "threads", threads) != threads:
        from engines.onnxruntime import OnnxRuntimeBackend

        onnx_path = backend.onnx_path
        backend.close()
        return OnnxRuntimeBackend(weights, batch_size=batch_size, threads=threads, onnx_path=onnx_path)
    if backend.name == "torch":
        import torch

        torch.set_num_threads(threads)
    return backend
