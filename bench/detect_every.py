"""Benchmark: detection skipping (`--detect-every K`) against detecting on every sampled frame.

    python bench/detect_every.py [--every 2,3] [--repeat 3] [--clips DIR]

On the shared face videos (tests/data/media/videos) and the 720p set of bench/scan.py it prints:
  1. alignment: the scan stage's faces at K against its faces at K=1 on the same frames (after
     tracking): mean and worst IoU of each interpolated box with the detected one, faces missed
     (a K=1 face with none at K on its frame) and phantoms (interpolated where K=1 has none);
  2. results: per file, the scan's verdict and score with K against K=1 (flips, max |Δscore|),
     and the subjects found;
  3. speed: the full scan's wall time and summed detection seconds, alternating, medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench.scan, run as a script
FACE_VIDEOS = ["WolfgangLanger_Pexels.mp4", "carphone_pristine.mp4", "single_face.mp4", "face_noface.mov", "noface_face.mov"]


def alignment(files: list[Path], every: int, tile_every: int) -> dict:
    """The stage's interpolated faces at K against the faces it detects on the same frames at K=1."""
    from dfscan.scanner.faces import FaceDetector
    from dfscan.scanner.stage import CropSink, StageConfig, process_file
    from dfscan.scanner.track import _iou

    def boxes(payload: dict, interpolated: bool | None = None) -> dict[int, list[tuple]]:
        out: dict[int, list[tuple]] = {}
        for s in payload["subjects"]:
            for f in s["frames"]:
                if interpolated is None or bool(f.get("interpolated")) == interpolated:
                    out.setdefault(f["index"], []).append(tuple(f["box"]))
        return out

    def best(box: tuple, others: list[tuple]) -> float:
        return max((_iou(box, o) for o in others), default=0.0)

    ious: list[float] = []
    missed = phantoms = 0
    with FaceDetector() as detector:
        for path in files:
            payloads = [process_file(str(path), "video", detector,
                                     StageConfig(frames=32, fps=None, keyframes=False, crops=False, face_model="full",
                                                 min_face_score=0.5, size=128, tile_every=tile_every, detect_every=k),
                                     CropSink(64, lambda first, crops: None)) for k in (1, every)]
            seen, placed, kept = boxes(payloads[0]), boxes(payloads[1], True), boxes(payloads[1])
            for index, guesses in placed.items():
                for g in guesses:
                    iou = best(g, seen.get(index, []))
                    if iou < 0.3:
                        phantoms += 1
                    else:
                        ious.append(iou)
            missed += sum(best(b, kept.get(index, [])) < 0.3 for index, found in seen.items() for b in found)
    return {"faces": len(ious), "mean_iou": float(np.mean(ious)) if ious else float("nan"),
            "worst_iou": float(np.min(ious)) if ious else float("nan"), "missed": missed, "phantoms": phantoms}


def compare(base: dict, other: dict) -> dict:
    """Per-file verdict flips, max |Δscore| and subject counts of two reports of the same files."""
    flips, deltas, subjects = 0, [], [0, 0]
    by_path = {it["path"]: it for it in other["items"]}
    for it in base["items"]:
        o = by_path[it["path"]]
        flips += it.get("verdict") != o.get("verdict")
        if it.get("score") is not None and o.get("score") is not None:
            deltas.append(abs(it["score"] - o["score"]))
        subjects[0] += len(it.get("subjects") or [])
        subjects[1] += len(o.get("subjects") or [])
    return {"flips": flips, "max_delta": max(deltas, default=0.0), "mean_delta": float(np.mean(deltas)) if deltas else 0.0,
            "subjects": subjects}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", default="2,3", help="comma-separated K to compare with K=1")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "dfscan-bench-clips",
                    help="bench/scan.py's 720p set (made there if missing)")
    ap.add_argument("--weights")
    args = ap.parse_args()
    everies = [int(k) for k in args.every.split(",") if k]

    from bench.scan import ensure_set, make_clip, weights_for
    from dfscan.scanner.options import ScanOptions
    from dfscan.scanner.pipeline import scan

    shared = [ROOT / "tests" / "data" / "media" / "videos" / n for n in FACE_VIDEOS]
    clips = ensure_set(args.clips, [f"clip_{i:02d}.mp4" for i in range(10)], make_clip)
    tile_every = ScanOptions.tile_every
    with tempfile.TemporaryDirectory() as tmp:
        weights = weights_for(args.weights, Path(tmp))
        for label, files in (("shared face videos", shared), ("720p set", clips)):
            print(f"\n{label}: {len(files)} videos, 32 sampled frames each")
            for k in everies:
                a = alignment(files, k, tile_every)
                print(f"  K={k} interpolated faces: {a['faces']}, IoU mean {a['mean_iou']:.3f} "
                      f"worst {a['worst_iou']:.3f}; missed {a['missed']}, phantoms {a['phantoms']}")
            walls: dict[int, list[float]] = {k: [] for k in [1, *everies]}
            detect: dict[int, list[float]] = {k: [] for k in walls}
            reports: dict[int, dict] = {}
            scan(files[:1], ScanOptions(weights=weights))  # warm-up
            for _ in range(args.repeat):
                for k in walls:
                    t = time.perf_counter()
                    reports[k] = scan(files, ScanOptions(weights=weights, detect_every=k))
                    walls[k].append(time.perf_counter() - t)
                    detect[k].append(reports[k]["summary"]["stages"]["detect"])
            base = statistics.median(walls[1])
            for k in walls:
                c = compare(reports[1], reports[k])
                print(f"  K={k}: scan {statistics.median(walls[k]):.2f} s wall ({base / statistics.median(walls[k]):.2f}x K=1), "
                      f"detect {statistics.median(detect[k]):.2f} s summed; vs K=1: {c['flips']} verdict flips, "
                      f"|Δscore| max {c['max_delta']:.4f} mean {c['mean_delta']:.4f}, subjects {c['subjects'][1]} (K=1: {c['subjects'][0]})")


if __name__ == "__main__":
    main()
