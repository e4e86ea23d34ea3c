"""Benchmark: full `dfscan scan` vs decode-only on ten 10-second 720p clips, in one process.

    python bench/scan.py [--clips DIR] [--weights W] [--backend auto] [--workers N]

Makes the clips once (H.264, 1280x720, 30 fps, cut from the real Pexels interview clip in
tests/data/media, looped and scaled up) unless DIR already holds them, then times
  1. decode-only: the same sampling (32 evenly spaced frames per clip) with the same number
     of worker processes, nothing else;
  2. the full scan with default settings (decode → detect → track → crop → infer → aggregate),
after one warm-up scan of one clip (so a first-use ONNX export is not counted).
Prints per-stage seconds, faces/s, videos/s and the scan/decode ratio (target: ≤ 2, issue 12, on a
2-core CPU with EfficientNet-Lite0).

    python bench/scan.py --ray [--ray-address auto]

also times the same scan through Ray Data (scanner.ray_scan; a local Ray with every core unless
--ray-address), alternating with the local scan, and prints the Ray/local wall ratio (the
overhead of scheduling the same stages on Ray) and the per-video stage costs that the README's
"Scaling out" estimate is computed from. Ray's start-up is timed apart, not in the ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "data" / "media" / "videos" / "WolfgangLanger_Pexels.mp4"


def _source_frames(path: Path, start: int):
    """The source's RGB frames from index `start` on, looping back to the beginning forever."""
    import av

    first = True
    while True:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(stream)):
                if first and n < start:
                    continue
                yield frame.to_ndarray(format="rgb24")
        first = False


def make_clip(path: Path, seed: int, *, seconds: float = 10.0, fps: int = 30, size=(1280, 720)) -> None:
    """A 720p clip cut from the real Pexels interview clip (looped, scaled up, every other one mirrored).

    Each clip starts at another point of the 19.7 s source, so the ten clips are not one file
    ten times over, and a real face is on screen as in an upload.
    """
    import av
    import cv2

    w, h = size
    src_fps = 24000 / 1001  # the source's rate
    offset = int(seed * 1.9 * src_fps)
    frames = _source_frames(SOURCE, offset)
    have, image = -1, None
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(int(seconds * fps)):
            need = int(i / fps * src_fps)  # source frame shown at this output time
            while have < need:
                image, have = next(frames), have + 1
            frame = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
            if seed % 2:
                frame = np.ascontiguousarray(frame[:, ::-1])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def ensure_clips(folder: Path, count: int = 10) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(count):
        path = folder / f"clip_{i:02d}.mp4"
        if not path.is_file() or path.stat().st_size == 0:
            t = time.perf_counter()
            make_clip(path, i)
            print(f"  made {path.name} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        clips.append(path)
    return clips


def decode_only(path: str) -> tuple[int, float]:
    """Decode with the scan's sampling and touch every sampled frame; nothing else."""
    from scanner.media import iter_frames, probe

    t = time.perf_counter()
    probe(path)
    n = 0
    for frame in iter_frames(path, frames=32):
        n += int(frame.image.shape[0] > 0)
    return n, time.perf_counter() - t


def weights_for(arg: str | None, tmp: Path) -> Path:
    if arg:
        return Path(arg)
    from scanner.assets import default_weights
    from train.errors import InputError

    try:
        return default_weights()
    except InputError:
        # A random-init EfficientNet-Lite0 at 256 px; the scores do not matter for timing.
        import torch

        from train.checkpoint import save_checkpoint
        from train.config import ModelConfig
        from train.model import PGFDD

        torch.manual_seed(0)
        config = ModelConfig(backbone="efficientnet_lite0")
        print("  default weights missing: timing a random-init EfficientNet-Lite0 PG-FDD", file=sys.stderr)
        return save_checkpoint(tmp / "bench.safetensors", PGFDD(config).eval().deploy(), config, threshold=0.5,
                               provenance={"note": "bench"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "dfscan-bench-clips")
    ap.add_argument("--weights")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--workers", type=int, default=None, help="scan workers (default: the scan's own choice)")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (default: the scan's own choice)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="alternate decode-only and scan this many times; medians")
    ap.add_argument("--ray", action="store_true", help="also time the scan on Ray Data against the local scan")
    ap.add_argument("--ray-address", default=None, help="Ray cluster for --ray (default: a local Ray started here)")
    args = ap.parse_args()

    from scanner.pipeline import ScanOptions, scan

    decoders = os.cpu_count() or 1  # decode-only gets every core: the fastest decode is the fair baseline
    print(f"clips in {args.clips}", file=sys.stderr)
    clips = ensure_clips(args.clips)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    decode_walls, scan_walls, reports = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        weights = weights_for(args.weights, Path(tmp))
        options = ScanOptions(weights=weights, backend=args.backend, workers=args.workers, batch_size=args.batch_size,
                              threads=args.threads)

        scan(clips[:1], options)  # warm-up: ONNX export / engine cache, file cache

        for _ in range(args.repeat):  # alternating, so load from other processes hits both alike
            t = time.perf_counter()
            with mp.get_context("spawn").Pool(decoders) as pool:
                decoded = pool.map(decode_only, [str(c) for c in clips], chunksize=1)
            decode_walls.append(time.perf_counter() - t)

            t = time.perf_counter()
            reports.append(scan(clips, options))
            scan_walls.append(time.perf_counter() - t)

    ratios = [s / d for s, d in zip(scan_walls, decode_walls)]
    pick = int(np.argsort(ratios)[len(ratios) // 2])  # the run with the median ratio
    report, decode_wall, scan_wall = reports[pick], decode_walls[pick], scan_walls[pick]
    s = report["summary"]
    frames = sum(n for n, _ in decoded)
    faces = s["faces"]
    print(f"\nmachine: {os.cpu_count()} CPU cores (load average {load:.1f} at start); "
          + (f"scan: {s['workers']} workers, each scoring its own crops on {s['infer_threads']} thread(s)"
             if s.get("infer_in_workers") else f"scan: {s['workers']} workers + main-process inference")
          + f"; decode-only: {decoders} workers")
    print(f"backend {report['backend']['name']} {report['backend']['device']} {report['backend']['precision']}, "
          f"model {report['model']['backbone']} ({report['model']['name']}), default settings (32 frames/clip)")
    print(f"clips: {len(clips)} x 10 s 1280x720 H.264 30 fps; sampled frames {frames}")
    print(f"median of {args.repeat} alternating runs (by ratio):")
    print(f"decode-only : {decode_wall:6.2f} s wall ({len(clips) / decode_wall:.2f} videos/s)")
    print(f"full scan   : {scan_wall:6.2f} s wall ({len(clips) / scan_wall:.2f} videos/s, {faces / scan_wall:.1f} faces/s, "
          f"{faces} faces, {s['ok']} ok / {s['no_face']} no face / {s['error']} error)")
    stages = s["stages"]
    print("stages (s)  : " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
          + f"  [summed over processes; infer in {'the workers' if s.get('infer_in_workers') else 'the main process'}]")
    if stages.get("infer") and faces:
        print(f"infer       : {stages['infer'] / faces * 1000:.1f} ms/face in the scan; "
              f"{faces / stages['infer']:.1f} faces/s")
    ratio = ratios[pick]
    print("all runs    : " + ", ".join(f"{sw:.1f}/{dw:.1f} s = {r:.2f}x" for sw, dw, r in zip(scan_walls, decode_walls, ratios)))
    print(f"scan/decode : {ratio:.2f}x  (target <= 2x, issue 12)  {'PASS' if ratio <= 2 else 'MISS'}")
    if args.ray:
        bench_ray(clips, args)


def bench_ray(clips: list[Path], args: argparse.Namespace) -> None:
    """Local scan vs the same scan on Ray Data, alternating; medians; stage costs per video."""
    import ray

    from scanner.pipeline import ScanOptions, scan
    from scanner.ray_scan import RayOptions, scan_ray

    t = time.perf_counter()
    ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t
    local_walls, ray_walls, ray_reports = [], [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            weights = weights_for(args.weights, Path(tmp))
            options = ScanOptions(weights=weights, backend=args.backend, workers=args.workers, batch_size=args.batch_size,
                                  threads=args.threads)
            scan_ray(clips[:1], options, RayOptions())  # warm-up: actors' first imports, the model cache
            for _ in range(args.repeat):
                t = time.perf_counter()
                scan(clips, options)
                local_walls.append(time.perf_counter() - t)
                t = time.perf_counter()
                ray_reports.append(scan_ray(clips, options, RayOptions()))
                ray_walls.append(time.perf_counter() - t)
    finally:
        ray.shutdown()
    local_wall, ray_wall = float(np.median(local_walls)), float(np.median(ray_walls))
    r = ray_reports[int(np.argsort(ray_walls)[len(ray_walls) // 2])]
    s, plan = r["summary"], r["summary"]["ray"]
    n = len(clips)
    print(f"\nray: {plan['nodes']} node(s), {plan['cpus']:g} CPUs, {plan['gpus']:g} GPUs; {plan['crop_actors']} CPU actor(s), "
          f"{plan['infer_actors']} inference actor(s), batch {plan['batch_size']}; ray.init {startup:.1f} s (not counted)")
    print(f"local scan  : {local_wall:6.2f} s wall (median of {args.repeat}: " + ", ".join(f"{w:.1f}" for w in local_walls) + ")")
    print(f"ray scan    : {ray_wall:6.2f} s wall (median of {args.repeat}: " + ", ".join(f"{w:.1f}" for w in ray_walls) + ")")
    print(f"ray/local   : {ray_wall / local_wall:.2f}x")
    per_video = {k: v / n for k, v in s["stages"].items() if k != "prepare"}
    cpu = sum(v for k, v in per_video.items() if k != "infer")
    print("per video   : " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in per_video.items())
          + f"  (CPU stages {cpu:.2f} core-s/video; infer {per_video.get('infer', 0.0):.2f} s/video on {r['backend']['device']})")


if __name__ == "__main__":
    main()
