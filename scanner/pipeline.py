"""The scan pipeline: decode → detect → track → crop (→ infer on a CPU) in worker processes, aggregate here.

Why this shape:
- Decoding and face detection are CPU-bound and sometimes crash or hang on hostile files, so
  they run in worker processes (spawn context: forking a process that holds torch, ONNX Runtime
  or MediaPipe threads is not safe). Each worker owns one FaceDetector for its whole life.
- Each worker talks to the main process over its own pipe. A worker that dies can only
  garble its own pipe, never a queue the others share; the main process knows which file each
  worker holds, so a crash or a hang becomes an error item for that file and a fresh worker
  takes over the rest.
- Where inference runs depends on the backend (resource_plan). On a GPU the main process
  batches crops across files to the backend's batch size (a 1-face image and a 32-frame video
  share one batch, which keeps the GPU busy), in a thread of its own so that it keeps reading
  the workers' pipes meanwhile. On the CPU the same cores decode, detect and infer, so each
  worker scores its own crops with a one-thread session and only numbers come back: a single
  inference thread in the main process was the critical path (bench/scan.py).
- Only face crops (uint8, 256x256) or their scores cross process boundaries, never full
  frames, and crops stream: a worker sends ("crops", task, first, array) chunks of up to a
  batch as it makes them, and may have at most CHUNKS_IN_FLIGHT chunks unscored (the main
  process acks each chunk once scored); the main process keeps only each crop's score, by
  its sequence number in the file. At the end of a file the worker sends ("result", task,
  payload): media, timings, and subjects whose frames name their crops by sequence number.
  Memory therefore does not grow with a file's length or --fps (with --fps 1 a 30-minute
  file held every crop, 1.36 GB over the process tree). With in-worker scoring each chunk is
  scored in the worker as it fills. The main process also stops reading from workers while
  it holds more crops than a few batches.
- --timeout counts from a file's last progress (a sampled frame decoded, a chunk scored, or
  waiting on the main process for an ack), not from its start: a long file that keeps moving
  is not cut off, a hung decoder still is.

Test hook: the environment variable DFSCAN_TEST_FAULT="crash:NAME,hang:NAME,slow:NAME" makes a
worker kill itself with SIGSEGV (crash) or sleep forever (hang) when it starts the file whose
name is NAME, or take SLOW_FRAME_S per sampled frame (slow). Nothing sets it outside the tests;
it exists so the fault handling can be tested on real processes.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, is_dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable

import numpy as np

from scanner import report as rp
from scanner.aggregate import STRATEGIES, aggregate_item
from train.errors import InputError

FAULT_ENV = "DFSCAN_TEST_FAULT"
PREFETCH = 2  # files handed to a worker at once: the one it works on and the next
CHUNKS_IN_FLIGHT = 2  # chunks of crops a worker may have sent and not yet had scored (see _Link)
SLOW_FRAME_S = 0.4  # the test hook's "slow" file: this long per sampled frame
MAX_STARTUP_FAILURES = 3
# Crops per run of a worker's one-thread CPU session. bench/scan.py on 2 cores: 28 ms/face at 1,
# 34 at 4, 40 at 8, 50 at 16 (a single image's activations stay in cache).
WORKER_BATCH = 1


class ScanError(InputError):
    """The scan cannot run on this machine (workers cannot start): one line for the user, no traceback."""


@dataclass
class ScanOptions:
    """Everything that shapes a scan. Fields that change results end up in the report's settings."""

    frames: int = 32
    fps: float | None = None
    keyframes: bool = False
    batch_size: int | None = None  # None: the backend's preferred size
    workers: int | None = None  # None: one per CPU core (see resource_plan)
    threads: int | None = None  # inference threads of a CPU backend; None: see resource_plan
    infer_in_workers: bool | None = None  # CPU backends: score in the workers (None: yes on the CPU, no on a GPU)
    backend: str = "auto"
    weights: Path | None = None  # None: scanner.assets.default_weights()
    engine: Path | None = None
    threshold: float | None = None  # None: the model's calibrated threshold
    crops: bool = False
    face_model: str = "full"
    min_face_score: float = 0.5
    tile_every: int = 8  # tiled small-face pass on every k-th sampled frame of large frames; 0: never (see faces.tile_size)
    strategy: str = "mean"
    timeout: float | None = 300.0  # seconds a file may go without progress in a worker; None or 0: no limit
    resume: bool = False
    report: Path | None = None  # where the final report goes: the stream is written beside it
    stream: bool = True  # write <report stem>.stream.jsonl as items finish (needs `report`)

    def check(self) -> None:
        """Reject impossible values with one clear line before any process starts."""
        if self.frames < 1:
            raise InputError("--frames must be at least 1")
        if self.fps is not None and self.fps <= 0:
            raise InputError("--fps must be positive")
        if self.fps is not None and self.keyframes:
            raise InputError("--fps and --keyframes exclude each other")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError("--batch-size must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise InputError("--workers must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise InputError("--threads must be at least 1")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise InputError("--threshold must be between 0 and 1")
        if self.strategy not in STRATEGIES:
            raise InputError(f"unknown strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if self.face_model not in ("full", "short"):
            raise InputError(f"unknown face model {self.face_model!r}: choose full or short")
        if self.tile_every < 0:
            raise InputError("--tile-every must be 0 (never) or more")
        if self.timeout is not None and self.timeout < 0:
            raise InputError("--timeout must be positive (0: no limit)")
        if self.resume and self.report is None:
            raise InputError("--resume needs the report path of the run to resume")


@dataclass
class ScanProgress:
    """What a progress display needs after each finished file (item is None for the first call)."""

    total: int
    done: int
    faces: int
    elapsed: float
    item: dict | None = None
    resumed: int = 0
    note: str = ""  # a step before the first file, e.g. the one-time model export


ProgressFn = Callable[[ScanProgress], None]


# ====================================================================== worker side

@dataclass
class _WorkerConfig:
    frames: int
    fps: float | None
    keyframes: bool
    crops: bool
    face_model: str
    min_face_score: float
    size: int
    scorer: dict | None = None  # CPU backends score in the worker: {"name", "weights", "onnx_path", "threads", "batch_size"}
    chunk: int = 32  # crops per chunk sent to the main process or scored in the worker
    tile_every: int = 0  # ScanOptions.tile_every


def _make_scorer(spec: dict) -> Any:
    """The worker's own CPU backend (one thread by default: the worker pool is the parallelism).

    ONNX Runtime gets the main process's exported file and config, so the worker never imports
    torch (1.6 s of start-up per worker on this machine, longer than a 10 s clip takes).
    """
    if spec["name"] == "onnxruntime":
        from engines.onnxruntime import OnnxRuntimeBackend
        from train.config import ModelConfig

        return OnnxRuntimeBackend(spec["weights"], batch_size=spec["batch_size"], threads=spec["threads"],
                                  onnx_path=spec["onnx_path"], config=ModelConfig.from_dict(spec["config"]))
    import torch

    from engines.torch import TorchBackend

    torch.set_num_threads(spec["threads"])
    return TorchBackend(spec["weights"], device="cpu", fp16=False, batch_size=spec["batch_size"])


class _CropSink:
    """Takes a file's crops as they are made and passes them on in chunks, so they never pile up.

    Each crop gets a sequence number in its file (0, 1, ...): the subjects' frames name their
    crops by it, and `deliver(first, crops)` gets the chunk whose first crop is `first`.
    """

    def __init__(self, chunk: int, deliver: Callable[[int, np.ndarray], None]):
        self.chunk = max(1, int(chunk))
        self.deliver = deliver
        self.buffer: list[np.ndarray] = []
        self.count = 0  # crops taken so far

    def add(self, crop: np.ndarray) -> int:
        """Keep the crop for the next chunk; returns its sequence number."""
        self.buffer.append(crop)
        self.count += 1
        return self.count - 1

    def send_full(self) -> None:
        """Deliver the buffered crops once they make a chunk (one frame's faces are never split)."""
        if len(self.buffer) >= self.chunk:
            self._send()

    def finish(self) -> None:
        if self.buffer:
            self._send()

    def _send(self) -> None:
        first, crops = self.count - len(self.buffer), np.stack(self.buffer)
        self.buffer = []
        self.deliver(first, crops)


class _ScoreInWorker:
    """A CPU backend in the worker scores each chunk as it comes: only the numbers are kept and sent back."""

    def __init__(self, scorer: Any, beat: Callable[[], None]):
        self.scorer, self.beat = scorer, beat
        self.parts: list[np.ndarray] = []
        self.seconds = 0.0

    def __call__(self, first: int, crops: np.ndarray) -> None:
        t = time.perf_counter()
        scores = np.asarray(self.scorer.predict(crops), dtype=np.float32).reshape(-1)
        self.seconds += time.perf_counter() - t
        if len(scores) != len(crops):
            raise RuntimeError(f"the backend returned {len(scores)} scores for {len(crops)} crops")
        self.parts.append(scores)
        self.beat()

    def into(self, payload: dict) -> None:
        """The file's scores, indexed by crop sequence number, and the time they took."""
        payload["scores"] = np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)
        payload["timings"]["infer"] = self.seconds


_ACK = ("ack",)  # main → worker: one chunk of its crops has been scored


class _Link:
    """The worker's end of its pipe: tasks and acks come in on it, crops and results go out.

    At most CHUNKS_IN_FLIGHT chunks of crops are sent and not yet scored: a fast decoder then
    waits for inference instead of filling memory. Tasks that arrive meanwhile (PREFETCH) are
    kept for later.
    """

    def __init__(self, conn: Connection, state: Any):
        self.conn, self.state = conn, state
        self.tasks: deque = deque()
        self.unacked = 0

    def next_task(self) -> tuple | None:
        while not self.tasks:
            self._take(self.conn.recv())
        return self.tasks.popleft()

    def send_crops(self, task_id: int, first: int, crops: np.ndarray) -> None:
        while self.unacked >= CHUNKS_IN_FLIGHT:
            if self.conn.poll(1.0):
                self._take(self.conn.recv())
            self.state[1] = time.time()  # waiting on inference is not this file stalling (--timeout)
        self.conn.send(("crops", task_id, first, crops))
        self.unacked += 1

    def _take(self, msg: Any) -> None:
        if msg == _ACK:
            self.unacked -= 1
        else:
            self.tasks.append(msg)


def _heartbeat(state: Any, delay: float = 0.0) -> Callable[[], None]:
    """Marks progress on the current file in state[1]; the main process's --timeout counts from the last mark.

    `delay` is the test hook's slow file: each mark comes that much later.
    """
    def beat() -> None:
        if delay:
            time.sleep(delay)
        state[1] = time.time()

    return beat


def _fault_plan() -> dict[str, str]:
    plan: dict[str, str] = {}
    for part in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        action, _, name = part.partition(":")
        plan[name] = action
    return plan


def _apply_fault(plan: dict[str, str], path: str) -> None:
    action = plan.get(Path(path).name)  # "slow" is applied per sampled frame (see _heartbeat)
    if action == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif action == "hang":
        while True:
            time.sleep(3600)


def _as_crop(image: np.ndarray, size: int) -> np.ndarray:
    """An already-aligned face crop: centre square, resized to the model input (no detection)."""
    import cv2

    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    square = image[y0:y0 + side, x0:x0 + side]
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        square = cv2.resize(square, (size, size), interpolation=interp)
    return np.ascontiguousarray(square, dtype=np.uint8)


def _media_dict(info: Any, frames_sampled: int, decode_errors: int = 0) -> dict:
    d = asdict(info) if is_dataclass(info) else dict(info)

    def num(v: Any) -> float | None:
        return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else round(float(v), 4)

    return {
        "width": int(d.get("width") or 0),
        "height": int(d.get("height") or 0),
        "fps": num(d.get("fps")),
        "duration": num(d.get("duration")),
        "frames_sampled": int(frames_sampled),
        "codec": d.get("codec"),
        "rotation": int(d.get("rotation") or 0),
        "stream_index": d.get("stream_index"),
        "decode_errors": int(decode_errors),
    }


def _box(box: Any) -> list[float]:
    return [round(float(v), 1) for v in box]


def process_file(path: str, kind: str, detector: Any, cfg: _WorkerConfig, sink: _CropSink,
                 beat: Callable[[], None] | None = None) -> dict:
    """Decode, detect, track and crop one file; crops go to `sink` as they are made, metadata is returned.

    Each subject frame names its crop by `crop`, the crop's sequence number in this file (see
    _CropSink); `crops` is how many the sink took. The crops of detections that tracking drops
    at the end are delivered too: which tracks survive is known only then, and holding every
    crop until then is what made a long file's memory grow with its length. `beat` marks
    progress at each sampled frame (the --timeout counts from the last mark).

    Raises MediaError (or InputError) for files that cannot be read, `damaged` (with `.media`)
    for one too damaged to trust a verdict from. Crops are made as each frame is decoded, so at
    most one full frame is alive at a time.
    """
    from scanner.media import MediaError, SampleStats, iter_frames, probe

    timings = {"decode": 0.0, "detect": 0.0, "crop": 0.0}
    t = time.perf_counter()
    info = probe(path)
    stats = SampleStats()
    frames_iter = iter_frames(path, frames=cfg.frames, fps=cfg.fps, keyframes=cfg.keyframes, stats=stats)
    timings["decode"] += time.perf_counter() - t

    per_frame: list[list[Any]] = []
    reach: list[float] = []  # per frame: the smallest face searched for (tiled frames: 0)
    frame_meta: list[tuple[int, float]] = []
    crops_of: dict[int, int] = {}  # id(detection) → its crop's sequence number
    crop_only: list[tuple[int, float, list[float], int]] = []
    while True:
        t = time.perf_counter()
        frame = next(frames_iter, None)
        timings["decode"] += time.perf_counter() - t
        if frame is None:
            break
        if beat is not None:
            beat()
        image = frame.image
        if cfg.crops:
            t = time.perf_counter()
            crop_only.append((int(frame.index), float(frame.t), [0.0, 0.0, float(image.shape[1]), float(image.shape[0])], sink.add(_as_crop(image, cfg.size))))
            timings["crop"] += time.perf_counter() - t
            sink.send_full()
            continue
        t = time.perf_counter()
        dets, searched = detector.detect_sampled(image, len(per_frame), cfg.tile_every)
        reach.append(searched)
        timings["detect"] += time.perf_counter() - t
        t = time.perf_counter()
        from scanner.crop import crop_face

        for det in dets:
            crops_of[id(det)] = sink.add(crop_face(image, det.keypoints, det.box, size=cfg.size))
        timings["crop"] += time.perf_counter() - t
        sink.send_full()  # outside the crop timing: this may wait for the main process or score
        per_frame.append(dets)
        frame_meta.append((int(frame.index), float(frame.t)))
        del image, frame

    n_sampled = len(crop_only) if cfg.crops else len(frame_meta)
    media = _media_dict(info, n_sampled, stats.decode_errors)
    if stats.damaged:  # a verdict (or no_face) from what is left would be a silent evasion
        raise MediaError("damaged", stats.damage_message(), path, media=media)
    subjects: list[dict] = []
    if cfg.crops:
        if crop_only:
            subjects.append({"id": 0, "frames": [{"index": i, "t": round(tt, 4), "box": _box(b), "face_score": None, "crop": c}
                                                 for i, tt, b, c in crop_only]})
    elif kind == "image" and len(per_frame) <= 1:  # a still (an animation is tracked like a video)
        for sid, det in enumerate(per_frame[0] if per_frame else []):
            index, tt = frame_meta[0]
            subjects.append({"id": sid, "frames": [{"index": index, "t": round(tt, 4), "box": _box(det.box),
                                                    "face_score": round(float(det.score), 4), "crop": crops_of[id(det)]}]})
    else:
        from scanner.track import track_faces

        for tr in track_faces(per_frame, reach=reach):
            frames = []
            for pos, det in tr.observations:
                index, tt = frame_meta[pos]
                frames.append({"index": index, "t": round(tt, 4), "box": _box(det.box), "face_score": round(float(det.score), 4),
                               "crop": crops_of[id(det)]})
            if frames:
                subjects.append({"id": int(tr.id), "frames": frames})
    sink.finish()
    return {"kind": kind, "media": media, "subjects": subjects, "crops": sink.count, "timings": timings}


def _error_payload(exc: BaseException) -> dict:
    code = getattr(exc, "code", None)
    if not code:
        code = "bad_input" if isinstance(exc, InputError) else ("too_large" if isinstance(exc, MemoryError) else "internal_error")
    message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    payload: dict = {"error": {"code": str(code), "message": rp.one_line(message or code)}}
    if getattr(exc, "media", None) is not None:  # what was read of a damaged file
        payload["media"] = exc.media
    return payload


@contextlib.contextmanager
def _native_stderr_silenced():
    """MediaPipe's C++ start-up/shut-down chatter (LiteRT, XNNPACK) goes to fd 2; hide it unless DFSCAN_DEBUG."""
    if os.environ.get("DFSCAN_DEBUG"):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _worker_main(conn: Connection, state: Any, cfg: _WorkerConfig) -> None:
    """A worker: one detector for its life; files in, crops (in chunks, as made) and metadata out, over its own pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides what Ctrl-C means
    from scanner.console import quiet_env

    quiet_env()
    try:
        import cv2

        cv2.setNumThreads(1)  # one core per worker: the pool is the parallelism
    except Exception:
        pass
    plan = _fault_plan()
    detector = scorer = None
    try:
        if not cfg.crops:
            from scanner.faces import FaceDetector

            with _native_stderr_silenced():
                detector = FaceDetector(model=cfg.face_model, min_score=cfg.min_face_score)
        if cfg.scorer is not None:
            scorer = _make_scorer(cfg.scorer)
        conn.send(("ready", os.getpid()))
        link = _Link(conn, state)
        while True:
            task = link.next_task()
            if task is None:
                break
            task_id, path, kind = task
            state[0], state[1] = float(task_id), time.time()
            if plan:
                _apply_fault(plan, path)
            beat = _heartbeat(state, SLOW_FRAME_S if plan.get(Path(path).name) == "slow" else 0.0)
            in_worker = _ScoreInWorker(scorer, beat) if scorer is not None else None
            deliver = in_worker if in_worker is not None else functools.partial(link.send_crops, task_id)
            try:
                payload = process_file(path, kind, detector, cfg, _CropSink(cfg.chunk, deliver), beat)
                if in_worker is not None:
                    in_worker.into(payload)
            except Exception as exc:  # every failure of one file becomes that file's error item
                payload = _error_payload(exc)
            state[0], state[1] = -1.0, 0.0
            conn.send(("result", task_id, payload))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    except Exception as exc:  # the detector could not start: tell the main process why
        try:
            conn.send(("fatal", rp.one_line(f"{type(exc).__name__}: {exc}")))
        except Exception:
            pass
    finally:
        if scorer is not None:
            scorer.close()
        if detector is not None:
            with _native_stderr_silenced():
                detector.close()


# ====================================================================== main side

@dataclass
class _Task:
    id: int
    path: str
    kind: str
    fingerprint: dict | None = None  # size and mtime when handed to a worker, before it opens the file


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    state: Any
    assigned: deque = field(default_factory=deque)
    completed: int = 0


class _Pool:
    """Worker processes with their own pipes; replaces any that crash or hang."""

    def __init__(self, n: int, cfg: _WorkerConfig):
        self.ctx = mp.get_context("spawn")
        self.cfg = cfg
        self.workers: list[_Worker] = []
        self.startup_failures = 0
        for _ in range(n):
            self.workers.append(self._start())

    def _start(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        state = self.ctx.RawArray("d", [-1.0, 0.0])  # current task id, its start time (time.time())
        proc = self.ctx.Process(target=_worker_main, args=(child, state, self.cfg), daemon=True, name="dfscan-worker")
        proc.start()
        child.close()
        return _Worker(proc, parent, state)

    def replace(self, w: _Worker) -> None:
        if w.completed == 0 and w.state[0] < 0:
            self.startup_failures += 1
            if self.startup_failures >= MAX_STARTUP_FAILURES:
                raise ScanError(f"scan worker processes keep dying at start-up ({_signal_name(w.proc.exitcode)}); "
                                "run `dfscan doctor`, or DFSCAN_DEBUG=1 to see their output")
        self._stop(w, kill=True)
        self.workers[self.workers.index(w)] = self._start()

    @staticmethod
    def _stop(w: _Worker, kill: bool = False) -> None:
        if kill and w.proc.is_alive():
            w.proc.kill()
        w.proc.join(timeout=5)
        try:
            w.conn.close()
        except OSError:
            pass

    def close(self, graceful: bool = True) -> None:
        for w in self.workers:
            if graceful and w.proc.is_alive():
                try:
                    w.conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
        deadline = time.time() + (5.0 if graceful else 0.0)
        for w in self.workers:
            w.proc.join(timeout=max(0.0, deadline - time.time()))
            if w.proc.is_alive():
                w.proc.kill()
            self._stop(w)
        self.workers = []


@dataclass
class _Pending:
    """A file whose crops stream in: their scores so far (by sequence number) until its result and last score are in."""

    index: int
    scores: dict[int, float] = field(default_factory=dict)
    received: int = 0  # crops received
    waiting: int = 0  # crops received and not yet scored
    item: dict | None = None  # set when the worker's result arrives
    subjects: list[dict] = field(default_factory=list)


@dataclass
class _Chunk:
    """Crops of one file on their way to inference; their worker is acked once all are scored."""

    task: int
    first: int  # sequence number of crops[0] in its file
    crops: np.ndarray
    worker: _Worker
    left: int = -1  # crops not yet scored

    def __post_init__(self) -> None:
        self.left = len(self.crops)


def _ack(w: _Worker) -> None:
    """Tell a worker one of its chunks is scored (it may send another); a gone worker is ignored."""
    try:
        w.conn.send(_ACK)
    except (OSError, ValueError):
        pass


def _signal_name(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _prepare_note(options: ScanOptions, model: dict) -> str:
    """What the first seconds of a scan are spent on, so the bar does not sit at 0/? unexplained."""
    from engines.export import cached_onnx_path

    onnx = cached_onnx_path(model["sha256"])
    if options.backend in ("auto", "onnxruntime") and not onnx.is_file():
        return f"preparing the model (one-time ONNX export, cached in {onnx.parent.parent})"
    return "loading the model"


def model_info(weights: Path) -> tuple[dict, dict]:
    """The report's `model` block and the model config, from the checkpoint's metadata (no weights loaded)."""
    import json

    from train.checkpoint import file_sha256, read_metadata

    meta = read_metadata(weights)
    try:
        config = json.loads(meta.get("config", "{}"))
        threshold = float(meta["threshold"])
    except (ValueError, KeyError) as exc:
        raise InputError(f"{weights}: bad checkpoint metadata ({exc})") from None
    model = {"name": Path(weights).name, "sha256": file_sha256(weights),
             "backbone": str(config.get("backbone", "unknown")), "threshold": threshold}
    if meta.get("caveat"):  # the model card's one-line warning (starter / research-only models)
        model["caveat"] = meta["caveat"]
    return model, config


def _cores() -> int:
    """CPU cores this process may use (affinity-aware: containers and taskset are honoured)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@dataclass
class ResourcePlan:
    """How a scan uses the machine: worker processes, inference threads, and where inference runs."""

    workers: int
    threads: int | None  # inference threads of a CPU backend (per worker when in_workers); None on a GPU
    in_workers: bool  # True: each worker scores its own crops; False: the main process batches across files


def resource_plan(options: ScanOptions, files: int, device: str) -> ResourcePlan:
    """Where the cores go for a scan of `files` files on a backend running on `device`.

    On a GPU the workers get every core and the main process batches crops across files for
    it. On the CPU, scoring a default clip (32 crops, two EfficientNet-Lite0 passes each) costs
    about as much as decoding and detecting it, and the same cores do both: one main-process
    inference thread then becomes the critical path while the workers wait on it, so by
    default each worker scores its own crops with a one-thread session and every core does
    every stage (bench/scan.py on 2 cores: 2.x the decode-only time against 3.4x with one
    worker plus one inference thread). `infer_in_workers=False` restores main-process
    inference on the CPU (workers get half the cores, inference the rest).
    """
    cores = _cores()
    files = max(1, files)
    if device != "cpu":
        return ResourcePlan(max(1, min(options.workers or cores, files)), None, False)
    in_workers = True if options.infer_in_workers is None else bool(options.infer_in_workers)
    if in_workers:
        return ResourcePlan(max(1, min(options.workers or cores, files)), options.threads or 1, True)
    workers = max(1, min(options.workers or max(1, cores // 2), files))
    return ResourcePlan(workers, options.threads or max(1, cores - workers), False)


def _fit_cpu_threads(backend: Any, weights: Path, threads: int, batch_size: int | None) -> Any:
    """Give a CPU backend only the cores the workers leave free.

    The workers keep every core busy decoding and detecting; an inference pool sized for the
    whole machine on top of them oversubscribes it, and ONNX Runtime's spinning threads then
    slow everything down (bench/scan.py measures it).
    """
    if getattr(backend, "device", "") != "cpu":
        return backend
    if backend.name == "onnxruntime" and getattr(backend, "threads", threads) != threads:
        from engines.onnxruntime import OnnxRuntimeBackend

        onnx_path = backend.onnx_path
        backend.close()
        return OnnxRuntimeBackend(weights, batch_size=batch_size, threads=threads, onnx_path=onnx_path)
    if backend.name == "torch":
        import torch

        torch.set_num_threads(threads)
    return backend


def _kind_of(path: Path, crops: bool) -> str:
    from scanner.media import IMAGE_EXTS

    if path.suffix.lower() in IMAGE_EXTS:
        return "crop" if crops else "image"
    return "video"


class _CtrlC:
    """SIGINT during a scan: the first Ctrl-C stops it (KeyboardInterrupt; the finished items are
    kept), later ones only say to wait, so that a second press cannot lose the report being
    written. After `hold()` (the report is being written) every press only says to wait."""

    def __init__(self) -> None:
        self.pressed = self.holding = False
        self.previous: Any = None
        self.installed = False

    def __enter__(self) -> "_CtrlC":
        if threading.current_thread() is threading.main_thread():  # only there can a handler be set
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
            self.installed = True
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.pressed or self.holding:
            os.write(2, b"\nfinishing: writing the report of the finished files, please wait (Ctrl-\\ quits without it)\n")
            return
        self.pressed = True
        raise KeyboardInterrupt

    def hold(self) -> None:
        self.holding = True

    def __exit__(self, *exc: Any) -> None:
        if self.installed:  # None: the previous handler was not set from Python
            signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.SIG_DFL)


def scan(paths: list[str | Path], options: ScanOptions | None = None, progress: ProgressFn | None = None) -> dict:
    """Scan files and folders; return a `dfscan.report/1` dict (the caller writes it; see scan_to_report).

    Items stream to `<report>.stream.jsonl` as they finish when `options.report` is set, under
    the report's lock (a second scan of the same report is refused). On Ctrl-C the finished
    items are returned with `summary.interrupted` true.
    """
    return _scan(paths, options or ScanOptions(), progress, write_as=None)


def scan_to_report(paths: list[str | Path], options: ScanOptions, fmt: str | None = None,
                   progress: ProgressFn | None = None) -> dict:
    """Scan and write the final report to `options.report` (json | jsonl | csv), and return it.

    The write happens before the report's lock is released (no other scan can slip in between
    the stream's last item and the report) and a second Ctrl-C cannot cut it short. A write
    that fails is an OutputError naming the stream, which --resume finishes from.
    """
    if options.report is None:
        raise InputError("scan_to_report needs options.report")
    return _scan(paths, options, progress, write_as=rp.format_for(options.report, fmt))


def _scan(paths: list[str | Path], options: ScanOptions, progress: ProgressFn | None, write_as: str | None,
          scan_files: Callable[..., dict] | None = None, collect: Callable[[list], tuple[list, list]] | None = None) -> dict:
    """Check the output, collect the inputs, then scan them with the report locked (and write it when `write_as`).

    `scan_files` and `collect` replace _scan_files and media.collect_inputs for another way of
    running the same stages (scanner.ray_scan): the lock, Ctrl-C and the write stay here.
    """
    from scanner.media import collect_inputs

    options.check()
    if options.report is not None:
        rp.check_output_path(options.report)  # a bad --report fails now, not after the scan
    started = time.time()
    created = rp.now_iso()

    files, skipped = collect(list(paths)) if collect is not None else collect_inputs([Path(p) for p in paths])
    skipped_list = [{"path": str(p), "reason": str(r)} for p, r in skipped]
    if not files:
        raise InputError("no video or image files to scan" + (f" ({len(skipped)} other files skipped)" if skipped else ""))
    lock = rp.ReportLock(options.report) if options.report is not None else contextlib.nullcontext()
    with lock, _CtrlC() as ctrl_c:
        result = (scan_files or _scan_files)(files, skipped, skipped_list, options, progress, started, created)
        if write_as is not None:
            ctrl_c.hold()
            try:
                rp.write_report(result, options.report, write_as)
            except rp.OutputError as exc:
                stream = rp.stream_path_for(options.report)
                if options.stream and stream.is_file():
                    raise rp.OutputError(f"{exc}; the finished items are kept in {stream}: make room and rerun with --resume") from None
                raise
    return result


def resolve_model(options: ScanOptions) -> tuple[Path, dict, dict, float, dict]:
    """Weights, the report's model block, the model config, the threshold and the report's settings.

    Every way of scanning (local, Ray) takes them from here: --resume compares model and settings.
    """
    if options.weights is None:
        from scanner.assets import default_weights

        weights = default_weights()
    else:
        weights = Path(options.weights)
    model, config = model_info(weights)
    threshold = float(options.threshold) if options.threshold is not None else model["threshold"]
    model["threshold"] = threshold
    settings = {"frames": options.frames, "fps": options.fps, "keyframes": options.keyframes, "crops": options.crops,
                "face_model": options.face_model, "tile_every": options.tile_every, "strategy": options.strategy,
                "threshold": threshold}
    return weights, model, config, threshold, settings


def _scan_files(files: list[Path], skipped: list, skipped_list: list[dict], options: ScanOptions,
                progress: ProgressFn | None, started: float, created: str) -> dict:
    """The scan proper: model, backend, workers, stream, summary."""
    weights, model, config, threshold, settings = resolve_model(options)
    size = int(config.get("input_size", 256))

    stream_path = rp.stream_path_for(options.report) if options.report is not None and options.stream else None
    prior: dict[str, dict] = {}
    if options.resume:
        sources = [options.report] + ([stream_path] if stream_path else [])
        prior = rp.resumable_items(sources, model_sha256=model["sha256"], settings=settings)

    from engines.select import select_backend

    t_prepare = time.time()
    if progress is not None:
        progress(ScanProgress(total=len(files), done=0, faces=0, elapsed=0.0, note=_prepare_note(options, model)))
    backend, _ = select_backend(weights, options.backend, options.engine)
    t_prepare = time.time() - t_prepare
    plan = resource_plan(options, sum(os.path.abspath(f) not in prior for f in files), backend.device)
    scorer = None
    if plan.in_workers:
        scorer = {"name": backend.name, "weights": str(weights), "onnx_path": str(getattr(backend, "onnx_path", "")) or None,
                  "threads": plan.threads, "batch_size": options.batch_size or WORKER_BATCH, "config": dict(config)}
    elif plan.threads is not None:
        backend = _fit_cpu_threads(backend, weights, plan.threads, options.batch_size)
    batch_size = int(options.batch_size or getattr(backend, "batch_size", 32) or 32)
    header = rp.make_header(model=model, backend={"name": backend.name, "device": backend.device, "precision": backend.precision},
                            settings=settings, created=created, skipped=skipped_list)
    if plan.in_workers:
        backend.close()  # the workers score with their own sessions: free this one's memory now

    results: list[dict | None] = [None] * len(files)
    todo: deque[_Task] = deque()
    for i, f in enumerate(files):
        kept = prior.get(os.path.abspath(f))
        if kept is not None:
            results[i] = kept
        else:
            todo.append(_Task(i, str(f), _kind_of(Path(f), options.crops)))
    resumed = len(files) - len(todo)
    stream = rp.ReportStream(stream_path, header, append=options.resume) if stream_path else None

    stats = {"faces": 0, "done": resumed, "prepare": t_prepare, "decode": 0.0, "detect": 0.0, "crop": 0.0, "infer": 0.0}

    def report_progress(item: dict | None) -> None:
        if progress is not None:
            progress(ScanProgress(total=len(files), done=stats["done"], faces=int(stats["faces"]),
                                  elapsed=time.time() - started, item=item, resumed=resumed))

    def finish(index: int, item: dict) -> None:
        results[index] = item
        stats["done"] += 1
        if stream is not None:
            stream.write_item(item)
        report_progress(item)

    interrupted = False
    pool: _Pool | None = None
    try:
        report_progress(None)
        if todo:
            cfg = _WorkerConfig(options.frames, options.fps, options.keyframes, options.crops,
                                options.face_model, options.min_face_score, size, scorer, tile_every=options.tile_every,
                                chunk=scorer["batch_size"] if scorer else batch_size)
            pool = _Pool(plan.workers, cfg)
            _run(pool, todo, backend, batch_size, options, threshold, stats, finish)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if pool is not None:
            pool.close(graceful=not interrupted)
        if stream is not None:
            stream.close()
        try:
            backend.close()
        except Exception:
            pass

    items = [r for r in results if r is not None]
    summary = rp.summarize(items, seconds=time.time() - started, faces=int(stats["faces"]),
                           files_scanned=stats["done"] - resumed, resumed=resumed, skipped=len(skipped),
                           interrupted=interrupted,
                           stages={k: stats[k] for k in ("prepare", "decode", "detect", "crop", "infer")})
    summary["workers"], summary["infer_threads"] = plan.workers, plan.threads
    summary["infer_in_workers"] = plan.in_workers
    return rp.build_report(header, items, summary)


class _Inferer:
    """Runs the backend in a thread of its own, so the main loop keeps reading the workers' pipes.

    Without it the main process stops taking results while a batch runs; finished workers then
    block on their pipes and the cores sit idle (bench/scan.py measured 3.7x decode-only time
    that way against 2.x with the thread). ONNX Runtime and torch release the GIL while they compute.
    """

    def __init__(self, backend: Any, stats: dict):
        import queue
        import threading

        self.backend, self.stats = backend, stats
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.in_flight = 0  # batches submitted and not yet collected
        self.thread = threading.Thread(target=self._loop, name="dfscan-infer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.inbox.get()
            if job is None:
                return
            batch, owners = job
            try:
                t = time.perf_counter()
                scores = np.asarray(self.backend.predict(batch), dtype=np.float32).reshape(-1)
                self.stats["infer"] += time.perf_counter() - t
                if len(scores) != len(batch):
                    raise RuntimeError(f"the backend returned {len(scores)} scores for {len(batch)} crops")
                self.outbox.put((owners, scores, None))
            except BaseException as exc:  # handed to the main thread, which raises it
                self.outbox.put((owners, None, exc))

    def submit(self, batch: np.ndarray, owners: list) -> None:
        self.in_flight += 1
        self.inbox.put((batch, owners))

    def results(self, block: bool = False):
        """Finished batches: (owners, scores); re-raises an exception of the backend here."""
        import queue

        while self.in_flight:
            try:
                owners, scores, exc = self.outbox.get(block=block)
            except queue.Empty:
                return
            self.in_flight -= 1
            if exc is not None:
                raise exc
            yield owners, scores

    def close(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=60)


def _run(pool: _Pool, todo: deque, backend: Any, batch_size: int, options: ScanOptions, threshold: float,
         stats: dict, finish: Callable[[int, dict], None]) -> None:
    """The main loop: hand out files, collect results, supervise workers, feed the inference thread."""
    inferer = _Inferer(backend, stats)
    try:
        _loop(pool, todo, inferer, batch_size, options, threshold, stats, finish)
    finally:
        inferer.close()


def _loop(pool: _Pool, todo: deque, inferer: _Inferer, batch_size: int, options: ScanOptions, threshold: float,
          stats: dict, finish: Callable[[int, dict], None]) -> None:
    tasks: dict[int, _Task] = {}
    pending: dict[int, _Pending] = {}
    chunks: deque[tuple[_Chunk, int]] = deque()  # (chunk, offset of its first crop not yet submitted)
    queued = 0  # crops in `chunks`
    buffered = 0  # crops received and not yet scored (queued + in the inference thread)
    max_buffered = max(4 * batch_size, 128)
    timeout = options.timeout or None

    def fail_task(task: _Task, code: str, message: str) -> None:
        fp = rp.file_fingerprint(task.path)
        finish(task.id, rp.error_item(task.path, task.kind, code, message, fingerprint=fp))

    def complete(index: int, item: dict, subjects: list[dict], score_of: Any) -> None:
        """Scores into the subjects' frames (`score_of[crop sequence number]`), aggregate, finish."""
        item, faces = scored_item(item, subjects, score_of, threshold, options.strategy)
        stats["faces"] += faces
        finish(index, item)

    def on_crops(w: _Worker, task_id: int, first: int, crops: np.ndarray) -> None:
        nonlocal buffered, queued
        p = pending.setdefault(task_id, _Pending(task_id))
        if first != p.received:
            raise RuntimeError(f"a worker sent crops {first}.. after {p.received} of them")
        p.received += len(crops)
        p.waiting += len(crops)
        chunks.append((_Chunk(task_id, first, crops, w), 0))
        queued += len(crops)
        buffered += len(crops)

    def on_result(task: _Task, payload: dict) -> None:
        fp = rp.file_fingerprint(task.path)
        p = pending.pop(task.id, None) or _Pending(task.id)  # its chunks still queued are scored and ignored
        item = file_item(task.path, task.kind, payload, fp, task.fingerprint)
        if item["status"] == "error":  # changed during the scan, or could not be read
            finish(task.id, item)
            return
        for k, v in payload["timings"].items():
            stats[k] += v
        if not payload["subjects"]:  # no face, or only ones tracking dropped
            finish(task.id, _ordered(item))
        elif "scores" in payload:  # scored in the worker (CPU backends)
            complete(task.id, item, payload["subjects"], np.clip(payload["scores"], 0.0, 1.0))
        elif p.received != payload["crops"]:
            raise RuntimeError(f"a worker made {payload['crops']} crops but sent {p.received}")
        else:
            p.item, p.subjects = item, payload["subjects"]
            if p.waiting == 0:
                complete(task.id, item, p.subjects, p.scores)
            else:
                pending[task.id] = p

    def submit_batch() -> None:
        """Up to batch_size crops from the front of the line, across files, to the inference thread."""
        nonlocal queued
        parts, owners, need = [], [], batch_size
        while chunks and need > 0:
            chunk, at = chunks.popleft()
            n = min(need, len(chunk.crops) - at)
            if at + n < len(chunk.crops):
                chunks.appendleft((chunk, at + n))
            parts.append(chunk.crops[at:at + n])
            owners.append((chunk, at, n))
            need -= n
        batch = np.ascontiguousarray(np.concatenate(parts)) if len(parts) > 1 else np.ascontiguousarray(parts[0])
        queued -= len(batch)
        inferer.submit(batch, owners)

    def collect(block: bool = False) -> None:
        nonlocal buffered
        for owners, scores in inferer.results(block=block):
            buffered -= len(scores)
            done = 0
            for chunk, at, n in owners:
                part = np.clip(scores[done:done + n], 0.0, 1.0).tolist()
                done += n
                chunk.left -= n
                if chunk.left == 0:
                    _ack(chunk.worker)
                p = pending.get(chunk.task)
                if p is None:  # its file ended in an error meanwhile
                    continue
                p.scores.update(zip(range(chunk.first + at, chunk.first + at + n), part))
                p.waiting -= n
                if p.item is not None and p.waiting == 0:
                    del pending[chunk.task]
                    complete(p.index, p.item, p.subjects, p.scores)

    def assign() -> None:
        for w in sorted(pool.workers, key=lambda w: len(w.assigned)):
            while todo and len(w.assigned) < PREFETCH and w.proc.is_alive():
                task = todo.popleft()
                task.fingerprint = rp.file_fingerprint(task.path)  # before the worker opens it
                try:
                    w.conn.send((task.id, task.path, task.kind))
                except (OSError, BrokenPipeError):
                    todo.appendleft(task)
                    break
                tasks[task.id] = task
                w.assigned.append(task)

    def drain(w: _Worker) -> None:
        """Take every message the worker sent; EOF means it is gone."""
        try:
            while w.conn.poll():
                handle(w, w.conn.recv())
        except (EOFError, OSError):
            pass

    def handle(w: _Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "crops":
            assert w.assigned and w.assigned[0].id == msg[1], "worker sent crops of a file it does not hold"
            on_crops(w, msg[1], msg[2], msg[3])
        elif kind == "result":
            task = w.assigned.popleft()
            assert task.id == msg[1], "worker answered out of order"
            w.completed += 1
            on_result(task, msg[2])
        elif kind == "fatal":
            raise ScanError(f"a scan worker could not start: {msg[1]}")

    def lost(w: _Worker, code: str, message: str) -> None:
        current = int(w.state[0])
        rest = [t for t in w.assigned if t.id != current]
        for t in w.assigned:
            if t.id == current:
                pending.pop(t.id, None)  # its chunks still queued are scored and ignored
                fail_task(t, code, message)
        w.assigned.clear()
        todo.extendleft(reversed(rest))  # the files it had not started go to the front of the line
        pool.replace(w)

    while True:
        collect()
        assign()
        working = any(w.assigned for w in pool.workers)
        if not working and not todo:
            while chunks:
                submit_batch()
            while inferer.in_flight:
                collect(block=True)
            break
        if buffered < max_buffered:
            conns = {w.conn: w for w in pool.workers}
            sentinels = {w.proc.sentinel: w for w in pool.workers}
            # a short wait while a batch runs, so its results are picked up soon after
            ready = wait(list(conns) + list(sentinels), timeout=0.01 if inferer.in_flight else 0.05)
            for obj in ready:
                if obj in conns:
                    w = conns[obj]
                    try:
                        handle(w, w.conn.recv())
                    except (EOFError, OSError):
                        pass  # its sentinel tells the rest
        else:
            collect(block=True)  # too many crops waiting: let inference catch up before reading more
        for w in list(pool.workers):
            if not w.proc.is_alive():
                drain(w)
                w.proc.join(timeout=1)
                lost(w, "worker_crashed", f"the decoder crashed on this file ({_signal_name(w.proc.exitcode)})")
            elif timeout and w.state[1] > 0 and time.time() - w.state[1] > timeout:
                w.proc.kill()
                w.proc.join(timeout=5)
                drain(w)
                lost(w, "timeout", f"gave up after {timeout:g} s (--timeout)")
        # keep the inference thread fed: full batches, or whatever is there when it would idle
        while queued >= batch_size and inferer.in_flight < 2:
            submit_batch()
        if chunks and inferer.in_flight == 0:
            submit_batch()


ITEM_ORDER = ("path", "kind", "status", "error", "score", "verdict", "media", "file", "subjects")


def _ordered(item: dict) -> dict:
    """Keys in the schema's order, so reports read the same every time."""
    return {k: item[k] for k in ITEM_ORDER if k in item} | {k: v for k, v in item.items() if k not in ITEM_ORDER}


def file_item(path: str, kind: str, payload: dict, fingerprint: dict | None, fingerprint_before: dict | None) -> dict:
    """A file's item from its stage payload, before any score: the local and the Ray scan both build items here.

    `changed_during_scan` when the file's fingerprint moved while it was scanned (the payload may be
    of the old content: never store it under the new fingerprint), the payload's error item, or a
    `no_face` item with media and fingerprint that scored_item turns `ok` when it has subjects.
    """
    if fingerprint != fingerprint_before:
        return rp.error_item(path, kind, "changed_during_scan", "the file changed while it was scanned (size or "
                             "modification time); scan it again (--resume does)", fingerprint=fingerprint)
    if "error" in payload:
        return rp.error_item(path, kind, payload["error"]["code"], payload["error"]["message"],
                             media=payload.get("media"), fingerprint=fingerprint)
    item = {"path": path, "kind": payload["kind"], "status": "no_face", "error": None, "score": None,
            "verdict": None, "media": payload["media"], "subjects": []}
    if fingerprint:
        item["file"] = fingerprint
    return item


def scored_item(item: dict, subjects: list[dict], score_of: Any, threshold: float, strategy: str) -> tuple[dict, int]:
    """The `ok` item: scores into the subjects' frames (`score_of[crop sequence number]`), aggregated; and its face count."""
    faces = 0
    for s in subjects:
        for fr in s["frames"]:
            fr["score"] = round(float(score_of[fr.pop("crop")]), 6)
            faces += 1
    score, verdict = aggregate_item(subjects, threshold, strategy, frames_sampled=item["media"]["frames_sampled"])
    item.update(status="ok", error=None, score=score, verdict=verdict,
                subjects=[{"id": s["id"], "score": s["score"], "verdict": s["verdict"], "frames": s["frames"]} for s in subjects])
    return _ordered(item), faces
