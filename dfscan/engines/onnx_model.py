"""The exported ONNX file's contract: its input and output names, opset, checks and CPU session.

Why a module of its own: the export (dfscan.engines.export), the cache of exports (dfscan.engines.onnx_cache)
and the ONNX Runtime backend all need these, and the backend uses the cache, which exports on a
miss: kept in any one of them, the three would import each other in a circle. No torch here.
"""

from __future__ import annotations

from pathlib import Path

from dfscan.core.errors import InputError
from dfscan.engines.base import cpu_threads

INPUT_NAME = "crops"
OUTPUT_NAME = "p_fake"
DEFAULT_OPSET = 18


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


def ort_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session with an explicit thread count (the default grabs every core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads or min(cpu_threads(), 8))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
