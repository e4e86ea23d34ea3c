"""Finding, probing and decoding media with PyAV (and PIL for stills), memory-bounded.

Every frame handed out is contiguous uint8 RGB and upright: MediaPipe reads a row-padded
PyAV array as if it were packed, and phone video stores portrait frames sideways with a
display matrix, so both are fixed here once rather than in every consumer.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from train.errors import InputError

VIDEO_EXTS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
MEDIA_EXTS = VIDEO_EXTS | IMAGE_EXTS

# Refuse absurd frames before decoding anything: one 16k x 16k RGB frame is already 768 MB.
MAX_SIDE = 16384
MAX_PIXELS = 100_000_000


class MediaError(InputError):
    """A file that cannot be read as media; `.code` is the report's error code."""

    def __init__(self, code: str, message: str, path: Path | str | None = None) -> None:
        self.code = code
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


@dataclass
class MediaInfo:
    """What a file is; width/height are the upright (displayed) size, rotation in CCW degrees."""

    width: int
    height: int
    fps: float
    duration: float
    frames_total: int
    codec: str
    rotation: int

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "duration": self.duration,
            "frames_total": self.frames_total,
            "codec": self.codec,
            "rotation": self.rotation,
        }


@dataclass
class Frame:
    """One sampled frame: `index` is its position in the stream, `t` seconds from its start."""

    index: int
    t: float
    image: np.ndarray  # (H, W, 3) uint8 RGB, C-contiguous, upright


# ---------------------------------------------------------------------------------------------
# collecting inputs


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def collect_inputs(paths: Sequence[Path | str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders (recursively) into media files to scan, plus what was skipped.

    A folder whose name looks like media (``x.mp4/``) is returned as a file so that decoding
    turns it into an ``is_directory`` error item instead of silently vanishing; it is not
    descended into. Symlinked folders are never followed: their target is either outside the
    tree or already walked through its real path, and following them can loop. Files reached
    twice (e.g. through a file symlink) are scanned once. A path that does not exist is a
    usage error (InputError).
    """
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[str] = set()

    def add_file(p: Path) -> None:
        real = os.path.realpath(p)
        if real in seen:
            skipped.append((p, "already listed (same file reached twice)"))
            return
        seen.add(real)
        files.append(p)

    for raw in paths:
        top = Path(raw)
        if not top.exists() and not top.is_symlink():
            raise InputError(f"no such file or folder: {top}")
        if top.is_dir() and top.suffix.lower() in MEDIA_EXTS:
            add_file(top)
        elif top.is_dir():
            _walk(top, add_file, skipped)
        elif not top.exists():
            skipped.append((top, "broken symlink"))
        elif top.suffix.lower() in MEDIA_EXTS:
            add_file(top)
        else:
            skipped.append((top, f"not a video or image extension ({top.suffix or 'none'})"))
    return files, skipped


def _walk(root: Path, add_file, skipped: list[tuple[Path, str]]) -> None:
    """Depth-first, sorted, never through a symlinked folder."""
    visited: set[str] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in visited:  # cannot happen without symlinks, but keeps loops impossible
            continue
        visited.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            skipped.append((folder, f"cannot list folder: {exc.strerror or exc}"))
            continue
        subdirs = []
        for entry in entries:
            p = Path(entry.path)
            suffix = p.suffix.lower()
            if entry.is_symlink() and entry.is_dir(follow_symlinks=True):
                skipped.append((p, "symlinked folder not followed"))
            elif entry.is_dir(follow_symlinks=False):
                if suffix in MEDIA_EXTS:
                    add_file(p)  # becomes an is_directory error item
                elif not entry.name.startswith("."):
                    subdirs.append(p)
            elif entry.name.startswith("."):
                continue  # hidden files (.DS_Store, ._x.mp4 resource forks) are not media
            elif entry.is_symlink() and not p.exists():
                skipped.append((p, "broken symlink"))
            elif suffix in MEDIA_EXTS:
                add_file(p)
            else:
                skipped.append((p, f"not a video or image extension ({suffix or 'none'})"))
        stack.extend(reversed(subdirs))


# ---------------------------------------------------------------------------------------------
# probing


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise MediaError("is_directory", "is a folder, not a media file", path)
    if not path.exists():
        raise MediaError("not_found", "file not found", path)
    if path.stat().st_size == 0:
        raise MediaError("empty_file", "file is empty (0 bytes)", path)


def _check_size(path: Path, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise MediaError("not_media", f"invalid frame size {width}x{height}", path)
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise MediaError(
            "too_large",
            f"frame size {width}x{height} exceeds the limit ({MAX_SIDE} px a side, "
            f"{MAX_PIXELS // 1_000_000} MP)",
            path,
        )


def _looks_like_isobmff(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(12)
    return len(head) >= 8 and head[4:8] in (b"ftyp", b"mdat", b"moov", b"wide", b"free")


def _open_container(path: Path) -> av.container.InputContainer:
    """av.open with every failure turned into a MediaError code."""
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError:
        if _looks_like_isobmff(path):
            raise MediaError("truncated", "MP4/MOV header found but the file is incomplete (no index)", path)
        raise MediaError("not_media", "not a readable video file", path) from None
    except av.FFmpegError as exc:
        raise MediaError("decode_error", f"cannot open: {exc.strerror or exc}", path) from None


def _check_index(container, path: Path) -> None:
    """A container index (MP4/MOV moov) that points past the end of the file means it was cut.

    Decoding such a file would silently sample only its start, so it is an error item.
    """
    size = path.stat().st_size
    for stream in container.streams:
        try:
            entries = stream.index_entries
            n = len(entries)
            if n == 0:
                continue
            last = entries[n - 1]
        except (AttributeError, IndexError):  # older PyAV: no index access
            return
        if last.pos is not None and last.pos >= 0 and last.pos + last.size > size:
            raise MediaError(
                "truncated",
                f"file is truncated: its index needs {last.pos + last.size} bytes, the file has {size}",
                path,
            )


def _video_stream(container, path: Path):
    _check_index(container, path)
    if not container.streams.video:
        raise MediaError("no_video_stream", "contains no video stream", path)
    stream = container.streams.video[0]
    cc = stream.codec_context
    _check_size(path, cc.width, cc.height)
    return stream


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _stream_duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _frame_count(stream) -> int:
    """Frames the decoder will output, from the container header (0 if unknown).

    MP4/MOV edit lists mark leading packets (pre-roll of B-frame reordering) as discarded: the
    header counts them but the decoder never outputs them, and sampling against the header
    count would miss the last sampled frames. The in-memory index says which they are.
    """
    total = stream.frames or 0
    try:
        entries = stream.index_entries
        if total and len(entries) == total:
            total -= sum(1 for e in entries if e.is_discard)
    except (AttributeError, TypeError):  # older PyAV: no index access
        pass
    return max(total, 0)


def _count_packets(path: Path) -> int:
    """Exact frame count for containers without one (mkv, webm): demux only, no decoding."""
    with _open_container(path) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size > 0)


def _open_image(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():  # sizes are checked below against our own limits
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except UnidentifiedImageError:
        raise MediaError("not_media", "not a readable image file", path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError("decode_error", f"cannot read image header: {exc}", path) from None
    except Image.DecompressionBombError:
        raise MediaError("too_large", "image dimensions exceed the limit", path) from None
    _check_size(path, *img.size)
    return img


_EXIF_ROTATION = {3: 180, 6: -90, 8: 90}  # EXIF orientation → CCW degrees to display


def probe(path: Path | str) -> MediaInfo:
    """Read the header (and one frame of video, which carries the display matrix)."""
    path = Path(path)
    _check_file(path)
    if is_image(path):
        with _open_image(path) as img:
            orientation = img.getexif().get(0x0112, 1)
            w, h = img.size
            if orientation in (5, 6, 7, 8):
                w, h = h, w
            return MediaInfo(w, h, 0.0, 0.0, 1, (img.format or "image").lower(),
                             _EXIF_ROTATION.get(orientation, 0))
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        cc = stream.codec_context
        rotation = 0
        try:
            for frame in container.decode(stream):
                rotation = _rotation(frame)
                break
            else:
                raise MediaError("truncated", "no decodable video frames", path)
        except av.FFmpegError as exc:
            raise MediaError("decode_error", f"cannot decode: {exc.strerror or exc}", path) from None
        w, h = cc.width, cc.height
        if rotation % 180:
            w, h = h, w
        frames_total = _frame_count(stream)
        fps = _stream_fps(stream)
        duration = _stream_duration(container, stream)
        if not frames_total:
            frames_total = int(round(duration * fps)) if fps and duration else 0
        return MediaInfo(w, h, fps, duration, frames_total, cc.name, rotation)


# ---------------------------------------------------------------------------------------------
# decoding


def _rotation(frame: av.VideoFrame) -> int:
    """Display rotation in CCW degrees, snapped to a multiple of 90."""
    try:
        r = frame.rotation
    except Exception:  # no display matrix support in this build
        return 0
    return int(round((r or 0) / 90.0)) * 90 % 360


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Packed, upright RGB: to_ndarray can be row-padded (e.g. 1080-wide) and rot90 is a view."""
    rgb = frame.to_ndarray(format="rgb24")
    k = _rotation(frame) // 90
    if k:
        rgb = np.rot90(rgb, k)
    return np.ascontiguousarray(rgb)


def sample_indices(total: int, n: int) -> list[int]:
    """`n` evenly spaced distinct increasing frame indices in [0, total) (fewer if total < n)."""
    if total <= 0 or n <= 0:
        return []
    if n >= total:
        return list(range(total))
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, n)})


def _read_image(path: Path) -> Frame:
    with _open_image(path) as img:
        try:
            img = ImageOps.exif_transpose(img)
            rgb = np.asarray(img.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as exc:
            raise MediaError("decode_error", f"cannot decode image: {exc}", path) from None
    return Frame(0, 0.0, np.ascontiguousarray(rgb, dtype=np.uint8))


def iter_frames(
    path: Path | str,
    *,
    frames: int = 32,
    fps: float | None = None,
    keyframes: bool = False,
) -> Iterator[Frame]:
    """Yield sampled frames one at a time (never a list: memory stays at one frame).

    Modes: `frames` evenly spaced (default, decodes sequentially and converts only the
    sampled ones); `fps=F` one frame per 1/F seconds; `keyframes=True` only key frames (the
    decoder skips the rest, fast for long files; thinned by `fps` when given). Images yield
    one frame. A file cut short yields the frames it has; one with none raises MediaError.
    """
    path = Path(path)
    _check_file(path)
    if is_image(path):
        yield _read_image(path)
        return
    if fps is not None and fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")

    targets: list[int] | None = None
    if fps is None and not keyframes:
        with _open_container(path) as container:
            stream = _video_stream(container, path)
            total = _frame_count(stream)
        if not total:
            total = _count_packets(path)
        targets = sample_indices(total, frames)

    with _open_container(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        if keyframes:
            stream.codec_context.skip_frame = "NONKEY"
        rate = _stream_fps(stream)
        start = stream.start_time if stream.start_time is not None else 0
        tb = float(stream.time_base) if stream.time_base else 0.0
        yielded = 0
        # Container frame counts can exceed what the decoder outputs (edit lists, leading
        # undecodable B-frames): keep the last few unconverted frames to fill missed targets.
        tail: deque[tuple[int, float, av.VideoFrame]] = deque(maxlen=4)
        next_t = 0.0
        last_index = -1
        target_pos = 0
        try:
            for ordinal, frame in enumerate(container.decode(stream)):
                t = (frame.pts - start) * tb if frame.pts is not None and tb else (ordinal / rate if rate else 0.0)
                t = max(0.0, float(t))
                if targets is not None:
                    if target_pos >= len(targets):
                        break
                    if ordinal != targets[target_pos]:
                        tail.append((ordinal, t, frame))
                        continue
                    target_pos += 1
                    index = ordinal
                else:
                    # keyframes skip frames in the decoder, so the ordinal is unknown: use time
                    index = int(round(t * rate)) if (keyframes and rate) else ordinal
                    if index <= last_index:
                        index = last_index + 1
                    if fps is not None:
                        if t + 1e-6 < next_t:
                            continue
                        next_t = (math.floor(t * fps + 1e-6) + 1) / fps
                _check_size(path, frame.width, frame.height)
                tail.clear()
                last_index = index
                yielded += 1
                yield Frame(index, t, _to_rgb(frame))
        except av.FFmpegError as exc:
            if yielded == 0:
                code = "truncated" if isinstance(exc, av.error.EOFError) else "decode_error"
                raise MediaError(code, f"cannot decode video: {exc.strerror or exc}", path) from None
            return  # a damaged tail: keep what was decoded
        if targets is not None and target_pos < len(targets):
            missing = len(targets) - target_pos
            spare = [x for x in tail if x[0] > last_index][-missing:]
            for ordinal, t, frame in spare:
                last_index = ordinal
                yielded += 1
                yield Frame(ordinal, t, _to_rgb(frame))
            tail.clear()
    if yielded == 0 and keyframes:
        # Streams without marked key frames (intra refresh, open GOP) decode nothing with
        # NONKEY: fall back to uniform sampling rather than calling a good file broken.
        yield from iter_frames(path, frames=frames, fps=fps)
        return
    if yielded == 0:
        raise MediaError("truncated", "no decodable video frames", path)
