"""Benchmark: tight face crops that come out `no_face`, and the cost of the close-up retry.

    python bench/closeups.py [--n 200] [--dfdc DFDC_DIR --reserved RESERVED_DIR --dfdc-n 400]

Tight crops are generated from the shared media (tests/data/media): every face of at least 40 px
the full-range detector finds in the photos (tiled pass) and in 8 sampled frames of each face
clip; crop i is a square 1.0-1.1x the face box's longer side (uniform), its centre moved by up to
3 % of the box, resized to 112, 160 or 224 px in turn (edge pixels mirrored where the square
leaves the picture). The crops are written as PNG and scanned by the real `dfscan.scanner.pipeline.scan`
(bundled model, ONNX Runtime), once as the scanner was (close-up retry off: `detect_closeup`
patched to find nothing, in the workers too, through the DFSCAN_BENCH_NO_CLOSEUP variable below)
and once as it is. Prints the `no_face` count of each and the box IoU with the face box the crop
was cut around.

--dfdc: as many tight 224-px DFDC crops (`faces_224/`, sources not in the reserved list) through
the stage's detection (`detect_sampled`), plain pass and with the retry.

Last, the detection time per sampled frame of the stage (process_file, default sampling, tiles
and detection skipping) on the no-face clips, retry off and on, interleaved, best of 4.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MEDIA = ROOT / "tests" / "data" / "media"
FACE_CLIPS = ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "carphone_pristine.mp4", "face_noface.mov", "noface_face.mov")
NO_FACE_CLIPS = ("bigbuckbunny.mp4", "no_face.mp4", "face_noface.mov")


def retry_switch() -> None:
    """Retry off where DFSCAN_BENCH_NO_CLOSEUP is set (this process and the scan's workers, which import this)."""
    if os.environ.get("DFSCAN_BENCH_NO_CLOSEUP"):
        from dfscan.scanner.faces import FaceDetector

        FaceDetector.detect_closeup = lambda self, image: []


def iou(a, b) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


def faces_of_the_media(det) -> list[tuple[np.ndarray, tuple]]:
    import cv2

    from dfscan.scanner.media import iter_frames

    out = []
    for p in sorted((MEDIA / "images").iterdir()):
        img = np.ascontiguousarray(cv2.imread(str(p))[:, :, ::-1])
        out += [(img, d.box) for d in det.detect_tiled(img)]
    for name in FACE_CLIPS:
        for f in iter_frames(MEDIA / "videos" / name, frames=8):
            out += [(f.image, d.box) for d in det.detect(f.image)]
    return [(img, box) for img, box in out if min(box[2], box[3]) >= 40]


def tight_crops(n: int, seed: int = 0) -> list[tuple[np.ndarray, tuple]]:
    import cv2

    from dfscan.scanner.faces import FaceDetector

    rng = np.random.default_rng(seed)
    with FaceDetector() as det:
        faces = faces_of_the_media(det)
    out = []
    for i in range(n):
        img, (x, y, w, h) = faces[i % len(faces)]
        side, size = max(w, h) * rng.uniform(1.0, 1.1), (112, 160, 224)[i % 3]
        jx, jy = rng.uniform(-0.03, 0.03, 2)
        x0, y0 = x + w / 2 + jx * w - side / 2, y + h / 2 + jy * h - side / 2
        s = size / side
        m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]])
        crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
        out.append((np.ascontiguousarray(crop), ((x - x0) * s, (y - y0) * s, w * s, h * s)))
    print(f"{n} tight crops of {len(faces)} faces of the shared media")
    return out


def scan_crops(crops, folder: Path) -> None:
    import cv2

    from dfscan.scanner.options import ScanOptions
    from dfscan.scanner.pipeline import scan

    for i, (crop, _) in enumerate(crops):
        cv2.imwrite(str(folder / f"{i:03d}.png"), crop[:, :, ::-1])
    for mode in ("retry off", "retry on"):
        os.environ.pop("DFSCAN_BENCH_NO_CLOSEUP", None)
        if mode == "retry off":
            os.environ["DFSCAN_BENCH_NO_CLOSEUP"] = "1"
        t = time.time()
        report = scan([folder], ScanOptions(workers=2, backend="onnxruntime", timeout=300))
        items = {Path(i["path"]).name: i for i in report["items"]}
        truth = {f"{i:03d}.png": tb for i, (_, tb) in enumerate(crops)}
        no_face = sum(i["status"] == "no_face" for i in items.values())
        ious = [max(iou(s["frames"][0]["box"], truth[name]) for s in it["subjects"])
                for name, it in items.items() if it["status"] == "ok"]
        print(f"  scan, {mode}: {no_face}/{len(crops)} no_face; box IoU with the face box: median "
              f"{np.median(ious):.2f}, under 0.5: {sum(v < 0.5 for v in ious)}; {time.time() - t:.1f} s")
    os.environ.pop("DFSCAN_BENCH_NO_CLOSEUP", None)


def dfdc_crops(dfdc: Path, reserved: Path, n: int) -> None:
    import cv2

    from dfscan.scanner.faces import FaceDetector

    held = set((reserved / "dfdc_sources.txt").read_text().split())
    paths = []
    with open(dfdc / "metadata.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            video = r["videoname"].removesuffix(".mp4")
            source = (r["original"] if r["label"].upper() == "FAKE" else r["videoname"]).removesuffix(".mp4")
            if source not in held and video not in held:
                paths.append(dfdc / "faces_224" / f"{video}.jpg")
    pick = np.random.default_rng(5).choice(len(paths), n, replace=False)
    plain = retried = 0
    with FaceDetector() as det:
        for i in pick:
            img = np.ascontiguousarray(cv2.imread(str(paths[i]))[:, :, ::-1])
            plain += not det.detect(img)
            retried += not det.detect_sampled(img, 0, 8)[0]
    print(f"  {n} tight DFDC crops (not reserved): no_face {plain} with the plain pass, {retried} with the retry")


def cost() -> None:
    import dfscan.scanner.faces as faces
    from dfscan.scanner.options import ScanOptions
    from dfscan.scanner.stage import CropSink, StageConfig, close_detector, open_detector, process_file

    real = faces.FaceDetector.detect_closeup
    cfg = StageConfig.of(ScanOptions(), 160)
    det = open_detector(cfg)
    det.detect_closeup(np.zeros((64, 64, 3), np.uint8))
    for name in NO_FACE_CLIPS:
        best: dict[str, float] = {}
        for _ in range(4):
            for mode in ("retry off", "retry on"):
                faces.FaceDetector.detect_closeup = real if mode == "retry on" else (lambda self, image: [])
                p = process_file(str(MEDIA / "videos" / name), "video", det, cfg, CropSink(32, lambda first, crops: None))
                ms = p["timings"]["detect"] / p["media"]["frames_sampled"] * 1000
                best[mode] = min(best.get(mode, ms), ms)
        print(f"  {name}: subjects {len(p['subjects'])}; detection ms per sampled frame: "
              + ", ".join(f"{k} {v:.1f}" for k, v in best.items()))
    faces.FaceDetector.detect_closeup = real
    close_detector(det)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--dfdc", type=Path)
    ap.add_argument("--reserved", type=Path, default=ROOT.parent / "shared" / "data" / "reserved")
    ap.add_argument("--dfdc-n", type=int, default=400)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scan_crops(tight_crops(a.n), Path(tmp))
    if a.dfdc:
        dfdc_crops(a.dfdc, a.reserved, a.dfdc_n)
    cost()


retry_switch()
if __name__ == "__main__":
    main()
