"""Typer options that more than one command takes, defined once.

`dfscan scan` and `dfscan extract-faces` both run files through the scan's per-file stage on
its worker pool (dfscan.scanner.stage, dfscan.scanner.pool), so they take the same sampling, face-model,
--workers and --timeout options: the same names, bounds, defaults and meaning; each command
says in a few words what a timed-out file becomes for it. The values
are checked again where they are used (dfscan.scanner.options.ScanOptions.check), for library callers.
"""

from __future__ import annotations

from typing import Any

import typer

from dfscan.scanner.commands.choices import FaceModel
from dfscan.scanner.options import ScanOptions

# --help panels (rich_help_panel) of the commands that run the scan's stage: one name per kind of option.
INPUT, SAMPLING, MODEL, OUTPUT, RUN, RAY = "Input", "Sampling and faces", "Model", "Output", "Workers", "Ray"


def workers_option() -> Any:
    """--workers: decode/detect processes of the scan's worker pool."""
    return typer.Option(ScanOptions.workers, "--workers", min=1,
                        help="Decode/detect processes (default: one per CPU core).", rich_help_panel=RUN)


def timeout_option(progress: str, outcome: str) -> Any:
    """--timeout: seconds a file may go without `progress` in a worker before it becomes `outcome`."""
    return typer.Option(ScanOptions.timeout, "--timeout", min=0.0,
                        help=f"Seconds a file may go without progress ({progress}) before it is {outcome}: "
                             "a hung decoder is stopped, one that keeps moving is not (0: no limit).",
                        rich_help_panel=RUN)


def frames_option() -> Any:
    return typer.Option(ScanOptions.frames, "--frames", min=1, help="Frames sampled per video, evenly spaced.",
                        rich_help_panel=SAMPLING)


def fps_option() -> Any:
    return typer.Option(ScanOptions.fps, "--fps", help="Sample F frames per second instead of --frames.",
                        rich_help_panel=SAMPLING)


def face_model_option() -> Any:
    return typer.Option(FaceModel(ScanOptions.face_model), "--face-model",
                        help="MediaPipe detector: full range, or short range for close-ups.", rich_help_panel=SAMPLING)
