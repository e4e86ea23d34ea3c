"""What a scan is asked to do (ScanOptions), what it reports as it goes (ScanProgress), and why it cannot run (ScanError)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dfscan.core.errors import InputError
from dfscan.scanner.aggregate import STRATEGIES
from dfscan.scanner.faults import FaultPlan

# --fps above any real frame rate samples every frame; far above it, t * fps overflows a float.
MAX_FPS = 1000.0
MAX_DETECT_EVERY = 4  # detection skipping holds up to K-1 frames until the next detection; drift grows with K


class ScanError(InputError):
    """The scan cannot run on this machine (workers cannot start): one line for the user, no traceback."""


@dataclass
class ScanOptions:
    """Everything that shapes a scan. Fields that change results end up in the report's settings."""

    frames: int = 32
    fps: float | None = None
    keyframes: bool = False
    batch_size: int | None = None  # None: the backend's preferred size
    workers: int | None = None  # None: one per CPU core (see resources.resource_plan)
    threads: int | None = None  # inference threads of a CPU backend; None: see resources.resource_plan
    infer_in_workers: bool | None = None  # CPU backends: score in the workers (None: yes on the CPU, no on a GPU)
    backend: str = "auto"
    weights: Path | None = None  # None: dfscan.scanner.assets.default_weights()
    engine: Path | None = None
    threshold: float | None = None  # None: the model's calibrated threshold
    crops: bool = False
    face_model: str = "full"
    min_face_score: float = 0.5
    tile_every: int = 8  # tiled small-face pass on every k-th sampled frame of large frames; 0: never (see faces.tile_size)
    detect_every: int = 2  # detect on every k-th sampled frame, interpolate faces between (dfscan.scanner.interpolate; bench/detect_every.py)
    strategy: str = "mean"
    timeout: float | None = 300.0  # seconds a file may go without progress in a worker; None or 0: no limit
    resume: bool = False
    report: Path | None = None  # where the final report goes: the stream is written beside it
    stream: bool = True  # write <report stem>.stream.jsonl as items finish (needs `report`)
    faults: FaultPlan | None = None  # tests only: workers crash or hang on named files (dfscan.scanner.faults)

    def check(self) -> None:
        """Reject impossible values with one clear line before any process starts."""
        if self.frames < 1:
            raise InputError("--frames must be at least 1")
        if self.fps is not None and not 0 < self.fps <= MAX_FPS:  # also refuses nan
            raise InputError(f"--fps must be a number of frames per second in (0, {MAX_FPS:g}], got {self.fps}")
        if self.fps is not None and self.keyframes:
            raise InputError("--fps and --keyframes exclude each other")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError("--batch-size must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise InputError("--workers must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise InputError("--threads must be at least 1")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise InputError("--threshold must be between 0 and 1")
        if not 0.0 <= self.min_face_score <= 1.0:
            raise InputError(f"min_face_score must be between 0 and 1, got {self.min_face_score}")
        if self.strategy not in STRATEGIES:
            raise InputError(f"unknown strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if self.face_model not in ("full", "short"):
            raise InputError(f"unknown face model {self.face_model!r}: choose full or short")
        if self.tile_every < 0:
            raise InputError("--tile-every must be 0 (never) or more")
        if not 1 <= self.detect_every <= MAX_DETECT_EVERY:
            raise InputError(f"--detect-every must be between 1 (every frame) and {MAX_DETECT_EVERY}")
        if self.timeout is not None and not (self.timeout >= 0 and math.isfinite(self.timeout)):
            raise InputError(f"--timeout must be positive (0: no limit), got {self.timeout}")
        if self.resume and self.report is None:
            raise InputError("--resume needs the report path of the run to resume")


@dataclass
class ScanProgress:
    """What a progress display needs after each finished file (item is None for the first call)."""

    total: int
    done: int
    faces: int
    elapsed: float
    item: dict | None = None
    resumed: int = 0
    note: str = ""  # a step before the first file, e.g. the one-time model export


ProgressFn = Callable[[ScanProgress], None]
