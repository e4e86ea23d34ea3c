"""Benchmark: the exact single-pass detector graph vs PG-FDD's two-pass graph, in ONNX Runtime.

    python bench/single_pass.py [--state recipes/state/...full.safetensors] [--seconds 5]

Both graphs come from one full checkpoint (the committed training state of the shipped model by
default): `deploy()` (encoder_f → block_sha → head_fused) and `deploy(single_pass=False)` (also
encoder_fair, block_fair and AdaIN, as the official code computes p_fake). Prints faces/s of
each at batch 1 and 8 with 1 and 2 ONNX Runtime threads, the ratio, and max |Δp| on real photos.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "recipes" / "state" / "pgfdd_efficientnet_lite0_dfdc_utk_full.safetensors"
IMAGES = ROOT / "tests" / "data" / "media" / "images"


def faces_per_second(session, x: np.ndarray, seconds: float) -> float:
    session.run(None, {"crops": x})  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(None, {"crops": x})
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", type=Path, default=STATE, help="a full (training) checkpoint")
    ap.add_argument("--seconds", type=float, default=5.0, help="timing per measurement")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import cv2
    import onnxruntime as ort

    from dfscan.engines.base import normalise
    from dfscan.engines.export import export_module
    from dfscan.train.checkpoint import load_checkpoint

    model, cfg, _ = load_checkpoint(a.state, deploy=False)
    size = cfg.input_size
    photos = [cv2.resize(cv2.imread(str(p))[:, :, ::-1], (size, size)) for p in sorted(IMAGES.glob("*.jpg"))]
    crops = np.ascontiguousarray(np.stack(photos))
    x = normalise(crops, cfg.mean, cfg.std)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: export_module(model.deploy(single_pass=single), Path(tmp) / f"{name}.onnx", input_size=size)
                 for name, single in (("single", True), ("two", False))}
        probs = {}
        print(f"model: {a.state.name}, {cfg.backbone} at {size} px; {len(crops)} real photos")
        for threads in (1, 2):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                        for k, p in paths.items()}
            for batch in (1, 8):
                xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
                fps = {k: faces_per_second(s, xb, a.seconds) for k, s in sessions.items()}
                print(f"threads {threads} batch {batch}: single pass {fps['single']:7.1f} faces/s, two passes "
                      f"{fps['two']:7.1f} faces/s, ratio {fps['single'] / fps['two']:.2f}x")
            probs = {k: s.run(None, {"crops": x})[0] for k, s in sessions.items()}
    print(f"max |p_single - p_two| on the photos: {np.abs(probs['single'] - probs['two']).max():.2e}")


if __name__ == "__main__":
    main()
