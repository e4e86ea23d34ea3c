"""TensorRT FP16 engines: build from the ONNX export, save with a JSON sidecar, load only when it fits.

Written against the documented TensorRT Python API (trt.Builder, trt.OnnxParser, IBuilderConfig,
trt.Runtime, the named-tensor execution API of TensorRT 10+). TensorRT cannot be installed on the
machines this project is developed and tested on, so this module imports it lazily and everything
that does not need it (the sidecar logic, the FP16 ONNX graph) is plain Python tested without it.

Precision: TensorRT 8.x/10.x build the FP32 ONNX with BuilderFlag.FP16 (weak typing: TensorRT picks
FP16 kernels where they are faster). TensorRT 11 removed that flag and builds strongly typed
networks only, so there the FP16 ONNX (FP16 weights and compute, float32 I/O, AdaIN statistics and
softmax in float32) is what gets parsed. Either way the engine's I/O is float32.

Engine folder: `model.engine`, `engine.json` (sidecar), `timing.cache`, `model.onnx` (the graph
that was built, kept for inspection).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dfscan.core.errors import InputError
from dfscan.core.files import atomic_write_bytes
from dfscan.engines.base import cache_dir, check_crops, checkpoint_config, chunks

SIDECAR_FORMAT = "dfscan.engine/1"
ENGINE_FILE = "model.engine"
SIDECAR_FILE = "engine.json"
TIMING_CACHE_FILE = "timing.cache"
ONNX_FILE = "model.onnx"
VIAS = ("trt", "torch-tensorrt")
FP16_PARITY_TOLERANCE = 1e-2  # |Δp_fake| against torch FP32; FP16 usually lands near 1e-3

TRT_MISSING = ("TensorRT is not installed: pip install tensorrt (NVIDIA GPU + CUDA needed; see NVIDIA's "
               "TensorRT install guide), or use --format onnx, which works here")


def import_tensorrt():
    """The tensorrt module, or InputError with the one line a user needs."""
    try:
        import tensorrt as trt  # noqa: PLC0415 - lazy on purpose: most machines lack it
    except ImportError:
        raise InputError(TRT_MISSING) from None
    return trt


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None (never raises)."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return str(getattr(trt, "__version__", "unknown"))


def default_engine_dir(weights_sha: str) -> Path:
    """Where `dfscan build-engine` puts, and `--backend auto` looks for, the engine of these weights."""
    return cache_dir() / "engines" / weights_sha[:16]


# ---------------------------------------------------------------- sidecar (pure Python, tested here)

def _cc(value: Any) -> str:
    """Compute capability as 'major.minor' whatever form it came in ((9, 0), '9.0', 9.0)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{int(value[0])}.{int(value[1])}"
    return str(value)


def make_sidecar(*, weights_sha: str, weights_name: str, trt_version: str, gpu_name: str,
                 compute_capability: Any, precision: str, profile: dict[str, Any], parity: dict[str, Any],
                 via: str, engine_sha: str, build_seconds: float, workspace_gb: float,
                 input_name: str, output_name: str) -> dict[str, Any]:
    """The JSON written beside an engine: what it was built from, for, and how well it agrees."""
    return {
        "format": SIDECAR_FORMAT,
        "engine": ENGINE_FILE,
        "engine_sha256": engine_sha,
        "weights_sha256": weights_sha,
        "weights_name": weights_name,
        "tensorrt_version": trt_version,
        "gpu_name": gpu_name,
        "compute_capability": _cc(compute_capability),
        "precision": precision,
        "profile": profile,
        "input": input_name,
        "output": output_name,
        "via": via,
        "workspace_gb": workspace_gb,
        "parity": parity,
        "build_seconds": round(build_seconds, 2),
        "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def sidecar_mismatch(sidecar: dict[str, Any], *, weights_sha: str, trt_version: str | None, gpu_name: str | None,
                     compute_capability: Any) -> str | None:
    """Why an engine must not be used here (None when it fits).

    A TensorRT engine is only valid for the TensorRT version and GPU model it was built with, and it
    embeds the weights: any difference means wrong or failed inference, so each is checked.
    """
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        return f"not a dfscan engine sidecar (expected format {SIDECAR_FORMAT})"
    if sidecar.get("weights_sha256") != weights_sha:
        return (f"built from other weights (sha256 {str(sidecar.get('weights_sha256'))[:12]}…, "
                f"these are {weights_sha[:12]}…)")
    if trt_version is None:
        return "TensorRT is not installed here"
    if str(sidecar.get("tensorrt_version")) != str(trt_version):
        return f"built with TensorRT {sidecar.get('tensorrt_version')}, this machine has {trt_version}"
    if gpu_name is None:
        return "no CUDA GPU is visible here"
    if sidecar.get("gpu_name") != gpu_name:
        return f"built for {sidecar.get('gpu_name')}, this GPU is {gpu_name}"
    if _cc(sidecar.get("compute_capability")) != _cc(compute_capability):
        return (f"built for compute capability {sidecar.get('compute_capability')}, "
                f"this GPU has {_cc(compute_capability)}")
    parity = sidecar.get("parity") or {}
    worst = parity.get("max_abs_diff")
    if not isinstance(worst, (int, float)) or not worst <= FP16_PARITY_TOLERANCE:
        return f"its post-build parity check did not pass (max |Δp| {worst} > {FP16_PARITY_TOLERANCE})"
    return None


def read_sidecar(engine_dir: str | Path) -> dict[str, Any]:
    """The sidecar of an engine folder (InputError if the folder is not one)."""
    engine_dir = Path(engine_dir)
    path = engine_dir / SIDECAR_FILE
    if not path.is_file():
        raise InputError(f"{engine_dir}: no {SIDECAR_FILE} here; build an engine with: dfscan build-engine --out {engine_dir}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable engine sidecar ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: engine sidecar is not a JSON object")
    return data


def this_gpu() -> tuple[str | None, str | None]:
    """(GPU name, compute capability 'major.minor') of cuda:0 as torch sees it, or (None, None)."""
    import torch

    try:
        if not torch.cuda.is_available():
            return None, None
        return torch.cuda.get_device_name(0), _cc(torch.cuda.get_device_capability(0))
    except Exception:  # a broken driver raises rather than answering
        return None, None


def engine_status(engine_dir: str | Path, weights_sha: str) -> str | None:
    """Why the engine in this folder cannot be used on this machine with these weights (None: usable)."""
    engine_dir = Path(engine_dir)
    if not (engine_dir / SIDECAR_FILE).is_file():
        return f"no engine in {engine_dir}"
    try:
        sidecar = read_sidecar(engine_dir)
    except InputError as exc:
        return str(exc)
    gpu, cc = this_gpu()
    reason = sidecar_mismatch(sidecar, weights_sha=weights_sha, trt_version=tensorrt_version(), gpu_name=gpu,
                              compute_capability=cc)
    if reason is None and not (engine_dir / str(sidecar.get("engine", ENGINE_FILE))).is_file():
        reason = f"{engine_dir / ENGINE_FILE} is missing"
    return reason


def _sha256(path: Path) -> str:
    from dfscan.train.checkpoint_info import file_sha256

    return file_sha256(path)


# ---------------------------------------------------------------- build

def _build_with_trt(trt, onnx_path: Path, engine_dir: Path, *, input_name: str, input_size: int, max_batch: int,
                    opt_batch: int, workspace_gb: float, log: Callable[[str], None]) -> bytes:
    """ONNX -> serialized engine with the TensorRT builder: FP16, one profile, workspace cap, timing cache."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flag_names = trt.NetworkDefinitionCreationFlag.__members__
    # TensorRT 8.x needs explicit batch asked for; 10.x ignores the flag (deprecated); 11.x dropped it.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if "EXPLICIT_BATCH" in flag_names else 0
    weak_fp16 = hasattr(trt.BuilderFlag, "FP16")
    if not weak_fp16 and "STRONGLY_TYPED" in flag_names:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT could not parse {onnx_path.name}: {errors or 'unknown error'}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if weak_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    shape = (3, input_size, input_size)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (1, *shape), (opt_batch, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)

    cache_path = engine_dir / TIMING_CACHE_FILE
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, False)  # ignore_mismatch=False: a cache from another GPU is refused

    log(f"building the TensorRT engine (batch 1..{max_batch}, opt {opt_batch}); this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InputError("TensorRT failed to build the engine (see its log above); try a smaller --max-batch "
                         "or a larger --workspace-gb")
    atomic_write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _build_with_torch_tensorrt(model, engine_dir: Path, *, input_size: int, max_batch: int, opt_batch: int,
                               workspace_gb: float, log: Callable[[str], None]) -> bytes:
    """The same engine through torch-tensorrt's dynamo path, extracted as raw TensorRT bytes.

    The FP16 module with float32 I/O (dfscan.engines.export.HalfIO) gives an FP16 engine under the
    explicit typing torch-tensorrt uses by default, and the raw engine loads with the same runtime
    as the ONNX-built one (no pickled ExportedProgram to load at scan time).
    """
    import torch

    try:
        import torch_tensorrt
    except ImportError:
        raise InputError("torch-tensorrt is not installed: pip install torch-tensorrt (it must match your torch "
                         "and CUDA), or use --via trt") from None
    from dfscan.engines.export import HalfIO

    module = HalfIO(model).cuda().eval()
    example = torch.zeros(opt_batch, 3, input_size, input_size, device="cuda")
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    exported = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    spec = torch_tensorrt.Input(min_shape=(1, 3, input_size, input_size),
                                opt_shape=(opt_batch, 3, input_size, input_size),
                                max_shape=(max_batch, 3, input_size, input_size), dtype=torch.float32)
    log(f"building the TensorRT engine with torch-tensorrt {torch_tensorrt.__version__}; this takes minutes")
    engine = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
        exported, arg_inputs=[spec], workspace_size=int(workspace_gb * (1 << 30)),
        timing_cache_path=str(engine_dir / TIMING_CACHE_FILE))
    return bytes(engine)


def build_engine(weights: str | Path, out: str | Path | None = None, *, crops: np.ndarray | None = None,
                 max_batch: int = 64, opt_batch: int | None = None, workspace_gb: float = 4.0, via: str = "trt",
                 log: Callable[[str], None] = lambda msg: None) -> Path:
    """Build an FP16 engine for these weights on this GPU; returns the engine folder.

    `crops` (uint8 (N,S,S,3) real face crops, from the caller: engines never imports scanner) are
    scored by the new engine and by the FP32 torch model; the parity goes in the sidecar and a
    build that disagrees by more than FP16_PARITY_TOLERANCE is refused.
    """
    from dfscan.engines.export import export_module
    from dfscan.engines.onnx_model import INPUT_NAME
    from dfscan.train.checkpoint import load_checkpoint

    if via not in VIAS:
        raise InputError(f"unknown --via {via!r}: choose {' or '.join(VIAS)}")
    if not 1 <= max_batch <= 4096:
        raise InputError(f"--max-batch must be between 1 and 4096, got {max_batch}")
    if not (workspace_gb > 0 and math.isfinite(workspace_gb)):  # int(inf GiB) fails after the export
        raise InputError(f"--workspace-gb must be positive, got {workspace_gb}")
    trt = import_tensorrt()
    gpu, cc = this_gpu()
    if gpu is None:
        raise InputError("a TensorRT engine is built on the GPU it will run on, and torch sees no CUDA GPU here; "
                         "use --format onnx")
    weights = Path(weights)
    model, config, info = load_checkpoint(weights, deploy=True, device="cpu")
    size = config.input_size
    if crops is None or len(crops) == 0:
        raise InputError("build_engine needs a few real face crops to measure the engine's parity")
    crops = check_crops(crops, size)
    opt_batch = int(opt_batch or min(max_batch, 32))
    engine_dir = Path(out) if out else default_engine_dir(info["sha256"])
    engine_dir.mkdir(parents=True, exist_ok=True)
    weak_fp16 = hasattr(trt.BuilderFlag, "FP16")

    started = time.perf_counter()
    if via == "trt":
        onnx_path = export_module(model, engine_dir / ONNX_FILE, input_size=size, fp16=not weak_fp16)
        data = _build_with_trt(trt, onnx_path, engine_dir, input_name=INPUT_NAME, input_size=size,
                               max_batch=max_batch, opt_batch=opt_batch, workspace_gb=workspace_gb, log=log)
    else:
        data = _build_with_torch_tensorrt(model, engine_dir, input_size=size, max_batch=max_batch,
                                          opt_batch=opt_batch, workspace_gb=workspace_gb, log=log)
    build_seconds = time.perf_counter() - started
    engine_path = engine_dir / ENGINE_FILE
    atomic_write_bytes(engine_path, data)

    runtime = _Engine(trt, engine_path)
    sidecar = make_sidecar(
        weights_sha=info["sha256"], weights_name=weights.name, trt_version=str(trt.__version__), gpu_name=gpu,
        compute_capability=cc, precision="fp16",
        profile={"min": [1, 3, size, size], "opt": [opt_batch, 3, size, size], "max": [max_batch, 3, size, size]},
        parity={}, via=via, engine_sha=_sha256(engine_path), build_seconds=build_seconds,
        workspace_gb=workspace_gb, input_name=runtime.input_name, output_name=runtime.output_name)
    backend = TensorRTBackend.__new__(TensorRTBackend)
    backend._init_loaded(runtime, config, sidecar, engine_dir)
    got = backend.predict(crops)
    backend.close()
    ref = _torch_fp32_on_gpu(model, crops, config)
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    sidecar["parity"] = {"crops": int(len(crops)), "max_abs_diff": float(diff.max()),
                         "mean_abs_diff": float(diff.mean()), "reference": "torch fp32 cuda"}
    atomic_write_bytes(engine_dir / SIDECAR_FILE, (json.dumps(sidecar, indent=2) + "\n").encode())
    if not sidecar["parity"]["max_abs_diff"] <= FP16_PARITY_TOLERANCE:
        raise InputError(f"the FP16 engine disagrees with torch FP32 by {diff.max():.2e} (> {FP16_PARITY_TOLERANCE}); "
                         f"it is kept in {engine_dir} for inspection but will not match a scan until rebuilt")
    return engine_dir


def _torch_fp32_on_gpu(model, crops: np.ndarray, config) -> np.ndarray:
    import torch

    from dfscan.engines.base import normalise

    model = model.to("cuda").float().eval()
    out = []
    with torch.inference_mode():
        for part in chunks(len(crops), 32):
            x = torch.from_numpy(normalise(crops[part], config.mean, config.std)).cuda()
            out.append(model(x).float().cpu().numpy())
    model.to("cpu")
    return np.concatenate(out)


# ---------------------------------------------------------------- runtime

class _Engine:
    """A deserialized engine and one execution context, I/O found by name (TensorRT 10+ tensor API)."""

    def __init__(self, trt, engine_path: Path):
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise InputError(f"{engine_path}: TensorRT could not load this engine; rebuild it with dfscan build-engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise InputError(f"{engine_path}: expected one input and one output, found {inputs} -> {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])

    def torch_dtype(self, name: str):
        import torch

        dt = self.engine.get_tensor_dtype(name)
        return {self.trt.float32: torch.float32, self.trt.float16: torch.float16}[dt]


class TensorRTBackend:
    """Scores crops with a TensorRT engine built by `dfscan build-engine` for this GPU and these weights."""

    name = "tensorrt"
    precision = "fp16"

    def __init__(self, engine_dir: str | Path, weights: str | Path, batch_size: int | None = None,
                 weights_sha: str | None = None):
        from dfscan.train.checkpoint_info import file_sha256

        engine_dir = Path(engine_dir)
        weights = Path(weights)
        trt = import_tensorrt()
        reason = engine_status(engine_dir, weights_sha or file_sha256(weights))
        if reason is not None:
            raise InputError(f"TensorRT engine in {engine_dir} cannot be used: {reason}; rebuild it with: "
                             f"dfscan build-engine --weights {weights} --out {engine_dir}")
        sidecar = read_sidecar(engine_dir)
        runtime = _Engine(trt, engine_dir / str(sidecar.get("engine", ENGINE_FILE)))
        self._init_loaded(runtime, checkpoint_config(weights), sidecar, engine_dir, batch_size)

    def _init_loaded(self, runtime: _Engine, config, sidecar: dict, engine_dir: Path,
                     batch_size: int | None = None) -> None:
        import torch

        self._rt: _Engine | None = runtime
        self.config = config
        self.sidecar = sidecar
        self.engine_dir = engine_dir
        self.device = "cuda:0"
        self.precision = str(sidecar.get("precision", "fp16"))
        self.batch_size = min(int(batch_size or runtime.max_batch), runtime.max_batch)
        self._stream = torch.cuda.Stream()
        std = torch.tensor(config.std, device="cuda").view(1, 3, 1, 1)
        mean = torch.tensor(config.mean, device="cuda").view(1, 3, 1, 1)
        self._scale, self._shift = 1.0 / (255.0 * std), mean / std

    def predict(self, crops: np.ndarray) -> np.ndarray:
        import torch

        crops = check_crops(crops, self.config.input_size)
        if self._rt is None:
            raise InputError("this TensorRT backend was closed")
        rt, ctx = self._rt, self._rt.context
        in_dtype, out_dtype = rt.torch_dtype(rt.input_name), rt.torch_dtype(rt.output_name)
        out = np.empty(len(crops), np.float32)
        with torch.cuda.stream(self._stream), torch.inference_mode():
            for part in chunks(len(crops), self.batch_size):
                n = part.stop - part.start
                x = torch.from_numpy(np.ascontiguousarray(crops[part])).cuda(non_blocking=True)
                x = x.permute(0, 3, 1, 2).float().mul_(self._scale).sub_(self._shift).to(in_dtype).contiguous()
                y = torch.empty((n,), dtype=out_dtype, device="cuda")
                ctx.set_input_shape(rt.input_name, tuple(x.shape))
                ctx.set_tensor_address(rt.input_name, x.data_ptr())
                ctx.set_tensor_address(rt.output_name, y.data_ptr())
                if not ctx.execute_async_v3(self._stream.cuda_stream):
                    raise InputError("TensorRT inference failed (execute_async_v3 returned False)")
                self._stream.synchronize()
                out[part] = y.float().cpu().numpy()
        return out

    def close(self) -> None:
        self._rt = None

    def __repr__(self) -> str:
        return f"TensorRTBackend({self.engine_dir}, batch={self.batch_size})"
