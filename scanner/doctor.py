"""What this machine can run (for `dfscan doctor`) and real face crops for engine parity checks.

Lives in scanner because it needs both the engines (backend probes) and the scanner's own face
pipeline (crops); engines never import scanner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from train.errors import InputError


def weights_info(path: Path | None) -> dict[str, Any]:
    """Path, sha256, backbone and threshold of a checkpoint (or why it cannot be read)."""
    from train.checkpoint_info import file_sha256, read_metadata

    if path is None:
        from scanner.assets import DEFAULT_WEIGHTS

        path = DEFAULT_WEIGHTS
    info: dict[str, Any] = {"path": str(path), "ok": False}
    if not Path(path).is_file():
        info["problem"] = "missing"
        return info
    try:
        from train.config import ModelConfig
        from train.model import single_pass_exact

        meta = read_metadata(path)
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        single, why = single_pass_exact(config)
        info.update(ok=True, sha256=file_sha256(path), kind=meta.get("kind"), backbone=config.backbone,
                    input_size=config.input_size, threshold=float(meta["threshold"]),
                    size_mb=round(Path(path).stat().st_size / 1e6, 1),
                    inference_graph="single pass" if single else "two passes", inference_graph_reason=why)
    except (InputError, KeyError, ValueError) as exc:
        info["problem"] = str(exc)
    return info


def face_models() -> list[dict[str, Any]]:
    """The vendored MediaPipe face detectors and whether each is present."""
    from scanner.assets import FACE_MODELS

    return [{"name": name, "path": str(p), "present": p.is_file(),
             "size_kb": round(p.stat().st_size / 1024) if p.is_file() else None}
            for name, p in FACE_MODELS.items()]


def doctor_report(weights: Path | None = None, engine: Path | None = None) -> dict[str, Any]:
    """Machine, backend candidates (in `auto` order, first available is what a scan takes), models."""
    from engines.select import candidates, machine_summary

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
    """Up to `limit` face crops from images/videos through the scan's own detector and crop.

    Images that already are size x size crops (the model's input) are taken as they are (a
    folder made by `dfscan extract-faces` works). Returns uint8 (N, size, size, 3); N may be 0.
    """
    from scanner.crop import crop_face
    from scanner.faces import FaceDetector
    from scanner.media import collect_inputs, iter_frames

    files, _skipped = collect_inputs([Path(p) for p in paths])
    crops: list[np.ndarray] = []
    with FaceDetector(model="full") as detector:
        for path in files:
            for frame in iter_frames(path, frames=frames):
                image = np.ascontiguousarray(frame.image)
                if image.shape[:2] == (size, size):
                    crops.append(image)
                else:
                    for det in detector.detect(image):
                        crops.append(crop_face(image, det.keypoints, det.box, size=size))
                if len(crops) >= limit:
                    return np.stack(crops[:limit])
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
