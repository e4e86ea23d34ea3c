"""The cache of ONNX exports, keyed by the weights' sha256: found and checked without torch.

Why apart from engines.export: a scan on the CPU only needs the cached file, and importing torch
(which exporting needs) costs about a second of every scan's start-up. Only a cache miss exports.
"""

from __future__ import annotations

from pathlib import Path

from engines.base import cache_dir, checkpoint_config
from engines.onnxruntime import INPUT_NAME, OUTPUT_NAME
from train.errors import InputError

DEFAULT_OPSET = 18
EXPORT_VERSION = "2"  # bump when the exported graph changes, so cached exports are redone


def check_onnx(path: str | Path, *, input_size: int = 256) -> None:
    """onnx.checker plus the I/O contract (names, float32, dynamic batch, fixed 3xSxS)."""
    import onnx

    path = Path(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises ValidationError and protobuf DecodeError alike
        raise InputError(f"{path}: not a valid ONNX model ({str(exc).strip().splitlines()[0]})") from None
    if [i.name for i in model.graph.input] != [INPUT_NAME] or [o.name for o in model.graph.output] != [OUTPUT_NAME]:
        raise InputError(f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    fixed = [d.dim_value for d in dims[1:]]
    if len(dims) != 4 or dims[0].dim_value != 0 or fixed != [3, input_size, input_size]:
        raise InputError(f"{path}: input must be (batch, 3, {input_size}, {input_size}) with a dynamic batch")
    if model.graph.input[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise InputError(f"{path}: input must be float32")


def cached_onnx_path(weights_sha: str, *, fp16: bool = False, opset: int = DEFAULT_OPSET) -> Path:
    """Where the export of these weights lives in the user cache (keyed by their sha256)."""
    tag = f"op{opset}-{'fp16' if fp16 else 'fp32'}-v{EXPORT_VERSION}"
    return cache_dir() / "onnx" / weights_sha / f"model-{tag}.onnx"


def cached_onnx(weights: str | Path, *, fp16: bool = False, weights_sha: str | None = None) -> Path:
    """The ONNX export of these weights, made once and reused by every later run on this machine.

    `weights_sha`: the file's sha256 when the caller has it already (a scan hashes its checkpoint once).
    """
    from train.checkpoint_info import file_sha256

    weights = Path(weights)
    if not weights.is_file():
        raise InputError(f"{weights}: weights file not found")
    path = cached_onnx_path(weights_sha or file_sha256(weights), fp16=fp16)
    if path.is_file():
        try:
            check_onnx(path, input_size=checkpoint_config(weights).input_size)
            return path
        except InputError:  # a damaged cache entry is redone, not trusted
            path.unlink(missing_ok=True)
    from engines.export import export_onnx  # torch: only on a miss

    return export_onnx(weights, path, fp16=fp16)
