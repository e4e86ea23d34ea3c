"""Benchmark: dfscan against the field's common front end (DeepfakeBench-style), same model, same files.

    python bench/peers.py [--copies 6] [--repeat 3] [--weights W] [--workers N] [VIDEO ...]

The peer pipeline, per video: the same 32 evenly spaced frames decoded by PyAV (dfscan's
dfscan.scanner.media.iter_frames), dlib's HOG frontal face detector on each (upsampled once, as
DeepfakeBench's preprocessing calls it: `face_detector(rgb, 1)`; --upsample 0 is faster and
misses faces under ~80 px), the largest
face kept, the FaceForensics++/DeepfakeBench 1.3x square crop (clamped to the frame), resized to
the model's input size, and every crop scored with the same ONNX model and session settings as a
dfscan worker (dfscan.scanner.worker.make_scorer: ONNX Runtime on the CPU, the scan's threads and batch
size); as many worker processes as the scan uses. Then dfscan's own scan (dfscan.scanner.pipeline.scan,
what `dfscan scan` runs) of the same files. The two alternate --repeat times after one warm-up
each; prints the median wall time of each, the faces each scored, the peer's stage split and
the ratio peer/dfscan (target: >= 4x, issue 12).

Default files: the five shared face clips of tests/data/media/videos, each linked --copies
times into a cache folder (the scan lists a file reached twice only once).
Needs dlib, a bench-only dependency: `pip install dlib` (builds from source: cmake and a C++
compiler) or `pip install -e ".[bench]"`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT / "tests" / "data" / "media" / "videos"
FACE_CLIPS = ("WolfgangLanger_Pexels.mp4", "carphone_pristine.mp4", "face_noface.mov", "noface_face.mov",
              "single_face.mp4")
FRAMES = 32
SCALE = 1.3


def square_box(left: int, top: int, right: int, bottom: int, width: int, height: int,
               scale: float = SCALE) -> tuple[int, int, int]:
    """(x, y, side) of the square crop around a face box, as FaceForensics++/DeepfakeBench cut it.

    The side is `scale` x the longer box side, centred on the box; the top-left corner is clamped
    into the frame and the side shrunk to fit, so the crop stays square and inside the frame.
    """
    side = int(max(right - left, bottom - top) * scale)
    cx, cy = (left + right) // 2, (top + bottom) // 2
    x, y = max(int(cx - side // 2), 0), max(int(cy - side // 2), 0)
    return x, y, max(1, min(width - x, height - y, side))


_worker: dict = {}


def _init_peer(spec, size: int, upsample: int) -> None:
    """A peer worker: dlib's HOG detector and dfscan's own CPU scorer, for the pool's life."""
    import dlib

    from dfscan.scanner.stage import setup_process
    from dfscan.scanner.worker import make_scorer

    setup_process()
    _worker.update(detector=dlib.get_frontal_face_detector(), scorer=make_scorer(spec), size=size, upsample=upsample)


def peer_video(path: str) -> dict:
    """One video through the peer front end: faces scored and seconds per stage."""
    from dfscan.scanner.media import iter_frames
    from dfscan.scanner.stage import as_crop

    detector, scorer, size = _worker["detector"], _worker["scorer"], _worker["size"]
    seconds = dict.fromkeys(("decode", "detect+crop", "infer"), 0.0)
    crops = []
    frames = iter_frames(path, frames=FRAMES)
    while True:
        t = time.perf_counter()
        frame = next(frames, None)
        seconds["decode"] += time.perf_counter() - t
        if frame is None:
            break
        t = time.perf_counter()
        image = frame.image
        rects = detector(image, _worker["upsample"])
        if len(rects):
            r = max(rects, key=lambda r: r.width() * r.height())
            x, y, side = square_box(r.left(), r.top(), r.right(), r.bottom(), image.shape[1], image.shape[0])
            crops.append(as_crop(image[y:y + side, x:x + side], size))
        seconds["detect+crop"] += time.perf_counter() - t
    t = time.perf_counter()
    scores = scorer.predict(np.stack(crops)) if crops else np.zeros(0, np.float32)
    seconds["infer"] += time.perf_counter() - t
    return {"faces": len(scores), "seconds": seconds}


def run_peer(files: list[Path], spec, size: int, workers: int, upsample: int) -> tuple[float, list[dict]]:
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(workers, initializer=_init_peer, initargs=(spec, size, upsample)) as pool:
        out = pool.map(peer_video, [str(f) for f in files], chunksize=1)
    return time.perf_counter() - t, out


def linked_copies(sources: list[Path], copies: int, folder: Path) -> list[Path]:
    """`copies` hard links (copies across file systems) of each source, so the scan lists each one."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(copies):
        for src in sources:
            dst = folder / f"{src.stem}_{k}{src.suffix}"
            if not dst.exists():
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            files.append(dst)
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", type=Path, help="videos to time (default: the shared face clips x --copies)")
    ap.add_argument("--copies", type=int, default=6, help="copies of each shared face clip (default 6: 30 videos)")
    ap.add_argument("--repeat", type=int, default=3, help="alternate the two pipelines this many times; medians")
    ap.add_argument("--weights")
    ap.add_argument("--workers", type=int, default=None, help="processes for both (default: the scan's own choice)")
    ap.add_argument("--threads", type=int, default=None, help="inference threads per worker (default: the scan's)")
    ap.add_argument("--upsample", type=int, default=1, help="dlib HOG upsampling (default 1, as DeepfakeBench)")
    args = ap.parse_args()
    try:
        import dlib  # noqa: F401
    except ImportError:
        print('bench/peers.py needs dlib (bench only): pip install dlib, or pip install -e ".[bench]" '
              "(builds from source; needs cmake and a C++ compiler)", file=sys.stderr)
        raise SystemExit(2) from None

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scan import weights_for  # bench/scan.py: the default weights, else a random-init stand-in

    from dfscan.engines.onnx_cache import cached_onnx
    from dfscan.scanner.pipeline import WORKER_BATCH, ScanOptions, resolve_model, resource_plan, scan
    from dfscan.scanner.worker import ScorerSpec

    files = args.videos or linked_copies([VIDEOS / n for n in FACE_CLIPS], args.copies,
                                         Path(tempfile.gettempdir()) / "dfscan-bench-peers")
    load = os.getloadavg()[0]
    peer_walls, scan_walls, peer_runs, reports = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        options = ScanOptions(weights=weights_for(args.weights, Path(tmp)), backend="onnxruntime",
                              workers=args.workers, threads=args.threads)
        checkpoint = resolve_model(options)[0]
        plan = resource_plan(options, len(files), "cpu")
        spec = ScorerSpec("onnxruntime", str(checkpoint.path), str(cached_onnx(checkpoint.path)), plan.threads,
                          WORKER_BATCH, dict(checkpoint.config))

        scan(files[:1], options)  # warm-ups: the ONNX export and the file cache
        run_peer(files[:1], spec, checkpoint.input_size, 1, args.upsample)
        for _ in range(args.repeat):  # interleaved, so load from other processes hits both alike
            wall, out = run_peer(files, spec, checkpoint.input_size, plan.workers, args.upsample)
            peer_walls.append(wall)
            peer_runs.append(out)
            t = time.perf_counter()
            reports.append(scan(files, options))
            scan_walls.append(time.perf_counter() - t)

    peer_wall, scan_wall = float(np.median(peer_walls)), float(np.median(scan_walls))
    out, report = peer_runs[-1], reports[-1]
    s = report["summary"]
    peer_faces = sum(r["faces"] for r in out)
    stages = {k: sum(r["seconds"][k] for r in out) for k in out[0]["seconds"]}
    print(f"\nmachine: {os.cpu_count()} CPU cores (load average {load:.1f} at start); both: {plan.workers} worker "
          f"processes, each scoring with ONNX Runtime on {plan.threads} thread(s), batch {WORKER_BATCH}; "
          f"model {report['model']['backbone']} ({report['model']['name']}), {checkpoint.input_size} px")
    print(f"videos: {len(files)}" + ("" if args.videos else f" (the {len(FACE_CLIPS)} shared face clips x {args.copies})")
          + f"; {FRAMES} frames sampled per video by both")
    print(f"median of {args.repeat} interleaved runs:")
    print(f"peer (DeepfakeBench-style: dlib HOG upsample {args.upsample}, largest face, {SCALE}x square): {peer_wall:6.2f} s wall, "
          f"{peer_faces} faces scored, {sum(r['faces'] > 0 for r in out)}/{len(out)} videos with a face")
    print("  stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()) + "  [summed over processes]")
    print(f"dfscan scan: {scan_wall:6.2f} s wall, {s['faces']} faces scored, {s['ok']}/{len(files)} videos with a face")
    print("  stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in s["stages"].items()) + "  [summed over processes]")
    print("all runs   : " + ", ".join(f"{p:.1f}/{d:.1f} s" for p, d in zip(peer_walls, scan_walls)))
    ratio = peer_wall / scan_wall
    print(f"peer/dfscan: {ratio:.2f}x  (target >= 4x, issue 12)  {'PASS' if ratio >= 4 else 'MISS'}")


if __name__ == "__main__":
    main()
