"""Backend throughput: ONNX Runtime vs torch on the CPU (batch 1 and 8) for the default model, and,
where torch sees a GPU, torch CUDA FP16 at batch 1, 8 and 64 for both backbones with FP16 parity.

Uses the shipped default weights when scanner/assets/detector holds them, else a random-init
EfficientNet-Lite0 checkpoint (throughput does not depend on the weights; it says which it used).
Prints the machine's load average: on a shared box, figures move with it.

    python bench/backends.py [--seconds 6] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _crops(n: int) -> np.ndarray:
    from engines.export import parity_crops

    return parity_crops(n, 256, seed=n)


def _weights(tmp: Path, backbone: str = "efficientnet_lite0") -> tuple[Path, str]:
    import torch

    from train.checkpoint import save_checkpoint
    from train.config import ModelConfig
    from train.model import PGFDDDeploy

    shipped = sorted((Path(__file__).resolve().parents[1] / "scanner" / "assets" / "detector").glob("*.safetensors"))
    if backbone == "efficientnet_lite0" and shipped:
        return shipped[0], f"shipped weights {shipped[0].name}"
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone)
    path = save_checkpoint(tmp / f"{backbone}.safetensors", PGFDDDeploy(config).eval(), config, threshold=0.5,
                           provenance={"note": "bench random init"})
    return path, f"random-init {backbone} (no shipped weights found)"


def faces_per_second(backend, batch: int, seconds: float) -> float:
    """Steady-state faces/s: one warm-up call, then as many calls as fit in `seconds` (at least 3)."""
    crops = _crops(batch)
    backend.predict(crops)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        backend.predict(crops)
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def cpu_bench(weights: Path, seconds: float, threads: int | None) -> None:
    import torch

    from engines.onnxruntime import OnnxRuntimeBackend
    from engines.torch import TorchBackend

    threads = threads or min(len(os.sched_getaffinity(0)), 8)
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ort = OnnxRuntimeBackend(weights, threads=threads)
    print(f"ONNX Runtime session ready in {time.perf_counter() - t0:.1f} s (export cached at {ort.onnx_path})")
    backends = {"onnxruntime fp32": ort, "torch fp32": TorchBackend(weights, "cpu"),
                "torch fp32 channels_last": TorchBackend(weights, "cpu", channels_last=True)}
    print(f"\nCPU, {threads} threads, faces/s (higher is better)")
    print(f"{'batch':>5}  " + "  ".join(f"{name:>24}" for name in backends) + "  ort/torch")
    for batch in (1, 8):
        rates = {name: faces_per_second(b, batch, seconds) for name, b in backends.items()}
        ratio = rates["onnxruntime fp32"] / rates["torch fp32"]
        print(f"{batch:>5}  " + "  ".join(f"{r:>24.1f}" for r in rates.values()) + f"  {ratio:>8.2f}x")
    for b in backends.values():
        b.close()


def cuda_bench(tmp: Path, seconds: float) -> None:
    from engines.export import torch_reference
    from engines.torch import TorchBackend
    from train.checkpoint import load_checkpoint

    print("\nCUDA torch FP16, faces/s, and FP16 parity vs torch FP32 (CPU)")
    for backbone in ("efficientnet_lite0", "xception"):
        weights, note = _weights(tmp, backbone)
        backend = TorchBackend(weights, "cuda", fp16=True)
        model, config, _ = load_checkpoint(weights)
        crops = _crops(16)
        diff = np.abs(backend.predict(crops) - torch_reference(model, crops, config)).max()
        rates = [faces_per_second(backend, b, seconds) for b in (1, 8, 64)]
        print(f"{backbone:>18} ({note}): batch 1 {rates[0]:.0f}, 8 {rates[1]:.0f}, 64 {rates[2]:.0f}; "
              f"max |Δp| {diff:.2e}")
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both backends")
    args = parser.parse_args()
    import onnxruntime
    import torch

    from engines.torch import cuda_device

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ.setdefault("DFSCAN_CACHE", str(tmp / "cache"))
        weights, note = _weights(tmp)
        print(f"model: {note}")
        print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
              f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        cpu_bench(weights, args.seconds, args.threads)
        if cuda_device() is not None:
            cuda_bench(tmp, args.seconds)
        else:
            print("\nno CUDA GPU visible to torch: the FP16 figures need one")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
