"""What this machine can run (for `dfscan doctor`) and real face crops for engine parity checks.

Lives in scanner because it needs both the engines (backend probes) and the scanner's own face
pipeline (crops); engines never import scanner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from dfscan.core.errors import InputError


def weights_info(path: Path | None) -> dict[str, Any]:
    """Path, sha256, backbone and threshold of a checkpoint (or why it cannot be read)."""
    from dfscan.train.checkpoint_info import file_sha256, read_metadata

    if path is None:
        from dfscan.scanner.assets import DEFAULT_WEIGHTS

        path = DEFAULT_WEIGHTS
    info: dict[str, Any] = {"path": str(path), "ok": False}
    if not Path(path).is_file():
        info["problem"] = "missing"
        return info
    try:
        from dfscan.train.config import ModelConfig
        from dfscan.train.model import single_pass_exact

        meta = read_metadata(path)
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        single, why = single_pass_exact(config)
        info.update(ok=True, name=Path(path).name, caveat=meta.get("caveat") or None,
                    sha256=file_sha256(path), kind=meta.get("kind"), backbone=config.backbone,
                    input_size=config.input_size, threshold=float(meta["threshold"]),
                    size_mb=round(Path(path).stat().st_size / 1e6, 1),
                    inference_graph="single pass" if single else "two passes", inference_graph_reason=why)
    except (InputError, KeyError, ValueError) as exc:
        info["problem"] = str(exc)
    return info


def face_models() -> list[dict[str, Any]]:
    """The vendored MediaPipe face detectors and whether each is present."""
    from dfscan.scanner.assets import FACE_MODELS

    return [{"name": name, "path": str(p), "present": p.is_file(),
             "size_kb": round(p.stat().st_size / 1024) if p.is_file() else None}
            for name, p in FACE_MODELS.items()]


def doctor_report(weights: Path | None = None, engine: Path | None = None) -> dict[str, Any]:
    """Machine, backend candidates (in `auto` order, first available is what a scan takes), models."""
    from dfscan.engines.select import candidates, machine_summary

    winfo = weights_info(weights)
    report: dict[str, Any] = {"machine": machine_summary(), "weights": winfo, "face_models": face_models(),
                              "candidates": [], "chosen": None}
    if winfo["ok"]:
        cands = candidates(winfo["path"], engine, weights_sha=winfo["sha256"])
        chosen = next((c for c in cands if c.available), None)
        if chosen is not None:
            chosen.chosen = True
            report["chosen"] = chosen.name
        report["candidates"] = [{"name": c.name, "backend": c.backend, "available": c.available,
                                 "reason": c.reason, "chosen": c.chosen} for c in cands]
    return report


def crops_from_media(paths: Iterable[str | Path], *, size: int, limit: int = 16, frames: int = 4) -> np.ndarray:
    """Up to `limit` face crops from images/videos, made by the scan's own per-file stage.

    Files that already are size x size crops (the model's input) are taken as they are, through
    the stage's crops mode (a folder made by `dfscan extract-faces` works); any other size is
    searched for faces, never resized. Returns uint8 (N, size, size, 3); N may be 0.
    """
    from dfscan.scanner.media import collect_inputs, probe
    from dfscan.scanner.options import ScanOptions
    from dfscan.scanner.pipeline import kind_of
    from dfscan.scanner.stage import CropSink, StageConfig, close_detector, open_detector, process_file

    files, _skipped = collect_inputs(list(paths))
    detect = StageConfig.of(ScanOptions(frames=frames), size)
    precut = StageConfig.of(ScanOptions(frames=frames, crops=True), size)
    crops: list[np.ndarray] = []
    detector = open_detector(detect)
    try:
        for path in files:
            info = probe(path)
            cfg = precut if (info.width, info.height) == (size, size) else detect
            process_file(str(path), kind_of(path, cfg.crops), detector, cfg,
                         CropSink(cfg.chunk, lambda _first, chunk: crops.extend(chunk)))
            if len(crops) >= limit:
                break
    finally:
        close_detector(detector)
    return np.stack(crops[:limit]) if crops else np.zeros((0, size, size, 3), np.uint8)
