"""ONNX export of the inference subgraph (`PGFDDDeploy`: one backbone pass where exact) -> p_fake, checked.

Cached exports are found by dfscan.engines.onnx_cache, which calls this module (and so torch) only on a miss.

The graph: input `crops` float32 (N, 3, S, S) normalised, dynamic N; output `p_fake` float32 (N,).
It is FP16-safe by construction of the model: `dfscan.train.model.adain` computes its statistics in
float32 (the squared deviations of FP16 features can exceed 65504) and the softmax runs on float32
logits. `fp16=True` exports the same network with FP16 weights and compute but float32 I/O, so
strongly typed consumers (TensorRT >= 11, ONNX Runtime) get FP16 kernels with those two islands
kept in float32 by explicit Casts.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dfscan.core.errors import InputError
from dfscan.core.files import make_public
from dfscan.engines.base import check_crops, normalise
from dfscan.engines.onnx_model import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, check_onnx, ort_session

FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2


class HalfIO(nn.Module):
    """FP16 weights and compute with float32 input and output (what a mixed-precision engine sees)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).half().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def _quiet():
    """Silence the exporter's progress prints and warnings: a user sees one line, not fifty."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript"):
        logger = logging.getLogger(name)
        old = logger.level
        logger.setLevel(logging.ERROR)
        stack.callback(logger.setLevel, old)
    return stack


def export_module(model: nn.Module, out: str | Path, *, input_size: int = 256, opset: int = DEFAULT_OPSET,
                  fp16: bool = False) -> Path:
    """Export a PGFDDDeploy (eval, CPU) to one self-contained ONNX file, written atomically."""
    if opset < 17:
        raise InputError(f"opset {opset} is too old: dfscan exports opset 17 or newer")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = HalfIO(model) if fp16 else model
    module = module.to("cpu").eval()
    example = torch.zeros(2, 3, input_size, input_size)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            batch = torch.export.Dim("batch", min=1, max=65536)
            try:
                torch.onnx.export(
                    module, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    opset_version=opset, dynamic_shapes=({0: batch},), external_data=False, dynamo=True)
            except TypeError:  # torch < 2.6: no dynamo/external_data keywords, TorchScript exporter
                torch.onnx.export(
                    module, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    opset_version=opset, dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        check_onnx(tmp, input_size=input_size)
        make_public(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def parity_crops(n: int = 4, size: int = 256, seed: int = 0) -> np.ndarray:
    """Deterministic stand-in crops (smooth noise) when the caller has no real faces at hand."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(n, size // 16, size // 16, 3)).astype(np.float32)
    big = np.repeat(np.repeat(small, 16, axis=1), 16, axis=2)
    return np.clip(big + rng.normal(0, 12, size=big.shape), 0, 255).astype(np.uint8)


def torch_reference(model: nn.Module, crops: np.ndarray, config) -> np.ndarray:
    """p_fake from the FP32 torch model on CPU: the reference every other backend is held to."""
    x = torch.from_numpy(normalise(check_crops(crops, config.input_size), config.mean, config.std))
    model = model.to("cpu").float().eval()
    with torch.inference_mode():
        return model(x).float().numpy()


def onnx_parity(path: str | Path, model: nn.Module, config, crops: np.ndarray) -> dict[str, Any]:
    """Run crops through ONNX Runtime and the torch model; max and mean |Δp_fake|."""
    ref = torch_reference(model, crops, config)
    session = ort_session(path)
    got = session.run([OUTPUT_NAME], {INPUT_NAME: normalise(crops, config.mean, config.std)})[0]
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    return {"crops": int(len(crops)), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "reference": "torch fp32 cpu", "runtime": "onnxruntime cpu"}


def export_with_parity(weights: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET, fp16: bool = False,
                       crops: np.ndarray | None = None, step: Callable[[str], None] | None = None
                       ) -> tuple[Path, dict[str, Any]]:
    """Export a checkpoint and prove the file scores like torch; InputError if it does not.

    `step(text)` is told each phase as it starts (the export takes tens of seconds on a CPU).
    """
    from dfscan.train.checkpoint import load_checkpoint

    step = step or (lambda _text: None)
    step("loading the checkpoint into torch")
    model, config, info = load_checkpoint(weights, deploy=True, device="cpu")
    step("exporting to ONNX with torch.export (the slow part: about 30 s on a CPU)")
    path = export_module(model, out, input_size=config.input_size, opset=opset, fp16=fp16)
    if crops is None or len(crops) == 0:
        crops = parity_crops(4, config.input_size)
    step(f"checking the ONNX file against torch on {len(crops)} crops")
    parity = onnx_parity(path, model, config, crops)
    parity.update(precision="fp16" if fp16 else "fp32", weights_sha256=info["sha256"], opset=opset)
    tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    if not parity["max_abs_diff"] <= tolerance:
        path.unlink(missing_ok=True)
        raise InputError(f"ONNX export of {weights} disagrees with torch: max |Δp| {parity['max_abs_diff']:.2e} > "
                         f"{tolerance:g}; the file was not kept")
    return path, parity


def export_onnx(weights: str | Path, out: str | Path, opset: int = DEFAULT_OPSET, *, fp16: bool = False) -> Path:
    """Export a checkpoint to one ONNX file, checked and parity-tested against torch."""
    return export_with_parity(weights, out, opset=opset, fp16=fp16)[0]
