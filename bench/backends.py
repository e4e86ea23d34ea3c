"""Backend throughput: ONNX Runtime vs torch on the CPU (batch 1 and 8) for the default model, and,
where torch sees a GPU, torch CUDA FP16 faces/s at batch 1, 8, 64 and 256 for both backbones, single-
and two-pass graphs, with FP16 parity on the scanner's crops of the shared real media.

Uses the shipped default weights when dfscan/scanner/assets/detector holds them, else a random-init
EfficientNet-Lite0 checkpoint (throughput does not depend on the weights; it says which it used).
Prints the machine's load average: on a shared box, figures move with it.

    python bench/backends.py [--seconds 6] [--threads N] [--gpu-dry-run]
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
MEDIA = Path(__file__).resolve().parents[1] / "tests" / "data" / "media"  # the shared real media


def _crops(n: int, size: int) -> np.ndarray:
    from dfscan.engines.export import parity_crops

    return parity_crops(n, size, seed=n)


def _weights(tmp: Path) -> tuple[Path, str]:
    import torch

    from dfscan.train.checkpoint import save_checkpoint
    from dfscan.train.config import ModelConfig
    from dfscan.train.model import PGFDDDeploy

    shipped = sorted((Path(__file__).resolve().parents[1] / "dfscan" / "scanner" / "assets" / "detector").glob("*.safetensors"))
    if shipped:
        return shipped[0], f"shipped weights {shipped[0].name}"
    torch.manual_seed(0)
    config = ModelConfig(backbone="efficientnet_lite0")
    path = save_checkpoint(tmp / "efficientnet_lite0.safetensors", PGFDDDeploy(config).eval(), config, threshold=0.5,
                           provenance={"note": "bench random init"})
    return path, "random-init efficientnet_lite0 (no shipped weights found)"


def faces_per_second(backend, batch: int, seconds: float) -> float:
    """Steady-state faces/s: one warm-up call, then as many calls as fit in `seconds` (at least 3)."""
    crops = _crops(batch, backend.config.input_size)
    backend.predict(crops)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        backend.predict(crops)
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def cpu_bench(weights: Path, seconds: float, threads: int | None) -> None:
    import torch

    from dfscan.engines.onnxruntime import OnnxRuntimeBackend
    from dfscan.engines.torch import TorchBackend

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


def graph_rates(backbone: str, size: int, device: str, fp16: bool, batches: tuple[int, ...],
                seconds: float) -> dict[str, list[float]]:
    """faces/s of the single-pass and the two-pass graph of one random-init model (weights do not change speed)."""
    import torch

    from dfscan.train.config import ModelConfig
    from dfscan.train.model import PGFDD

    torch.manual_seed(0)
    full = PGFDD(ModelConfig(backbone=backbone, input_size=size)).eval()
    dtype = torch.float16 if fp16 else torch.float32
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rates: dict[str, list[float]] = {}
    for name, single in (("single-pass", True), ("two-pass", False)):
        module = full.deploy(single_pass=single).to(device=device, dtype=dtype, memory_format=torch.channels_last)
        rates[name] = []
        for batch in batches:
            x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                module(x)  # warm-up (CUDA context, kernel loading)
                sync()
                calls, start = 0, time.perf_counter()
                while calls < 3 or time.perf_counter() - start < seconds:
                    module(x)
                    calls += 1
                sync()
            rates[name].append(calls * batch / (time.perf_counter() - start))
    return rates


def cuda_bench(weights: Path, note: str, seconds: float, device: str = "cuda",
               batches: tuple[int, ...] = (1, 8, 64, 256)) -> None:
    """Issue 12's GPU table: FP16 faces/s of both graphs of both backbones, and FP16 parity of the shipped model.

    `device="cpu"` runs the same code in FP32 (a dry run on a machine without a GPU).
    """
    from dfscan.engines.export import torch_reference
    from dfscan.engines.torch import TorchBackend
    from dfscan.scanner.doctor import crops_from_media
    from dfscan.train.checkpoint import load_checkpoint

    fp16 = device != "cpu"
    precision = "FP16" if fp16 else "FP32"
    model, config, _ = load_checkpoint(weights, deploy=True)
    size = config.input_size
    print(f"\n{device} torch {precision}, faces/s by batch at the default model's {size} px "
          "(random-init weights; channels_last)")
    print(f"{'backbone':>18} {'graph':>12}  " + "  ".join(f"{b:>7}" for b in batches) + "   single/two")
    for backbone in ("efficientnet_lite0", "xception"):
        rates = graph_rates(backbone, size, device, fp16, batches, seconds)
        for name, row in rates.items():
            ratio = "  ".join(f"{s / t:.2f}x" for s, t in zip(rates["single-pass"], rates["two-pass"])) if name == "two-pass" else ""
            print(f"{backbone:>18} {name:>12}  " + "  ".join(f"{r:>7.0f}" for r in row) + f"   {ratio}")
    backend = TorchBackend(weights, device, fp16=fp16)
    crops = crops_from_media([MEDIA / "images", MEDIA / "videos"], size=size, limit=10_000, frames=32)
    if not len(crops):
        raise SystemExit(f"no face found in {MEDIA}: cannot check parity")
    diff = np.abs(backend.predict(crops) - torch_reference(model, crops, config))
    print(f"{precision} parity vs torch FP32 on the CPU, {note}, the scanner's {len(crops)} crops of the shared media: "
          f"max |Δp| {diff.max():.2e}, mean {diff.mean():.2e}")
    backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both backends")
    parser.add_argument("--gpu-dry-run", action="store_true",
                        help="run the GPU table's code on the CPU in FP32 (batches 1 and 8) to check it")
    args = parser.parse_args()
    import onnxruntime
    import torch

    from dfscan.engines.torch import cuda_device

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ.setdefault("DFSCAN_CACHE", str(tmp / "cache"))
        weights, note = _weights(tmp)
        print(f"model: {note}")
        print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
              f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.gpu_dry_run:
            cuda_bench(weights, note, min(args.seconds, 0.5), "cpu", (1, 8))
            return
        cpu_bench(weights, args.seconds, args.threads)
        if cuda_device() is not None:
            cuda_bench(weights, note, args.seconds)
        else:
            print("\nno CUDA GPU visible to torch: the FP16 figures need one")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
