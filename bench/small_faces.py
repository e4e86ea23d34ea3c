"""Benchmark: small-face recall and cost of tiled vs plain MediaPipe detection, in one process.

    OMP_NUM_THREADS=1 python bench/small_faces.py [--sides 480,640,800] [--every 4,6,8] [--repeat 3]

The small-face set is built in memory from the six group photos of tests/data/media: each photo
shrunk 4x (INTER_AREA) and pasted on a black canvas of the original size, once at the centre and
once in the top-left corner (12 frames). Ground truth: the faces the plain full-range detector
finds on the ORIGINAL photos, boxes scaled by 1/4 and offset to where the photo was pasted.
A detection matches a ground-truth face (one to one) at IoU >= 0.3 or when either box's centre
lies inside the other; detections matching none are false positives.

Prints, per mode (plain; tiled at the automatic tile size and at each --sides value): recall,
false positives, inferences and ms per frame, and the cost ratio vs plain (same process,
interleaved, medians of --repeat). Then the video schedule: a 32-frame slow pan over each
centre canvas, the tiled pass on every k-th sampled frame and the plain pass on the others,
joined by the tracker as the scan does; prints the faces covered by a kept track and the cost.
Last, the false-positive check on the shared media (tests/data/media/videos/*, images/*): every
detection the tiled pass adds over the plain pass, its score, and whether it would reach the
report (kept by the tracker for a video; every detection of a still image is kept).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / "tests" / "data" / "media"
SHRINK = 4
PAN_FRAMES = 32


def load(path: Path) -> np.ndarray:
    from dfscan.scanner.media import iter_frames

    (frame,) = list(iter_frames(path))
    return frame.image


def shrunk_canvas(photo: np.ndarray, where: str) -> tuple[np.ndarray, tuple[int, int]]:
    """The photo shrunk SHRINK x on a black canvas of its size; returns the canvas and the paste origin."""
    import cv2

    h, w = photo.shape[:2]
    small = cv2.resize(photo, (w // SHRINK, h // SHRINK), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    x0, y0 = ((w - sw) // 2, (h - sh) // 2) if where == "centre" else (0, 0)
    canvas = np.zeros_like(photo)
    canvas[y0:y0 + sh, x0:x0 + sw] = small
    return canvas, (x0, y0)


def truth_on_canvas(boxes: list[tuple[float, ...]], origin: tuple[int, int]) -> list[tuple[float, ...]]:
    x0, y0 = origin
    return [(x / SHRINK + x0, y / SHRINK + y0, w / SHRINK, h / SHRINK) for x, y, w, h in boxes]


def _inside(p: tuple[float, float], box: tuple[float, ...]) -> bool:
    x, y, w, h = box
    return x <= p[0] <= x + w and y <= p[1] <= y + h


def same_face(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """IoU >= 0.3, or either box's centre inside the other."""
    from dfscan.scanner.track import _iou

    ca, cb = (a[0] + a[2] / 2, a[1] + a[3] / 2), (b[0] + b[2] / 2, b[1] + b[3] / 2)
    return _iou(a, b) >= 0.3 or _inside(ca, b) or _inside(cb, a)


def match(truth: list[tuple[float, ...]], found: list[tuple[float, ...]]) -> tuple[int, int]:
    """(true positives, false positives) under one-to-one matching."""
    used: set[int] = set()
    for t in truth:
        for j, f in enumerate(found):
            if j not in used and same_face(t, f):
                used.add(j)
                break
    return len(used), len(found) - len(used)


def timed(fn, image: np.ndarray) -> tuple[list, float]:
    t = time.perf_counter()
    out = fn(image)
    return out, time.perf_counter() - t


class Counted:
    """Counts the detector's MediaPipe passes (whole frame, tiles, confirmations) and rejected candidates."""

    def __init__(self, detector) -> None:
        self.passes = self.rejected = 0
        run, confirm = detector._run, detector._confirm

        def counted_run(*a, **k):
            self.passes += 1
            return run(*a, **k)

        def counted_confirm(*a, **k):
            out = confirm(*a, **k)
            self.rejected += out is None
            return out

        detector._run, detector._confirm = counted_run, counted_confirm


def still_set(detector) -> list[tuple[str, np.ndarray, list[tuple[float, ...]]]]:
    """(name, canvas, ground-truth boxes) for the 6 photos x 2 placements."""
    cases = []
    for i in range(1, 7):
        photo = load(MEDIA / "images" / f"group_sample{i}.jpg")
        boxes = [d.box for d in detector.detect(photo)]
        for where in ("centre", "corner"):
            canvas, origin = shrunk_canvas(photo, where)
            cases.append((f"group_sample{i}/{where}", canvas, truth_on_canvas(boxes, origin)))
    return cases


def bench_stills(cases, modes: dict, repeat: int) -> dict[str, dict]:
    """Recall, false positives, passes and median ms per frame of each mode, the modes interleaved.

    `modes`: name -> (detect function, its detector's Counted).
    """
    times: dict[str, list[float]] = {m: [] for m in modes}
    found: dict[str, list] = {}
    counts: dict[str, tuple[int, int]] = {}
    for _ in range(repeat):
        for name, (fn, counter) in modes.items():
            found[name] = []
            passes, rejected = counter.passes, counter.rejected
            for _, canvas, _ in cases:
                dets, dt = timed(fn, canvas)
                times[name].append(dt)
                found[name].append(dets)
            counts[name] = (counter.passes - passes, counter.rejected - rejected)
    out = {}
    for name in modes:
        tp = fp = 0
        for (_, _, truth), dets in zip(cases, found[name]):
            a, b = match(truth, [d.box for d in dets])
            tp, fp = tp + a, fp + b
        out[name] = {"tp": tp, "fp": fp, "ms": 1000 * statistics.median(times[name]),
                     "passes": counts[name][0] / len(cases), "rejected": counts[name][1]}
    return out


def pan(canvas: np.ndarray, truth: list[tuple[float, ...]], n: int = PAN_FRAMES, step: int = 3):
    """A slow pan: frame i is the canvas shifted right/down by i*step px (black edge), with its moved boxes."""
    h, w = canvas.shape[:2]
    for i in range(n):
        d = i * step
        frame = np.zeros_like(canvas)
        frame[d:, d:] = canvas[:h - d, :w - d]
        yield frame, [(x + d, y + d, bw, bh) for x, y, bw, bh in truth]


def bench_video(detector, counter: Counted, cases, every: int) -> dict:
    """Faces covered by a kept track, false tracks, seconds and passes for one schedule, as the scan runs it."""
    from dfscan.scanner.track import track_faces

    covered = false = frames = 0
    seconds = 0.0
    passes = counter.passes
    for _, canvas, truth in cases:
        per_frame, reach, truths = [], [], []
        for pos, (frame, moved) in enumerate(pan(canvas, truth)):
            (dets, searched), dt = timed(lambda im: detector.detect_sampled(im, pos, every), frame)
            seconds += dt
            per_frame.append(dets)
            reach.append(searched)
            truths.append(moved)
        frames += len(per_frame)
        hit = set()
        for tr in track_faces(per_frame, reach=reach):
            faces = {k for pos, d in tr.observations for k, t in enumerate(truths[pos]) if same_face(t, d.box)}
            hit |= faces
            false += not faces
        covered += len(hit)
    return {"covered": covered, "false": false, "total": sum(len(t) for *_, t in cases),
            "ms": 1000 * seconds / frames, "passes": (counter.passes - passes) / frames}


def media_check(detector, side_of=None) -> list[str]:
    """Lines for every detection the tiled pass adds over the plain pass on the shared media.

    `side_of(width, height)` gives the tile side (None: the automatic `tile_size`).
    """
    from dfscan.scanner.media import iter_frames
    from dfscan.scanner.track import track_faces

    lines = []
    paths = sorted((MEDIA / "videos").iterdir()) + sorted((MEDIA / "images").iterdir())
    for path in paths:
        if path.suffix.lower() not in {".mp4", ".mov", ".jpg", ".png"}:
            continue
        plain_frames, tiled_frames, added = [], [], []
        for pos, frame in enumerate(iter_frames(path, frames=32)):
            h, w = frame.image.shape[:2]
            side = side_of(w, h) if side_of else None
            plain = detector.detect(frame.image)
            tiled = detector.detect_tiled(frame.image, side)
            plain_frames.append(plain)
            tiled_frames.append(tiled)
            added += [(pos, d) for d in tiled if not any(same_face(d.box, p.box) for p in plain)]
        if len(tiled_frames) > 1:
            kept_tiled = track_faces(tiled_frames)
            kept_plain = track_faces(plain_frames)
            kept_ids = {id(d) for t in kept_tiled for _, d in t.observations}
            extra_tracks = len(kept_tiled) - len(kept_plain)
        else:
            kept_ids = {id(d) for d in tiled_frames[0]}
            extra_tracks = len(tiled_frames[0]) - len(plain_frames[0])
        reported = [d for _, d in added if id(d) in kept_ids]
        lines.append(f"  {path.name:28s} {w}x{h} tile {tile_label(w, h, side, detector.model):>6s}: "
                     f"{len(added)} added detection(s) in {len(plain_frames)} frame(s)"
                     + (f", scores {min(d.score for _, d in added):.2f}-{max(d.score for _, d in added):.2f}" if added else "")
                     + f"; reaching the report: {len(reported)} detection(s), {extra_tracks:+d} subject(s)")
    return lines


def tile_label(w: int, h: int, side: int | None, model: str) -> str:
    from dfscan.scanner.faces import tile_size

    s = side if side is not None else tile_size(w, h, model)
    return str(s) if s else "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sides", default="640,960", help="fixed tile sides to compare with the automatic one")
    ap.add_argument("--every", default="1,4,8,16", help="video schedules: tiled pass on every k-th sampled frame")
    ap.add_argument("--repeat", type=int, default=3, help="timing rounds (medians)")
    ap.add_argument("--no-media", action="store_true", help="skip the false-positive check on the shared media")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from dfscan.scanner.faces import TILE_SCORE, FaceDetector, tile_size

    sides = [int(s) for s in args.sides.split(",") if s]
    with FaceDetector() as det, FaceDetector(tile_score=0.5) as strict:
        counter, strict_counter = Counted(det), Counted(strict)
        cases = still_set(det)
        n_truth = sum(len(t) for *_, t in cases)
        h, w = cases[0][1].shape[:2]
        sizes = [t[2] for *_, tt in cases for t in tt]
        print(f"ground truth: {n_truth // 2} faces on the 6 original photos (plain full-range, score >= 0.5), "
              f"x 2 placements (centre, top-left corner) = {n_truth} faces on 12 frames, "
              f"{w} px wide, faces {min(sizes):.0f}-{max(sizes):.0f} px ({min(sizes) / w:.1%}-{max(sizes) / w:.1%} of the width)")
        modes = {"plain": (det.detect, counter),
                 f"tiled auto, candidates >= {TILE_SCORE}": (det.detect_tiled, counter),
                 "tiled auto, candidates >= 0.5": (strict.detect_tiled, strict_counter)}
        modes.update({f"tiled {s}, candidates >= {TILE_SCORE}": ((lambda s: lambda im: det.detect_tiled(im, s))(s), counter)
                      for s in sides})
        counter.passes = 0
        res = bench_stills(cases, modes, args.repeat)
        base = res["plain"]
        print(f"\nstills: shrunk photos on the canvas (auto tile side {tile_size(w, h)} px at {w} px; "
              f"median ms of {args.repeat} interleaved rounds, OMP_NUM_THREADS=1):")
        print(f"  {'mode':34s} {'recall':>12s} {'FP':>3s} {'rejected':>8s} {'passes':>6s} {'ms/frame':>8s} {'cost':>6s} {'passes':>6s}")
        for name, r in res.items():
            print(f"  {name:34s} {r['tp']:3d}/{n_truth} {r['tp'] / n_truth:4.0%} {r['fp']:3d} {r['rejected']:8d} "
                  f"{r['passes']:6.1f} {r['ms']:8.1f} {r['ms'] / base['ms']:5.2f}x {r['passes'] / base['passes']:5.1f}x")
        print("  (FP: detections matching no ground-truth face; rejected: tile candidates the close-crop "
              "confirmation refused; cost: ms and MediaPipe passes vs plain)")

        centre = [c for c in cases if c[0].endswith("centre")]
        print(f"\nvideo: {PAN_FRAMES}-frame slow pan over each centre canvas; tiled pass (auto size) on every k-th "
              "sampled frame, plain between, tracked as the scan does (a face counts once a kept track covers it):")
        plain = bench_video(det, counter, centre, 0)
        for k in [0] + [int(e) for e in args.every.split(",") if e]:
            r = plain if k == 0 else bench_video(det, counter, centre, k)
            label = "plain only" if k == 0 else f"every {k}th"
            print(f"  {label:12s}: {r['covered']:2d}/{r['total']} faces tracked {r['covered'] / r['total']:4.0%}, "
                  f"{r['false']} false track(s), {r['ms']:5.1f} ms/frame, cost {r['ms'] / plain['ms']:4.2f}x, "
                  f"{r['passes']:4.2f} passes/frame ({r['passes'] / plain['passes']:.2f}x)")

        if not args.no_media:
            print("\nshared media, tiled (auto size, every sampled frame) vs plain, 32 sampled frames per video:")
            for line in media_check(det):
                print(line)
            print("\nstress: the same with tiles of a third of the longer side on every file (most are too small "
                  "for automatic tiles):")
            for line in media_check(det, lambda w, h: max(64, max(w, h) // 3)):
                print(line)


if __name__ == "__main__":
    main()
