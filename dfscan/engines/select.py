"""Pick the fastest backend this machine can run, and say why each other one was or was not taken.

`auto` order: a TensorRT engine that matches this GPU, TensorRT version and weights → torch CUDA
FP16 → ONNX Runtime on the CPU → torch on the CPU. Probes are cheap (no model is loaded); a
candidate that passes its probe but then fails to load is reported and the next one is tried.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from dfscan.core.errors import InputError
from dfscan.engines.base import Backend, cpu_threads

if TYPE_CHECKING:
    from dfscan.train.checkpoint_info import CheckpointInfo


@dataclass
class Candidate:
    """One way to run the detector here: whether it can, and why (shown by `dfscan doctor`)."""

    name: str
    available: bool
    reason: str
    chosen: bool = False

    @property
    def backend(self) -> str:
        return BACKEND_OF.get(self.name, self.name)


# ---------------------------------------------------------------- probes (monkeypatched in tests)

def probe_tensorrt(weights_sha: str, engine: Path | None) -> tuple[bool, str]:
    from dfscan.engines.tensorrt import default_engine_dir, engine_status, tensorrt_version

    if tensorrt_version() is None:
        return False, "TensorRT is not installed (needs an NVIDIA GPU; pip install tensorrt)"
    engine_dir = Path(engine) if engine else default_engine_dir(weights_sha)
    reason = engine_status(engine_dir, weights_sha)
    if reason is None:
        return True, f"engine in {engine_dir} matches this GPU, TensorRT {tensorrt_version()} and the weights"
    return False, f"{reason}; build one with: dfscan build-engine"


def torch_build() -> tuple[str, str | None] | None:
    """(version, its CUDA or ROCm version, or None for a CPU build) of the installed torch; None without torch.

    Read from torch/version.py without importing torch: the import takes ~1 s, every scan
    probes, and on a CPU build (or without torch) there is nothing to find by importing it.
    A version file that cannot be read is asked of torch itself.
    """
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    fields: dict[str, object] = {}
    try:
        tree = ast.parse((Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text())
    except (OSError, SyntaxError, ValueError, StopIteration):
        tree = None
    for node in tree.body if tree is not None else []:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)  # Assign and AnnAssign (whose value may be None)
        if isinstance(target, ast.Name) and isinstance(value, ast.expr):
            try:
                fields[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                pass
    if not isinstance(fields.get("__version__"), str) or "cuda" not in fields:  # unusual: ask torch
        import torch

        return torch.__version__, torch.version.cuda or getattr(torch.version, "hip", None)
    gpu = next((v for v in (fields.get("cuda"), fields.get("hip")) if isinstance(v, str)), None)
    return str(fields["__version__"]), gpu


def gpu_driver_absent() -> bool:
    """True on Linux when no NVIDIA, WSL or ROCm GPU device is there: no GPU for torch, known without importing it."""
    if not sys.platform.startswith("linux"):
        return False
    return not any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd"))


def probe_torch_cuda() -> tuple[bool, str]:
    build = torch_build()
    if build is None:
        return False, "torch is not installed"
    if build[1] is None:  # a CPU build: no GPU to find, and no need to import it
        return False, f"torch {build[0]} (a CPU build) sees no CUDA GPU"
    if gpu_driver_absent():
        return False, f"torch {build[0]} (built for GPU {build[1]}) sees no CUDA GPU: no GPU driver on this machine"
    import torch

    from dfscan.engines.torch import cuda_device

    if cuda_device() is None:
        return False, f"torch {torch.__version__} (built for GPU {build[1]}) sees no CUDA GPU"
    return True, f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, FP16"


def probe_onnxruntime() -> tuple[bool, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return False, "onnxruntime is not installed (pip install onnxruntime)"
    if "CPUExecutionProvider" not in ort.get_available_providers():
        return False, f"onnxruntime {ort.__version__} has no CPUExecutionProvider"
    return True, f"onnxruntime {ort.__version__}, FP32, {min(cpu_threads(), 8)} threads"


def probe_torch_cpu() -> tuple[bool, str]:
    build = torch_build()
    if build is None:
        return False, "torch is not installed (pip install torch)"
    return True, f"torch {build[0]}, FP32, CPU"


def _load_tensorrt(weights: Path, engine: Path | None, weights_sha: str) -> Backend:
    from dfscan.engines.tensorrt import TensorRTBackend, default_engine_dir

    return TensorRTBackend(engine or default_engine_dir(weights_sha), weights, weights_sha=weights_sha)


def _load_torch_cuda(weights: Path, engine: Path | None, weights_sha: str) -> Backend:
    from dfscan.engines.torch import TorchBackend

    return TorchBackend(weights, device="cuda", fp16=True)


def _load_onnxruntime(weights: Path, engine: Path | None, weights_sha: str) -> Backend:
    from dfscan.engines.onnx_cache import cached_onnx
    from dfscan.engines.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(weights, onnx_path=cached_onnx(weights, weights_sha=weights_sha))


def _load_torch_cpu(weights: Path, engine: Path | None, weights_sha: str) -> Backend:
    from dfscan.engines.torch import TorchBackend

    return TorchBackend(weights, device="cpu", fp16=False)


# ---------------------------------------------------------------- the backend table

@dataclass(frozen=True)
class BackendSpec:
    """One way to run the detector. SPECS is the only list of them: `auto`'s order, `--backend`'s
    choices (scan, fairness-check), `doctor` and loading all read it."""

    candidate: str  # what doctor lists and auto walks, e.g. "torch-cuda-fp16"
    backend: str  # the --backend choice it serves and the report's backend.name, e.g. "torch"
    probe: Callable[[str, Path | None], tuple[bool, str]]  # (weights sha, engine) → (can run, why)
    load: Callable[[Path, Path | None, str], Backend]  # (weights, engine, weights sha) → loaded backend


SPECS: tuple[BackendSpec, ...] = (  # in `auto` order: fastest first
    BackendSpec("tensorrt", "tensorrt", probe_tensorrt, _load_tensorrt),
    BackendSpec("torch-cuda-fp16", "torch", lambda sha, engine: probe_torch_cuda(), _load_torch_cuda),
    BackendSpec("onnxruntime-cpu", "onnxruntime", lambda sha, engine: probe_onnxruntime(), _load_onnxruntime),
    BackendSpec("torch-cpu", "torch", lambda sha, engine: probe_torch_cpu(), _load_torch_cpu),
)
AUTO_ORDER = tuple(s.candidate for s in SPECS)
BACKEND_OF = {s.candidate: s.backend for s in SPECS}
BACKEND_NAMES = tuple(dict.fromkeys(BACKEND_OF.values()))  # the report schema's backend.name enum
CHOICES = ("auto", *BACKEND_NAMES)
PROBES: dict[str, Callable[[str, Path | None], tuple[bool, str]]] = {s.candidate: s.probe for s in SPECS}


def _make(name: str, weights: Path, engine: Path | None, weights_sha: str) -> Backend:
    spec = next((s for s in SPECS if s.candidate == name), None)
    if spec is None:
        raise InputError(f"unknown backend candidate {name!r}")
    return spec.load(weights, engine, weights_sha)


FACTORY: Callable[[str, Path, Path | None, str], Backend] = _make  # PROBES and FACTORY: monkeypatched in tests


def _weights_sha(weights: Path) -> str:
    from dfscan.train.checkpoint_info import file_sha256

    if not weights.is_file():
        raise InputError(f"{weights}: weights file not found")
    return file_sha256(weights)


def candidates(weights: str | Path, engine: str | Path | None = None, *, weights_sha: str | None = None
               ) -> list[Candidate]:
    """Every backend in `auto` order with whether this machine can run it and why (nothing is loaded)."""
    weights = Path(weights)
    sha = weights_sha or _weights_sha(weights)
    engine = Path(engine) if engine else None
    out = []
    for name in AUTO_ORDER:
        probe = PROBES[name]
        try:
            ok, reason = probe(sha, engine)
        except Exception as exc:  # a probe must never stop a scan: report it instead
            ok, reason = False, f"probe failed: {type(exc).__name__}: {exc}"
        out.append(Candidate(name, ok, reason))
    return out


def select_backend(weights: str | Path, backend: str = "auto", engine: str | Path | None = None, *,
                   checkpoint: CheckpointInfo | None = None) -> tuple[Backend, list[Candidate]]:
    """Load the backend to scan with; `backend` is auto|tensorrt|torch|onnxruntime.

    An explicit choice is honoured or refused with the reason (InputError); `auto` walks
    AUTO_ORDER and takes the first candidate that loads. `torch` means CUDA FP16 when a GPU is
    visible, else CPU FP32. A given `engine` folder that does not match is a reason, not an error,
    under `auto`. `checkpoint`: the weights' CheckpointInfo when the caller has read it (its sha256
    is then not computed again).
    """
    if backend not in CHOICES:
        raise InputError(f"unknown backend {backend!r}: choose one of {', '.join(CHOICES)}")
    weights = Path(weights)
    sha = checkpoint.sha256 if checkpoint is not None and checkpoint.path == weights else _weights_sha(weights)
    if engine is not None and not Path(engine).exists():
        raise InputError(f"{engine}: engine folder not found")
    cands = candidates(weights, engine, weights_sha=sha)
    if backend == "auto":
        wanted = list(AUTO_ORDER)
    else:  # `torch` is CUDA FP16 where a GPU is visible, else the CPU: its candidates in auto order
        wanted = [n for n in AUTO_ORDER if BACKEND_OF[n] == backend]
    by_name = {c.name: c for c in cands}
    failures = []
    for name in wanted:
        cand = by_name[name]
        if not cand.available:
            failures.append(f"{name}: {cand.reason}")
            continue
        try:
            loaded = FACTORY(name, weights, Path(engine) if engine else None, sha)
        except (InputError, ImportError, OSError) as exc:  # a broken install passes its probe and fails here
            if backend != "auto":
                if isinstance(exc, InputError):
                    raise
                raise InputError(f"--backend {backend} failed to load: {type(exc).__name__}: {exc}") from None
            cand.available, cand.reason = False, f"failed to load: {exc}"
            failures.append(f"{name}: {cand.reason}")
            continue
        cand.chosen = True
        return loaded, cands
    if backend == "auto":  # nothing installed could load (or torch and onnxruntime are both missing)
        raise InputError("no backend could load the detector: " + "; ".join(failures))
    raise InputError(f"--backend {backend} is not available here: " + "; ".join(failures))


def machine_summary() -> dict[str, str]:
    """What `dfscan doctor` reports about this machine (CPU, GPU, CUDA, TensorRT, ONNX Runtime)."""
    import platform

    import torch

    from dfscan.engines.tensorrt import tensorrt_version, this_gpu

    gpu, cc = this_gpu()
    try:
        import onnxruntime as ort

        ort_version = f"{ort.__version__} ({', '.join(ort.get_available_providers())})"
    except ImportError:
        ort_version = "not installed"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpu cores": f"{cpu_threads()} usable of {os.cpu_count()}",
        "torch": f"{torch.__version__} ({'CPU build' if torch.version.cuda is None else 'CUDA ' + torch.version.cuda})",
        "gpu": f"{gpu} (compute capability {cc})" if gpu else "none visible to torch",
        "tensorrt": tensorrt_version() or "not installed",
        "onnxruntime": ort_version,
    }
