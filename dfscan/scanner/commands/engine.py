"""`dfscan build-engine`: compile the detector for this machine (TensorRT FP16 engine or ONNX)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from dfscan.scanner.console import Steps, console, err_console, friendly_errors, reflow

EXAMPLE = """
Examples:

    dfscan build-engine                                  # TensorRT FP16, batch 1..64, user cache
    dfscan build-engine --faces clips/ --max-batch 128   # parity measured on your own faces
    dfscan build-engine --format onnx --out detector.onnx
"""


class Format(str, Enum):
    tensorrt = "tensorrt"
    onnx = "onnx"


class Via(str, Enum):
    trt = "trt"
    torch_tensorrt = "torch-tensorrt"


def _parity_crops(faces: list[Path], size: int):
    """Real face crops for the parity check: from --faces, else synthetic with a warning."""
    from dfscan.engines.export import parity_crops

    if faces:
        from dfscan.scanner.doctor import crops_from_media

        crops = crops_from_media(faces, size=size, limit=16)
        if len(crops):
            return crops, f"{len(crops)} face crops from {', '.join(str(f) for f in faces)}"
        err_console.print("[yellow]warning:[/] no face found in --faces; measuring parity on synthetic crops")
    crops = parity_crops(8, size)
    return crops, "8 synthetic crops (pass --faces PATH for real faces)"


def _onnx_target(out: Path) -> Path:
    """The file `--format onnx --out` names: the path itself when it ends in .onnx, else model.onnx in it."""
    return out if out.suffix == ".onnx" else out / "model.onnx"


def _print_parity(parity: dict, source: str) -> None:
    console.print(f"parity vs torch FP32 on {source}: max |Δp| {parity['max_abs_diff']:.2e}, "
                  f"mean {parity['mean_abs_diff']:.2e}")


@friendly_errors
def build_engine(
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Checkpoint (.safetensors); default: the shipped detector."),
    fmt: Format = typer.Option(Format.tensorrt, "--format", "-f", help="tensorrt (FP16 engine for this GPU) or onnx (portable, FP32)."),
    max_batch: int = typer.Option(64, "--max-batch", min=1, max=4096, help="Largest batch the TensorRT profile accepts (min 1)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Engine folder (tensorrt) or .onnx file/folder (onnx); default: the user cache."),
    via: Via = typer.Option(Via.trt, "--via", help="trt: ONNX + TensorRT builder; torch-tensorrt: torch_tensorrt dynamo."),
    workspace_gb: float = typer.Option(4.0, "--workspace-gb", min=0.25, help="TensorRT builder workspace limit (GiB)."),
    faces: Optional[List[Path]] = typer.Option(None, "--faces", help="Images/videos/crop folders whose faces measure parity (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress lines, only the result."),
) -> None:
    """Build a TensorRT FP16 engine (or an ONNX file) of the detector for fast scans."""
    with Steps(enabled=not quiet) as step:  # never silent: the ONNX export alone takes ~30 s on a CPU
        _build(weights, fmt, max_batch, out, via, workspace_gb, list(faces or []), step)


def _build(weights: Optional[Path], fmt: Format, max_batch: int, out: Optional[Path], via: Via, workspace_gb: float,
           faces: list[Path], step: Steps) -> None:
    from dfscan.engines.base import checkpoint_config
    from dfscan.scanner.outputs import check_output_file, check_output_folder, check_outputs_apart

    if weights is None:
        from dfscan.scanner.assets import default_weights

        weights = default_weights()
    if out is not None:  # before the slow export: an unwritable --out used to fail after it
        written = _onnx_target(out) if fmt is Format.onnx else out
        (check_output_file if fmt is Format.onnx else check_output_folder)(written, "--out")
        check_outputs_apart([written], [weights, *faces])
    if fmt is Format.tensorrt:
        from dfscan.engines.tensorrt import import_tensorrt

        import_tensorrt()  # fail first, with the install hint, before any slow work
    step(f"reading {weights.name}")
    config = checkpoint_config(weights)
    step("finding faces for the parity check" if faces else "making crops for the parity check")
    crops, source = _parity_crops(faces, config.input_size)

    if fmt is Format.onnx:
        from dfscan.engines.export import export_with_parity
        from dfscan.engines.onnx_cache import cached_onnx_path, record_export
        from dfscan.train.checkpoint_info import file_sha256

        target = cached_onnx_path(file_sha256(weights)) if out is None else _onnx_target(out)
        path, parity = export_with_parity(weights, target, crops=crops, step=step)
        if out is None:  # the cache entry scans use: bound to this file (dfscan.engines.onnx_cache)
            record_export(path, parity["weights_sha256"])
        step.done()
        console.print(f"wrote [bold]{escape(str(path))}[/] (opset {parity['opset']}, dynamic batch, input crops "
                      f"float32 Nx3x{config.input_size}x{config.input_size}, output p_fake)")
        _print_parity(parity, source)
        if out is None:
            console.print(f"scans of {escape(weights.name)} use this file (it is their cache entry): "
                          f"dfscan scan PATH --backend onnxruntime --weights {escape(str(weights))}")
        else:
            console.print(f"{escape(str(path))} is a standalone model for ONNX Runtime or any ONNX runtime; dfscan "
                          f"scan keeps its own cached export of {escape(weights.name)} and takes --weights "
                          f"{escape(str(weights))}, not the .onnx file")
        return

    from dfscan.engines.tensorrt import SIDECAR_FILE, read_sidecar
    from dfscan.engines.tensorrt import build_engine as build

    step(f"building the TensorRT engine (FP16, batch 1..{max_batch}; minutes on a large model)")
    engine_dir = build(weights, out, crops=crops, max_batch=max_batch, workspace_gb=workspace_gb,
                       via=via.value, log=lambda msg: console.log(msg))
    step.done()
    sidecar = read_sidecar(engine_dir)
    console.print(f"wrote [bold]{escape(str(engine_dir))}[/] (TensorRT {sidecar['tensorrt_version']}, "
                  f"{sidecar['gpu_name']}, FP16, batch 1..{max_batch}, built in {sidecar['build_seconds']:.0f} s; "
                  f"details in {SIDECAR_FILE})")
    _print_parity(sidecar["parity"], source)
    hint = "" if out is None else f" --engine {escape(str(engine_dir))}"
    console.print(f"scans pick it up with --backend auto{hint}")


def register(app: typer.Typer) -> None:
    app.command("build-engine", epilog=reflow(EXAMPLE))(build_engine)
