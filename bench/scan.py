"""Benchmark: full `dfscan scan` vs decode-only, on two generated sets, in one process.

    python bench/scan.py [--sets 720p,long1080] [--weights W] [--backend auto] [--workers N]

The sets (made once into --clips / --long, by default folders in the temporary folder, then reused):
  720p      ten 10 s clips, H.264 1280x720 30 fps, cut from the real Pexels interview clip in
            tests/data/media (looped, scaled up);
  long1080  four 60 s videos (--long-count, --long-seconds), H.264 1920x1080 30 fps: the Big
            Buck Bunny clip scaled up as a moving background with the Pexels interview clip
            pasted on it at 2/3 height, drifting: long material where decoding dominates.
After one warm-up scan of one clip (so a first-use ONNX export is not counted) it times, per set
and alternating, each --repeat times:
  1. decode-all: every frame decoded by PyAV (no conversion), one process per core;
  2. decode-sampled: the scan's own sampling (32 evenly spaced frames, converted to RGB), one
     process per core, nothing else;
  3. the full scan with default settings (decode → detect → track → crop → infer → aggregate).
Prints, per set, per-stage seconds, faces/s, videos/s and the ratios scan/decode-sampled (target:
≤ 2 on 720p, ≤ 1.3 on long1080; issue 12, on a 2-core CPU) and scan/decode-all.

    python bench/scan.py --ray [--ray-address auto]

also times the same scan through Ray Data (dfscan.scanner.ray_scan; a local Ray with every core unless
--ray-address), alternating with the local scan, and prints the Ray/local wall ratio (the
overhead of scheduling the same stages on Ray) and the per-video stage costs that docs/benchmarks.md's
scaling estimate is computed from. Ray's start-up is timed apart, not in the ratio.
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
BACKGROUND = ROOT / "tests" / "data" / "media" / "videos" / "bigbuckbunny.mp4"  # animation, no face


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
    import cv2

    w, h = size
    src_fps = 24000 / 1001  # the source's rate
    frames = _source_frames(SOURCE, int(seed * 1.9 * src_fps))

    def output():
        have, image = -1, None
        for i in range(int(seconds * fps)):
            while have < int(i / fps * src_fps):  # the source frame shown at this output time
                image, have = next(frames), have + 1
            frame = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
            yield np.ascontiguousarray(frame[:, ::-1]) if seed % 2 else frame

    write_h264(path, output(), size, fps)


def write_h264(path: Path, frames, size: tuple[int, int], fps: int, container_format: str | None = None) -> None:
    """Encode RGB frames as H.264 (veryfast, CRF 23: an ordinary upload's settings)."""
    import av

    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def make_long(path: Path, seed: int, *, seconds: float = 60.0, fps: int = 30, size=(1920, 1080)) -> None:
    """A long 1080p video: Big Buck Bunny scaled up as a moving background, the Pexels face clip on it.

    The face clip is pasted at 2/3 of the frame height (its face about a fifth of the frame width,
    well inside MediaPipe's range) and drifts across the frame and back every 40 s; each seed
    starts both sources elsewhere and mirrors every other video. Written to a .part file
    and renamed, so an interrupted run leaves no truncated video in the cache.
    """
    import cv2

    w, h = size
    ih = h * 2 // 3
    iw = ih * 16 // 9
    fg_fps, bg_fps = 24000 / 1001, 25.0
    fg = _source_frames(SOURCE, int(seed * 3.7 * fg_fps))
    bg = _source_frames(BACKGROUND, int(seed * 1.3 * bg_fps))
    part = path.with_suffix(".part")

    def output():
        fg_have = bg_have = -1
        face = back = None
        for i in range(int(seconds * fps)):
            t = i / fps
            while fg_have < int(t * fg_fps):
                face, fg_have = next(fg), fg_have + 1
            while bg_have < int(t * bg_fps):
                back, bg_have = next(bg), bg_have + 1
            frame = cv2.resize(back, (w, h), interpolation=cv2.INTER_LINEAR)
            phase = (t / 20.0) % 2.0  # across in 20 s, back in 20 s
            x = int((w - iw) * (phase if phase <= 1 else 2 - phase))
            y = (h - ih) // 2 + int(0.1 * (h - ih) * np.sin(t))
            frame[y:y + ih, x:x + iw] = cv2.resize(face, (iw, ih), interpolation=cv2.INTER_LINEAR)
            yield np.ascontiguousarray(frame[:, ::-1]) if seed % 2 else frame

    write_h264(part, output(), size, fps, "mp4")
    part.replace(path)


def ensure_set(folder: Path, names: list[str], make) -> list[Path]:
    """The set's videos in `folder`, each made by `make(path, index)` the first time."""
    folder.mkdir(parents=True, exist_ok=True)
    videos = []
    for i, name in enumerate(names):
        path = folder / name
        if not path.is_file() or path.stat().st_size == 0:
            t = time.perf_counter()
            make(path, i)
            print(f"  made {path.name} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s",
                  file=sys.stderr)
        videos.append(path)
    return videos


def decode_all(path: str) -> tuple[int, float]:
    """Decode every frame of the video stream (PyAV, threaded, no conversion): the decode floor."""
    import av

    t = time.perf_counter()
    n = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            n += 1
    return n, time.perf_counter() - t


def decode_only(path: str) -> tuple[int, float]:
    """Decode with the scan's sampling and touch every sampled frame; nothing else."""
    from dfscan.scanner.media import iter_frames, probe

    t = time.perf_counter()
    probe(path)
    n = 0
    for frame in iter_frames(path, frames=32):
        n += int(frame.image.shape[0] > 0)
    return n, time.perf_counter() - t


def weights_for(arg: str | None, tmp: Path) -> Path:
    if arg:
        return Path(arg)
    from dfscan.core.errors import InputError
    from dfscan.scanner.assets import default_weights

    try:
        return default_weights()
    except InputError:
        # A random-init EfficientNet-Lite0 at 256 px; the scores do not matter for timing.
        import torch

        from dfscan.train.checkpoint import save_checkpoint
        from dfscan.train.config import ModelConfig
        from dfscan.train.model import PGFDD

        torch.manual_seed(0)
        config = ModelConfig(backbone="efficientnet_lite0")
        print("  default weights missing: timing a random-init EfficientNet-Lite0 PG-FDD", file=sys.stderr)
        return save_checkpoint(tmp / "bench.safetensors", PGFDD(config).eval().deploy(), config, threshold=0.5,
                               provenance={"note": "bench"})


SETS = ("720p", "long1080")


def timed_pool(fn, files: list[Path], processes: int) -> tuple[float, int]:
    """Wall seconds and summed count of `fn` over `files` on a fresh spawn pool (start-up included, as in a scan)."""
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(processes) as pool:
        out = pool.map(fn, [str(f) for f in files], chunksize=1)
    return time.perf_counter() - t, sum(n for n, _ in out)


def bench_set(files: list[Path], options, decoders: int) -> dict:
    """One round on one set: decode-all, decode-sampled, scan."""
    from dfscan.scanner.pipeline import scan

    all_wall, all_frames = timed_pool(decode_all, files, decoders)
    sampled_wall, sampled_frames = timed_pool(decode_only, files, decoders)
    t = time.perf_counter()
    report = scan(files, options)
    return {"all": all_wall, "all_frames": all_frames, "sampled": sampled_wall, "sampled_frames": sampled_frames,
            "scan": time.perf_counter() - t, "report": report}


def print_set(label: str, runs: list[dict], target: float) -> None:
    """The run with the median scan/decode-sampled ratio, and every run's ratios."""
    ratios = [r["scan"] / r["sampled"] for r in runs]
    r = runs[int(np.argsort(ratios)[len(ratios) // 2])]
    n = len(r["report"]["items"])
    s = r["report"]["summary"]
    faces = s["faces"]
    print(f"\n{label}; sampled frames {r['sampled_frames']}, all frames {r['all_frames']}")
    print(f"median of {len(runs)} alternating runs (by scan/decode-sampled):")
    print(f"decode-all    : {r['all']:6.2f} s wall ({n / r['all']:.2f} videos/s, {r['all_frames'] / r['all']:.0f} frames/s)")
    print(f"decode-sampled: {r['sampled']:6.2f} s wall ({n / r['sampled']:.2f} videos/s)")
    print(f"full scan     : {r['scan']:6.2f} s wall ({n / r['scan']:.2f} videos/s, {faces / r['scan']:.1f} faces/s, "
          f"{faces} faces, {s['ok']} ok / {s['no_face']} no face / {s['error']} error)")
    stages = s["stages"]
    print("stages (s)    : " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
          + f"  [summed over processes; infer in {'the workers' if s.get('infer_in_workers') else 'the main process'}]")
    if stages.get("infer") and faces:
        print(f"infer         : {stages['infer'] / faces * 1000:.1f} ms/face in the scan; "
              f"{faces / stages['infer']:.1f} faces/s")
    print("all runs      : " + ", ".join(f"scan {x['scan']:.1f} / sampled {x['sampled']:.1f} / all {x['all']:.1f} s"
                                         for x in runs))
    ratio = ratios[runs.index(r)]
    print(f"scan/decode-all    : {r['scan'] / r['all']:.2f}x;  decode-sampled/decode-all {r['sampled'] / r['all']:.2f}x")
    print(f"scan/decode-sampled: {ratio:.2f}x  (target <= {target:g}x, issue 12)  {'PASS' if ratio <= target else 'MISS'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    ap.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "dfscan-bench-clips")
    ap.add_argument("--long", type=Path, default=Path(tempfile.gettempdir()) / "dfscan-bench-long1080",
                    help="folder for the long1080 set (made once, then reused)")
    ap.add_argument("--long-count", type=int, default=4,
                    help="videos in the long1080 set (a multiple of the cores keeps the pools balanced)")
    ap.add_argument("--long-seconds", type=float, default=60.0, help="length of each long1080 video")
    ap.add_argument("--weights")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--workers", type=int, default=None, help="scan workers (default: the scan's own choice)")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (default: the scan's own choice)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="alternate decode-only and scan this many times; medians")
    ap.add_argument("--ray", action="store_true", help="also time the scan on Ray Data against the local scan")
    ap.add_argument("--ray-address", default=None, help="Ray cluster for --ray (default: a local Ray started here)")
    args = ap.parse_args()
    names = [n for n in args.sets.split(",") if n]
    if not names or set(names) - set(SETS):
        ap.error(f"--sets takes a comma-separated list of: {', '.join(SETS)}")

    from dfscan.scanner.pipeline import ScanOptions, scan

    decoders = os.cpu_count() or 1  # decode-only gets every core: the fastest decode is the fair baseline
    sets: dict[str, tuple[str, list[Path], float]] = {}
    if "720p" in names:
        print(f"720p clips in {args.clips}", file=sys.stderr)
        clips = ensure_set(args.clips, [f"clip_{i:02d}.mp4" for i in range(10)], make_clip)
        sets["720p"] = ("720p: 10 x 10 s 1280x720 H.264 30 fps", clips, 2.0)
    if "long1080" in names:
        print(f"long1080 videos in {args.long}", file=sys.stderr)
        videos = ensure_set(args.long, [f"long1080_{args.long_seconds:g}s_{i:02d}.mp4" for i in range(args.long_count)],
                            lambda path, i: make_long(path, i, seconds=args.long_seconds))
        sets["long1080"] = (f"long1080: {args.long_count} x {args.long_seconds:g} s 1920x1080 H.264 30 fps", videos, 1.3)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    runs: dict[str, list[dict]] = {name: [] for name in sets}
    with tempfile.TemporaryDirectory() as tmp:
        weights = weights_for(args.weights, Path(tmp))
        options = ScanOptions(weights=weights, backend=args.backend, workers=args.workers, batch_size=args.batch_size,
                              threads=args.threads)

        scan(next(iter(sets.values()))[1][:1], options)  # warm-up: ONNX export / engine cache, file cache

        for _ in range(args.repeat):  # alternating, so load from other processes hits every measurement alike
            for name, (_, files, _) in sets.items():
                runs[name].append(bench_set(files, options, decoders))

    first = next(iter(runs.values()))[0]["report"]
    s = first["summary"]
    print(f"\nmachine: {os.cpu_count()} CPU cores (load average {load:.1f} at start); "
          + (f"scan: {s['workers']} workers, each scoring its own crops on {s['infer_threads']} thread(s)"
             if s.get("infer_in_workers") else f"scan: {s['workers']} workers + main-process inference")
          + f"; decode-only: {decoders} workers")
    print(f"backend {first['backend']['name']} {first['backend']['device']} {first['backend']['precision']}, "
          f"model {first['model']['backbone']} ({first['model']['name']}), default settings (32 frames/video)")
    for name, (label, _, target) in sets.items():
        print_set(label, runs[name], target)
    if args.ray:
        bench_ray(next(iter(sets.values()))[1], args)


def bench_ray(clips: list[Path], args: argparse.Namespace) -> None:
    """Local scan vs the same scan on Ray Data, alternating; medians; stage costs per video."""
    import ray

    from dfscan.scanner.pipeline import ScanOptions, scan
    from dfscan.scanner.ray_scan import RayOptions, scan_ray

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
