"""Benchmark: peak memory of the whole scan process tree against video length and --fps.

    OMP_NUM_THREADS=1 python bench/memory.py [--minutes 2,8] [--fps 1,4] [--baseline REV] [--workers 1]

Makes one long low-resolution video per length (320x180 H.264 at 12 fps, the real face of
tests/data/media/videos/single_face.mp4 looped, every other loop mirrored), scans each with
every --fps in a child process (`scan` with --workers, default settings otherwise; with
--infer-in-main the main process batches and scores the crops, as on a GPU), and polls
the resident memory (VmRSS, /proc) of that child and all its descendants every 50 ms. Prints,
per scan: crops scored, their bytes at the model's input size (what a scan holding every crop
of the file keeps, before any copy),
peak RSS of the tree, and wall time; then the ratio of the largest peak to the smallest
(target: about 1, i.e. memory independent of length and --fps).

--baseline REV also scans with the dfscan/scanner/pipeline.py of git revision REV (loaded as a module
from a temporary folder, the rest of the tree as it is), to show the figures before a change.
The videos are made in a temporary folder and deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "data" / "media" / "videos" / "single_face.mp4"
SIZE, RATE = (320, 180), 12
BASELINE_MODULE = "dfscan_baseline_pipeline"


def make_video(path: Path, minutes: float) -> None:
    """A long 320x180 clip: single_face.mp4's frames looped (mirrored every other loop), re-encoded at 12 fps."""
    import av
    import cv2

    with av.open(str(SOURCE)) as c:
        src = [cv2.resize(f.to_ndarray(format="rgb24"), SIZE, interpolation=cv2.INTER_AREA) for f in c.decode(video=0)]
    frames = src + [np.ascontiguousarray(f[:, ::-1]) for f in src]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "28"}
        for i in range(int(minutes * 60 * RATE)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _tree_rss(root: int) -> int:
    """Bytes resident in `root` and all its descendants now (each process's VmRSS, summed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def measure(video: Path, fps: float, args: argparse.Namespace, module: str, path_extra: str) -> dict:
    """Scan `video` in a child process; its summary plus the peak RSS of its process tree."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(video), "--one-fps", str(fps),
           "--module", module, "--path-extra", path_extra, "--workers", str(args.workers), "--backend", args.backend]
    if args.infer_in_main:
        cmd.append("--infer-in-main")
    if args.weights:
        cmd += ["--weights", args.weights]
    t = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, cwd=ROOT)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - t
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"scan of {video.name} at --fps {fps} failed (exit {proc.returncode})")
    result = json.loads(text.strip().splitlines()[-1])
    return {**result, "peak": peak, "wall": wall}


def run_one(args: argparse.Namespace) -> None:
    """Child mode: scan one file with the given pipeline module, print a one-line JSON summary."""
    import importlib

    if args.path_extra:
        sys.path.insert(0, args.path_extra)  # spawn passes sys.path on to the workers
    sys.path.insert(0, str(ROOT))
    pipeline = importlib.import_module(args.module)
    from dfscan.scanner.assets import default_weights

    weights = Path(args.weights) if args.weights else default_weights()
    options = pipeline.ScanOptions(fps=args.one_fps, workers=args.workers, backend=args.backend, weights=weights,
                                   infer_in_workers=False if args.infer_in_main else None)
    report = pipeline.scan([args.one], options)
    item = report["items"][0]
    size = int(pipeline.model_info(weights)[1].get("input_size", 256))
    print(json.dumps({"faces": report["summary"]["faces"], "status": item["status"], "crop_bytes": size * size * 3,
                      "frames": item["media"]["frames_sampled"], "score": item["score"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", default="2,8", help="video lengths, comma-separated")
    ap.add_argument("--fps", default="1,4", help="--fps values to scan with, comma-separated")
    ap.add_argument("--baseline", help="git revision whose dfscan/scanner/pipeline.py is measured too (e.g. HEAD)")
    ap.add_argument("--workers", type=int, default=1, help="scan workers (default 1: the other core stays free)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--weights")
    ap.add_argument("--infer-in-main", action="store_true", help="score in the main process (the GPU layout) on the CPU")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--one-fps", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--module", default="dfscan.scanner.pipeline", help=argparse.SUPPRESS)
    ap.add_argument("--path-extra", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run_one(args)
        return

    minutes = [float(m) for m in args.minutes.split(",")]
    rates = [float(f) for f in args.fps.split(",")]
    with tempfile.TemporaryDirectory(prefix="dfscan-memory-") as tmp:
        tmp_path = Path(tmp)
        versions = [("now", "dfscan.scanner.pipeline", "")]
        if args.baseline:
            code = subprocess.run(["git", "show", f"{args.baseline}:dfscan/scanner/pipeline.py"], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout
            (tmp_path / f"{BASELINE_MODULE}.py").write_text(code)
            versions.insert(0, (args.baseline, BASELINE_MODULE, str(tmp_path)))
        print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; scan workers {args.workers}, "
              f"backend {args.backend}, inference in {'the main process' if args.infer_in_main else 'the workers'}; "
              f"video {SIZE[0]}x{SIZE[1]} H.264 {RATE} fps (single_face.mp4 looped)")
        print(f"{'pipeline':>9} {'minutes':>7} {'fps':>4} {'frames':>6} {'crops':>6} {'crop MB':>8} {'peak RSS MB':>11} {'wall s':>7}")
        peaks: dict[str, list[int]] = {name: [] for name, _, _ in versions}
        for m in minutes:
            video = tmp_path / f"long_{m:g}min.mp4"
            t = time.perf_counter()
            make_video(video, m)
            print(f"  (made {video.name}: {video.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
            for f in rates:
                for name, module, extra in versions:
                    r = measure(video, f, args, module, extra)
                    crop_mb = r["faces"] * r["crop_bytes"] / 1e6
                    print(f"{name:>9} {m:7g} {f:4g} {r['frames']:6d} {r['faces']:6d} {crop_mb:8.1f} {r['peak'] / 1e6:11.0f} {r['wall']:7.1f}",
                          flush=True)
                    peaks[name].append(r["peak"])
            video.unlink()
    for name, values in peaks.items():
        print(f"{name}: peak RSS largest/smallest = {max(values) / min(values):.2f}x "
              f"({min(values) / 1e6:.0f} .. {max(values) / 1e6:.0f} MB; target about 1x)")


if __name__ == "__main__":
    main()
