"""The per-file stage: decode → detect → track → crop one file, its crops streamed out as they are made.

Why one module: every way of running the stages (the local worker pool, the Ray actors) calls
process_file here, so the crops a scan scores are made by one piece of code. It knows nothing
of processes or pipes: crops leave through a CropSink's `deliver` callable and progress through
a `beat` callable, so the stage runs the same in a worker, an actor thread or a test.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, is_dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypedDict

import numpy as np

from dfscan.core.errors import InputError
from dfscan.scanner import report as rp

if TYPE_CHECKING:
    from dfscan.scanner.options import ScanOptions


@dataclass
class StageConfig:
    """What shapes the crops of a file (the scan options the stage needs, and the model's input size)."""

    frames: int
    fps: float | None
    keyframes: bool
    crops: bool  # inputs are already-cropped faces: no detection
    face_model: str
    min_face_score: float
    size: int
    chunk: int = 32  # crops per chunk handed to the sink's `deliver`
    tile_every: int = 0  # ScanOptions.tile_every
    detect_every: int = 1  # ScanOptions.detect_every (dfscan.scanner.interpolate)
    keypoints: bool = False  # subject frames also carry `kp`, the keypoints in crop pixels (extract-faces' manifest)

    @classmethod
    def of(cls, options: "ScanOptions", size: int, chunk: int = 32, keypoints: bool = False) -> "StageConfig":
        """The stage a scan with these options runs, at model input `size`: extract-faces and doctor take it from here."""
        return cls(options.frames, options.fps, options.keyframes, options.crops, options.face_model,
                   options.min_face_score, size, chunk=chunk, tile_every=options.tile_every,
                   detect_every=options.detect_every, keypoints=keypoints)


class FilePayload(TypedDict, total=False):
    """What the stage returns for a file: metadata and subjects on success, `error` (and what was read) on failure.

    Subject frames name their crops by `crop`, the crop's sequence number in the file; `scores`
    (by sequence number) is there when the worker scored the crops itself.
    """

    kind: str
    media: dict
    subjects: list[dict]
    crops: int
    timings: dict[str, float]
    scores: np.ndarray
    error: dict[str, str]


class CropSink:
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


def heartbeat(state: Any, delay: float = 0.0) -> Callable[[], None]:
    """Marks progress on the current file in state[1]; the --timeout counts from the last mark.

    `delay` is an injected slow file (dfscan.scanner.faults): each mark comes that much later.
    """
    def beat() -> None:
        if delay:
            time.sleep(delay)
        state[1] = time.time()

    return beat


def as_crop(image: np.ndarray, size: int) -> np.ndarray:
    """An already-aligned face crop as a model input, exactly as training reads crops (no detection)."""
    from dfscan.train.images import fit

    return fit(image, size)


def _media_dict(info: Any, frames_sampled: int, stats: Any = None) -> dict:
    """The item's `media`: the probe's MediaInfo and how sampling went (media.SampleStats), with warnings."""
    from dfscan.scanner.streams import media_warnings

    d = asdict(info) if is_dataclass(info) and not isinstance(info, type) else dict(info)
    repaired = int(getattr(stats, "timestamps_repaired", 0))
    duration, fps, total = d.get("duration"), d.get("fps"), d.get("frames_total")
    if repaired and fps and total:  # timestamps that went back shortened the span they give
        duration = max(duration or 0.0, total / fps)

    def num(v: Any) -> float | None:
        return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else round(float(v), 4)

    media = {
        "width": int(d.get("width") or 0),
        "height": int(d.get("height") or 0),
        "fps": num(fps),
        "duration": num(duration),
        "frames_sampled": int(frames_sampled),
        "codec": d.get("codec"),
        "rotation": int(d.get("rotation") or 0),
        "stream_index": d.get("stream_index"),
        "decode_errors": int(getattr(stats, "decode_errors", 0)),
        "video_streams": d.get("video_streams"),
    }
    if repaired:
        media["timestamps_repaired"] = repaired
    warnings = media_warnings(media)
    if warnings:
        media["warnings"] = warnings
    return media


def _box(box: Any) -> list[float]:
    return [round(float(v), 1) for v in box]


def process_file(path: str, kind: str, detector: Any, cfg: StageConfig, sink: CropSink,
                 beat: Callable[[], None] | None = None) -> FilePayload:
    """Decode, detect, track and crop one file; crops go to `sink` as they are made, metadata is returned.

    Each subject frame names its crop by `crop`, the crop's sequence number in this file (see
    CropSink), and with `cfg.keypoints` gives its keypoints in crop pixels as `kp` (None in
    crops mode); `crops` is how many the sink took. The crops of detections that tracking drops
    at the end are delivered too: which tracks survive is known only then, and holding every
    crop until then is what made a long file's memory grow with its length. `beat` marks
    progress at each sampled frame (the --timeout counts from the last mark).

    Raises MediaError (or InputError) for files that cannot be read, `damaged` (with `.media`)
    for one too damaged to trust a verdict from. Crops are made as each frame is decoded (a
    frame whose detection is skipped: at the next detection, before that frame's crops), so at
    most one full frame is alive at a time (`detect_every` with detection skipping, see
    dfscan.scanner.interpolate).
    """
    from dfscan.scanner.media import MediaError, SampleStats, iter_frames, probe

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
    held: list[tuple[int, np.ndarray]] = []  # (position, image) of skipped frames until the next detection
    last_detected = -1  # position of the last detected frame

    def add_crops(image: np.ndarray, dets: list[Any]) -> None:
        from dfscan.scanner.crop import crop_face

        t = time.perf_counter()
        for det in dets:
            crops_of[id(det)] = sink.add(crop_face(image, det.keypoints, det.box, size=cfg.size))
        timings["crop"] += time.perf_counter() - t

    def detect(pos: int, image: np.ndarray) -> None:
        """Detect on frame `pos`, then fill the held frames before it from the detections on both sides."""
        nonlocal last_detected
        t = time.perf_counter()
        dets, reach[pos] = detector.detect_sampled(image, pos, cfg.tile_every)
        timings["detect"] += time.perf_counter() - t
        if held:
            positions = [p for p, _ in held]
            for (p, img), faces in zip(held, fill(per_frame[last_detected], dets, last_detected, pos, positions)):
                per_frame[p] = faces
                # searched as far as both neighbours: a face seen on one side only is a miss here
                reach[p] = max(reach[last_detected], reach[pos])
                add_crops(img, faces)
            held.clear()
        add_crops(image, dets)
        per_frame[pos] = dets
        last_detected = pos

    from dfscan.scanner.faces import tile_size
    from dfscan.scanner.interpolate import fill, skipped

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
            crop_only.append((int(frame.index), float(frame.t), [0.0, 0.0, float(image.shape[1]), float(image.shape[0])], sink.add(as_crop(image, cfg.size))))
            timings["crop"] += time.perf_counter() - t
            sink.send_full()
            continue
        pos = len(per_frame)
        per_frame.append([])
        reach.append(float("inf"))  # set when detected (or filled)
        frame_meta.append((int(frame.index), float(frame.t)))
        tiled = cfg.tile_every if tile_size(image.shape[1], image.shape[0], cfg.face_model) else 0
        if last_detected >= 0 and skipped(pos, float(frame.t) - frame_meta[last_detected][1], cfg.detect_every, tiled):
            held.append((pos, image))
        else:
            detect(pos, image)
        sink.send_full()  # outside the crop timing: this may wait for the main process or score
        del image, frame
    if held:  # the last frames had no detection after them: the last one is detected, the rest filled
        pos, image = held.pop()
        detect(pos, image)
        sink.send_full()
        del image

    def face(det: Any) -> dict:
        """A detection's frame fields: box, score, crop number (and keypoints when asked for)."""
        fields = {"box": _box(det.box), "face_score": round(float(det.score), 4), "crop": crops_of[id(det)]}
        if det.interpolated:
            fields["interpolated"] = True
        if cfg.keypoints:
            from dfscan.scanner.crop import crop_keypoints

            fields["kp"] = crop_keypoints(det.keypoints, det.box, size=cfg.size)
        return fields

    n_sampled = len(crop_only) if cfg.crops else len(frame_meta)
    media = _media_dict(info, n_sampled, stats)
    if stats.damaged:  # a verdict (or no_face) from what is left would be a silent evasion
        raise MediaError("damaged", stats.damage_message(), path, media=media)
    subjects: list[dict] = []
    if cfg.crops:
        if crop_only:
            kp: dict = {"kp": None} if cfg.keypoints else {}
            subjects.append({"id": 0, "frames": [{"index": i, "t": round(tt, 4), "box": _box(b), "face_score": None, "crop": c, **kp}
                                                 for i, tt, b, c in crop_only]})
    elif kind == "image" and len(per_frame) <= 1:  # a still (an animation is tracked like a video)
        for sid, det in enumerate(per_frame[0] if per_frame else []):
            index, tt = frame_meta[0]
            subjects.append({"id": sid, "frames": [{"index": index, "t": round(tt, 4), **face(det)}]})
    else:
        from dfscan.scanner.track import track_faces

        for tr in track_faces(per_frame, reach=reach):
            frames = []
            for pos, det in tr.observations:
                index, tt = frame_meta[pos]
                frames.append({"index": index, "t": round(tt, 4), **face(det)})
            if frames:
                subjects.append({"id": int(tr.id), "frames": frames})
    sink.finish()
    return {"kind": kind, "media": media, "subjects": subjects, "crops": sink.count, "timings": timings}


def error_payload(exc: BaseException) -> FilePayload:
    """A file's failure as its payload: the MediaError's code (or bad_input / too_large / internal_error), one line."""
    code = getattr(exc, "code", None)
    if not code:
        code = "bad_input" if isinstance(exc, InputError) else ("too_large" if isinstance(exc, MemoryError) else "internal_error")
    message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    payload: FilePayload = {"error": {"code": str(code), "message": rp.one_line(message or code)}}
    media = getattr(exc, "media", None)
    if media is not None:  # what was read of a damaged file
        payload["media"] = media
    return payload


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
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


def setup_process() -> None:
    """A worker process or actor: quiet MediaPipe, one OpenCV thread (the pool of them is the parallelism)."""
    from dfscan.scanner.console import quiet_env

    quiet_env()
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:
        pass


def open_detector(cfg: StageConfig) -> Any:
    """The FaceDetector a worker keeps for its life (None in crops mode: nothing is detected)."""
    if cfg.crops:
        return None
    from dfscan.scanner.faces import FaceDetector

    with native_stderr_silenced():
        return FaceDetector(model=cfg.face_model, min_score=cfg.min_face_score)


def close_detector(detector: Any) -> None:
    if detector is not None:
        with native_stderr_silenced():
            detector.close()
