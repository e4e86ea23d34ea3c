"""How a scan uses the machine's cores: worker processes, inference threads, and where inference runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfscan.engines.base import cpu_threads
from dfscan.scanner.options import ScanOptions


@dataclass
class ResourcePlan:
    """How a scan uses the machine: worker processes, inference threads, and where inference runs."""

    workers: int
    threads: int | None  # inference threads of a CPU backend (per worker when in_workers); None on a GPU
    in_workers: bool  # True: each worker scores its own crops; False: the main process batches across files
    note: str | None = None  # one line for stderr when fewer workers run than asked for (see cap_workers)


# Peak memory of one scan worker (PSS, rounded up), measured with /proc/<pid>/smaps_rollup during a
# 4-file scan (1080p and 352x288 H.264, a group photo) on the 2-core dev box: decoding and detecting
# only ~150 MB, plus its own ONNX Runtime session ~220 MB, plus its own torch model ~315 MB (RSS
# 195/280/440 MB). 40 ONNX Runtime workers took 7.8 GB, i.e. ~195 MB each.
WORKER_MEMORY = {"decode": 200 << 20, "onnxruntime": 300 << 20, "torch": 450 << 20}


def available_memory() -> int | None:
    """Bytes the machine can still hand out (MemAvailable, else free pages); None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def cap_workers(wanted: int, files: int, *, requested: bool, per_worker: int,
                available: int | None) -> tuple[int, str | None]:
    """At most one worker per file and as many as `available` memory holds at `per_worker` bytes each.

    Why: every worker is a process with its own decoder, detector (and model): `--workers 64` on a
    2-core box with 40 files started 40 of them and took 7.8 GB. Returns the count and, when a
    `requested` count (--workers) or the default is lowered for memory, one line saying why.
    """
    files = max(1, files)
    by_memory = max(1, available // per_worker) if available is not None and per_worker > 0 else wanted
    workers = max(1, min(wanted, files, by_memory))
    if workers >= wanted:
        return workers, None
    if available is not None and workers == by_memory and by_memory < min(wanted, files):
        why = (f"{available / 2**30:.1f} GiB of memory available, about {per_worker / 2**20:.0f} MiB per worker")
    elif requested:
        why = f"{files} file{'s' if files != 1 else ''} to scan"
    else:
        return workers, None  # the default (one per core) trimmed to the files: nothing to explain
    what = f"--workers {wanted}" if requested else f"the default {wanted} workers"
    return workers, f"note: {what} lowered to {workers} ({why})"


def resource_plan(options: ScanOptions, files: int, device: str, *, backend: str = "onnxruntime",
                  available: int | None = None) -> ResourcePlan:
    """Where the cores go for a scan of `files` files on a backend running on `device`.

    On a GPU the workers get every core and the main process batches crops across files for
    it. On the CPU, scoring a default clip (32 crops, two EfficientNet-Lite0 passes each) costs
    about as much as decoding and detecting it, and the same cores do both: one main-process
    inference thread then becomes the critical path while the workers wait on it, so by
    default each worker scores its own crops with a one-thread session and every core does
    every stage (bench/scan.py on 2 cores: 2.x the decode-only time against 3.4x with one
    worker plus one inference thread). `infer_in_workers=False` restores main-process
    inference on the CPU (workers get half the cores, inference the rest).

    Workers never outnumber the files nor what the memory holds (cap_workers; `available`: free
    bytes, None: this machine's now); `backend` names the CPU backend whose model each worker
    loads when it scores its own crops.
    """
    cores = cpu_threads()  # affinity-aware: containers and taskset are honoured
    memory = available_memory() if available is None else available
    in_workers = device == "cpu" and (True if options.infer_in_workers is None else bool(options.infer_in_workers))
    per_worker = WORKER_MEMORY.get(backend, WORKER_MEMORY["torch"]) if in_workers else WORKER_MEMORY["decode"]
    default = cores if device != "cpu" or in_workers else max(1, cores // 2)
    workers, note = cap_workers(options.workers or default, files, requested=options.workers is not None,
                                per_worker=per_worker, available=memory)
    if device != "cpu":
        return ResourcePlan(workers, None, False, note)
    if in_workers:
        return ResourcePlan(workers, options.threads or 1, True, note)
    return ResourcePlan(workers, options.threads or max(1, cores - workers), False, note)


def fit_cpu_threads(backend: Any, weights: Path, threads: int, batch_size: int | None) -> Any:
    """Give a CPU backend only the cores the workers leave free.

    The workers keep every core busy decoding and detecting; an inference pool sized for the
    whole machine on top of them oversubscribes it, and ONNX Runtime's spinning threads then
    slow everything down (bench/scan.py measures it).
    """
    if getattr(backend, "device", "") != "cpu":
        return backend
    if backend.name == "onnxruntime" and getattr(backend, "threads", threads) != threads:
        from dfscan.engines.onnxruntime import OnnxRuntimeBackend

        onnx_path = backend.onnx_path
        backend.close()
        return OnnxRuntimeBackend(weights, batch_size=batch_size, threads=threads, onnx_path=onnx_path)
    if backend.name == "torch":
        import torch

        torch.set_num_threads(threads)
    return backend
