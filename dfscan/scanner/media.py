"""Finding, probing and decoding media with PyAV (and PIL for stills), memory-bounded.

Every frame handed out is contiguous uint8 RGB and upright: MediaPipe reads a row-padded
PyAV array as if it were packed, and phone video stores portrait frames sideways with a
display matrix, so both are fixed here once rather than in every consumer.
"""

from __future__ import annotations

import heapq
import math
import os
import re
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dfscan.core.errors import InputError
from dfscan.scanner.options import MAX_FPS
from dfscan.scanner.streams import list_streams

VIDEO_EXTS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
MEDIA_EXTS = VIDEO_EXTS | IMAGE_EXTS

# Refuse absurd frames before decoding anything: one 16k x 16k RGB frame is already 768 MB.
MAX_SIDE = 16384
MAX_PIXELS = 100_000_000

# A verdict from fewer than half of the positions asked for is not one to trust: above this
# share of undecodable sampled positions a file is `damaged` (the scan makes it an error item).
DAMAGED_SHARE = 0.5
# Forward seeks tried when the demuxer itself fails mid-file, each twice as far as the last
# (1, 2, 4 ... frames: 2^15 frames is 18 min at 30 fps), before giving up on the rest.
MAX_SEEKS = 16
# Still formats that can hold an animation (WebP, APNG, GIF): sampled like a video. Not MPO/JPEG,
# whose extra frames are previews or stereo views of the same photo.
ANIMATED_FORMATS = frozenset({"WEBP", "PNG", "GIF"})
# An animation frame without a delay lasts this long, as browsers play it (else all start at 0 s).
DEFAULT_FRAME_MS = 100.0


class MediaError(InputError):
    """A file that cannot be read as media; `.code` is the report's error code, `.media` what
    was read of it (a damaged file's size, duration and decode_errors) when there is any."""

    def __init__(self, code: str, message: str, path: Path | str | None = None, media: dict | None = None) -> None:
        self.code = code
        self.path = Path(path) if path is not None else None
        self.media = media
        super().__init__(f"{path}: {message}" if path is not None else message)


@dataclass
class MediaInfo:
    """What a file is; width/height are the upright (displayed) size, rotation in CCW degrees.

    rotation is what turns the stored picture upright, 0/90/180/270 counter-clockwise, for video
    (display matrix) and images (EXIF orientation) alike. stream_index is the video stream read
    (None for images), video_streams every video stream of the file (dfscan.scanner.streams.list_streams).
    """

    width: int
    height: int
    fps: float
    duration: float
    frames_total: int
    codec: str
    rotation: int
    stream_index: int | None = None
    video_streams: list[dict] | None = None


@dataclass
class SampleStats:
    """How sampling went, filled in by iter_frames: damage must be visible, not a silent verdict.

    decode_errors counts sampled positions for which no frame could be decoded (a damaged packet
    or container): with --frames the evenly spaced positions, with --fps the 1/F s slots, with
    --keyframes the key frames. timestamps_repaired counts the times the stream's timestamps went
    back or stood still (concatenated segments, a muxer that wrote none): from the first, frames
    are timed by their order, 1/rate apart, so that no stretch of the file goes unsampled.
    """

    sampled: int = 0
    decode_errors: int = 0
    stream_index: int | None = None
    timestamps_repaired: int = 0

    @property
    def damaged(self) -> bool:
        """More than DAMAGED_SHARE of the sampled positions could not be decoded."""
        positions = self.sampled + self.decode_errors
        return positions > 0 and self.decode_errors > DAMAGED_SHARE * positions

    def damage_message(self) -> str:
        return (f"{self.decode_errors} of {self.sampled + self.decode_errors} sampled frames could not be "
                "decoded (damaged file): too few to trust a verdict")


@dataclass
class Frame:
    """One sampled frame: `index` is its position in the stream, `t` seconds from its start."""

    index: int
    t: float
    image: np.ndarray  # (H, W, 3) uint8 RGB, C-contiguous, upright


# ---------------------------------------------------------------------------------------------
# collecting inputs


URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # scheme://, as typed (a Path would collapse the //)


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
            if URL.match(str(raw)):
                raise InputError(f"{raw}: a URL; a local scan reads files and folders (object-store URIs such as "
                                 "s3:// and gs:// need --ray; download http(s) files first)")
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
    """The video stream to scan: the default one (what players show), else the largest picture, so
    neither a small first stream nor a large non-default one hides it; cover art (attached
    pictures) only when nothing else. The others are listed and flagged (dfscan.scanner.streams)."""
    _check_index(container, path)
    if not container.streams.video:
        raise MediaError("no_video_stream", "contains no video stream", path)
    pic = av.stream.Disposition.attached_pic
    default = av.stream.Disposition.default
    candidates = [s for s in container.streams.video if not s.disposition & pic] or list(container.streams.video)
    stream = max(candidates, key=lambda s: (bool(s.disposition & default),
                                            s.codec_context.width * s.codec_context.height, -s.index))
    cc = stream.codec_context
    _check_size(path, cc.width, cc.height)
    return stream


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _stream_duration(container, stream) -> float:
    """Seconds of the stream from its header (0 if unknown; see _packet_span for MKV/WebM)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _packet_span(path: Path, index: int) -> tuple[int, float]:
    """Packets and seconds from first to last timestamp of stream `index`: demux only, no decoding.

    For containers without a frame count or stream duration (MKV, WebM), whose header duration
    is the end time (a stream starting at t = 1e6 s would be 1e6 s long).
    """
    count, first, end = 0, None, None
    with _open_container(path) as container:
        stream = container.streams[index]
        tb = stream.time_base
        for p in container.demux(stream):
            if p.size <= 0:
                continue
            count += 1
            if p.pts is not None and tb:
                first = p.pts if first is None else min(first, p.pts)
                stop = p.pts + (p.duration or 0)
                end = stop if end is None else max(end, stop)
    seconds = float((end - first) * tb) if first is not None and end is not None and tb else 0.0
    return count, seconds


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


def _count_packets(path: Path, index: int) -> int:
    """Exact frame count for containers without one (mkv, webm): demux only, no decoding."""
    return _packet_span(path, index)[0]


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


_EXIF_ROTATION = {3: 180, 6: 270, 8: 90}  # EXIF orientation → CCW degrees to display, as for video


def _n_frames(img: Image.Image) -> int:
    """Frames of an image: n_frames is only on the plugins for multi-frame formats (GIF, WebP, ...)."""
    return int(getattr(img, "n_frames", 1))


def _is_animated(img: Image.Image) -> bool:
    return img.format in ANIMATED_FORMATS and _n_frames(img) > 1


def _animation_times(img: Image.Image) -> list[float]:
    """Start time (s) of every frame of an animated image, plus the end: from each frame's duration."""
    times = [0.0]
    for i in range(_n_frames(img)):
        img.seek(i)
        img.load()  # WebP sets the frame's duration when decoding it
        ms = float(img.info.get("duration") or 0)
        times.append(times[-1] + (ms if ms > 0 else DEFAULT_FRAME_MS) / 1000.0)
    img.seek(0)
    return times


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
            n, duration, fps = 1, 0.0, 0.0
            if _is_animated(img):
                try:
                    n, duration = _n_frames(img), _animation_times(img)[-1]
                except (OSError, SyntaxError, ValueError, EOFError) as exc:
                    raise MediaError("decode_error", f"cannot read animation: {exc}", path) from None
                fps = n / duration if duration else 0.0
            return MediaInfo(w, h, fps, duration, n, (img.format or "image").lower(),
                             _EXIF_ROTATION.get(orientation, 0))
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        cc = stream.codec_context
        rotation = None
        try:  # the first frame that decodes: a damaged first packet must not fail the file
            for frame in _decode_tolerant(container, stream):
                rotation = _rotation(frame)
                break
        except av.FFmpegError as exc:
            raise MediaError("decode_error", f"cannot decode: {exc.strerror or exc}", path) from None
        if rotation is None:
            raise MediaError("truncated", "no decodable video frames", path)
        w, h = cc.width, cc.height
        if rotation % 180:
            w, h = h, w
        frames_total = _frame_count(stream)
        fps = _stream_fps(stream)
        duration = _stream_duration(container, stream)
        index, from_header = stream.index, bool(frames_total and stream.duration)
        streams = list_streams(container)
    if not from_header:  # no frame count or stream duration (MKV, WebM): read the timestamps
        frames_total, span = _packet_span(path, index)
        duration = span or duration
    return MediaInfo(w, h, fps, duration, frames_total, cc.name, rotation, index, streams)


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


def _image_rgb(img: Image.Image) -> np.ndarray:
    """Upright packed RGB of the current frame; 16/32-bit grey scaled down, not clipped at 255.

    convert("RGB") clips an I;16 (16-bit grey PNG) picture at 255: almost all white, no face.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I;16") or img.mode == "I":  # I: 16-bit grey as older Pillow opens it
        grey = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(grey * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    return np.ascontiguousarray(np.asarray(img.convert("RGB")), dtype=np.uint8)


def _image_frames(path: Path, frames: int, fps: float | None, stats: SampleStats) -> Iterator[Frame]:
    """One frame of a still; an animation (WebP, APNG, GIF) sampled like a video, from each frame's duration."""
    with _open_image(path) as img:
        try:
            if not _is_animated(img):
                stats.sampled += 1
                yield Frame(0, 0.0, _image_rgb(img))
                return
            times = _animation_times(img)
            n = _n_frames(img)
            if fps is not None:  # the first frame at or after each 1/F s step
                wanted, next_t = [], 0.0
                for i in range(n):
                    if times[i] + 1e-6 >= next_t:
                        wanted.append(i)
                        next_t = (math.floor(times[i] * fps + 1e-6) + 1) / fps
            else:  # --keyframes too: every frame of an animation is a whole picture
                wanted = sample_indices(n, frames)
            for i in wanted:
                img.seek(i)
                rgb = _image_rgb(img)
                stats.sampled += 1
                yield Frame(i, round(times[i], 6), rgb)
                del rgb
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise MediaError("decode_error", f"cannot decode image: {exc}", path) from None


class _Decoder:
    """Decodes one stream past damage instead of stopping at the first error (an evasion route).

    A packet the decoder rejects is skipped; when the demuxer itself fails, it seeks forward past
    the failure (to the key frame 1, 2, 4 ... frames on, at most MAX_SEEKS times). A frame's
    position in the stream (`ordinal`, lost frames counted) is its timestamp's rank among the
    packets demuxed, so it stays right whatever the decoder's reordering or threading delay;
    timestamps passed over without a frame are lost frames, their times (s) collected in
    `lost`. `errors` counts the errors the decoder and demuxer reported: without any, the
    caller calls nothing lost (a header may count frames a decoder never shows). `reopen`
    opens the file again to decode once more what a threaded decoder lost at the end.
    Timestamps that go back or stand still (`ts_faults`, counted in demux order by the decode
    timestamp) rank nothing: from the first, `frame_order` is set and the ordinal is the frame's
    order out of the decoder (with keys_only, the key packet's place in demux order).
    """

    def __init__(self, container, stream, keys_only: bool = False, reopen: Callable[[], Any] | None = None) -> None:
        self.container, self.stream, self.keys_only, self.reopen = container, stream, keys_only, reopen
        self.start = stream.start_time if stream.start_time is not None else 0
        self.tb = float(stream.time_base) if stream.time_base else 0.0
        self.rate = _stream_fps(stream)
        self.errors = 0
        self.lost: list[float] = []
        self._pending: list[float] = []  # heap: pts demuxed, frame not yet out
        self._passed = 0  # packets (by pts) before the last frame out, lost or not
        self._last_pts: int | None = None
        self.ts_faults = 0
        self._last_dts: int | None = None
        self._demuxed = 0  # packets demuxed, in demux order
        self._keys: deque[int] = deque()  # keys_only: demux places of the key packets whose frames are not out yet

    @property
    def frame_order(self) -> bool:
        """Timestamps cannot rank frames (see ts_faults): ordinals are frame order."""
        return self.ts_faults > 0

    def _seconds(self, pts: float) -> float:
        return max(0.0, float((pts - self.start) * self.tb))

    def _demux_packets(self) -> Iterator[av.Packet | None]:
        seeks, gap_from = 0, None
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError:
                self.errors += 1
                if self._last_pts is None or not self.tb or seeks >= MAX_SEEKS:
                    return
                seeks += 1
                gap_from = self._last_pts
                yield None  # drain the decoder before the seek flushes it
                jump = max(int(2 ** (seeks - 1) / (self.rate or 25.0) / self.tb), 1)
                try:  # to the first key frame at or after the jump
                    self.container.seek(int(gap_from) + jump, stream=self.stream, backward=False)
                except av.FFmpegError:
                    return
                self._last_dts = None  # our seek, not the file's timestamps
                packets = self.container.demux(self.stream)
                continue
            if packet.size > 0:
                self._check_order(packet)
            if packet.pts is not None and packet.size > 0:
                if gap_from is not None:  # frames skipped by the seek: estimated from the time jumped
                    n = int(round((packet.pts - gap_from) * self.tb * self.rate)) - 1 if self.rate else 0
                    n = 0 if self.frame_order else 1 if self.keys_only else n
                    for k in range(1, max(n, 0) + 1):
                        heapq.heappush(self._pending, gap_from + k * (packet.pts - gap_from) / (n + 1))
                    gap_from = None
                self._last_pts = packet.pts if self._last_pts is None else max(self._last_pts, packet.pts)
                if not packet.is_discard and (packet.is_keyframe or not self.keys_only) and not self.frame_order:
                    heapq.heappush(self._pending, packet.pts)
            yield packet

    def _check_order(self, packet: av.Packet) -> None:
        """Count a decode timestamp that is not past the one before; from the first, rank by order."""
        if packet.dts is not None:
            if self._last_dts is not None and packet.dts <= self._last_dts:
                self.ts_faults += 1
                self._pending.clear()  # ranks of timestamps that mean nothing
            self._last_dts = packet.dts
        if self.keys_only and packet.is_keyframe:
            self._keys.append(self._demuxed)
        self._demuxed += 1

    def _place(self, frame: av.VideoFrame, ordinal: int) -> int:
        """The ordinal of `frame` (the one before was `ordinal`); pending timestamps before it were lost."""
        key_place = self._keys.popleft() if self._keys else None
        if self.frame_order:
            return max(key_place if key_place is not None else -1, ordinal + 1)
        if frame.pts is None:
            return ordinal + 1
        while self._pending and self._pending[0] < frame.pts:
            self.lost.append(self._seconds(heapq.heappop(self._pending)))
            self._passed += 1
        ordinal = max(self._passed, ordinal + 1)
        if self._pending and self._pending[0] == frame.pts:
            heapq.heappop(self._pending)
            self._passed += 1
        return ordinal

    def frames(self) -> Iterator[tuple[int, av.VideoFrame]]:
        """(ordinal, frame) in presentation order; what is left pending at the end was lost."""
        ordinal, last_pts = -1, None
        codec = self.stream.codec_context
        for packet in self._demux_packets():
            try:
                out = codec.decode(None) if packet is None else packet.decode()
            except av.FFmpegError:
                self.errors += 1
                continue
            for frame in out:
                ordinal = self._place(frame, ordinal)
                last_pts = frame.pts if frame.pts is not None else last_pts
                yield ordinal, frame
        if self._pending and last_pts is not None and self.reopen is not None:  # frames missing at the end
            for frame in self._redecode_after(last_pts, self.reopen):
                ordinal = self._place(frame, ordinal)
                yield ordinal, frame
        self.lost.extend(self._seconds(heapq.heappop(self._pending)) for _ in range(len(self._pending)))

    def _redecode_after(self, pts: int, reopen: Callable[[], Any]) -> Iterator[av.VideoFrame]:
        """The frames after `pts` again, decoded without frame threads from the key frame before it.

        A frame-threaded decoder holds up to one frame per thread at the end; a damaged frame
        among them makes the final drain fail (or, with many threads, drop them silently), and
        every frame it held is lost. Undamaged files have nothing missing at the end.
        """
        try:
            with reopen() as container:
                stream = container.streams[self.stream.index]
                stream.thread_type = "SLICE"  # no frames held back
                if self.keys_only:
                    stream.codec_context.skip_frame = "NONKEY"
                container.seek(int(pts), stream=stream)
                for packet in container.demux(stream):
                    try:
                        out = packet.decode()
                    except av.FFmpegError:  # the first pass may not have said (see above)
                        self.errors += 1
                        continue
                    yield from (f for f in out if f.pts is not None and f.pts > pts)
        except (av.FFmpegError, MediaError):
            return


def _decode_tolerant(container, stream) -> Iterator[av.VideoFrame]:
    """Frames of `stream`, damaged packets skipped (see _Decoder)."""
    for _, frame in _Decoder(container, stream).frames():
        yield frame


def iter_frames(
    path: Path | str,
    *,
    frames: int = 32,
    fps: float | None = None,
    keyframes: bool = False,
    stats: SampleStats | None = None,
) -> Iterator[Frame]:
    """Yield sampled frames one at a time (never a list: memory stays at one frame).

    Modes: `frames` evenly spaced (default, decodes sequentially and converts only the
    sampled ones); `fps=F` one frame per 1/F seconds; `keyframes=True` only key frames (the
    decoder skips the rest, fast for long files; thinned by `fps` when given). Images yield
    one frame, animations (WebP, APNG, GIF) are sampled like video. Damaged packets are skipped:
    a sampled position whose frame is lost takes the next decodable one before the next
    position, else it counts in `stats.decode_errors` (see SampleStats.damaged). A file cut
    short yields the frames it has; one with none raises MediaError.
    """
    path = Path(path)
    _check_file(path)
    stats = stats if stats is not None else SampleStats()
    if fps is not None and not 0 < fps <= MAX_FPS:  # also refuses nan
        raise InputError(f"fps must be in (0, {MAX_FPS:g}], got {fps}")
    if is_image(path):
        yield from _image_frames(path, frames, fps, stats)
        return

    targets: list[int] | None = None
    if fps is None and not keyframes:
        with _open_container(path) as container:
            stream = _video_stream(container, path)
            total, index = _frame_count(stream), stream.index
        if not total:
            total = _count_packets(path, index)
        targets = sample_indices(total, frames)

    with _open_container(path) as container:
        stream = _video_stream(container, path)
        stats.stream_index = stream.index
        stream.thread_type = "AUTO"
        if keyframes:
            stream.codec_context.skip_frame = "NONKEY"
        decoder = _Decoder(container, stream, keys_only=keyframes, reopen=lambda: _open_container(path))
        rate = decoder.rate
        start, tb = decoder.start, decoder.tb
        yielded = 0
        # Container frame counts can exceed what the decoder outputs (edit lists, leading
        # undecodable B-frames): keep the last few unconverted frames to fill missed targets.
        tail: deque[tuple[int, float, av.VideoFrame]] = deque(maxlen=4)
        next_t = 0.0
        last_index = -1
        target_pos = 0
        skipped_targets = 0
        yielded_slots: set[int] = set()
        step = 1.0 / (rate or 25.0)
        prev, anchor = (-1, -step), None  # (ordinal, t) of the last frame out, of the last one timed by its timestamp
        try:
            for ordinal, frame in decoder.frames():
                if decoder.frame_order:  # timestamps went back or stood still: 1/rate apart from the last good one
                    anchor = anchor or prev
                    t = anchor[1] + (ordinal - anchor[0]) * step
                else:
                    t = (frame.pts - start) * tb if frame.pts is not None and tb else (ordinal / rate if rate else 0.0)
                t = max(0.0, float(t))
                prev = (ordinal, t)
                if targets is not None:
                    # positions whose frames were all lost (this frame is past the next one too)
                    while target_pos + 1 < len(targets) and targets[target_pos + 1] <= ordinal:
                        target_pos += 1
                        skipped_targets += 1
                    if target_pos >= len(targets):
                        break
                    if ordinal < targets[target_pos]:
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
                        slot = math.floor(t * fps + 1e-6)
                        yielded_slots.add(slot)
                        next_t = (slot + 1) / fps
                _check_size(path, frame.width, frame.height)
                tail.clear()
                last_index = index
                yielded += 1
                stats.sampled += 1
                yield Frame(index, t, _to_rgb(frame))
        except av.FFmpegError as exc:  # not a damaged packet: the decoder cannot go on at all
            if yielded == 0:
                code = "truncated" if isinstance(exc, av.error.EOFError) else "decode_error"
                raise MediaError(code, f"cannot decode video: {exc.strerror or exc}", path) from None
            decoder.errors += 1
        stats.timestamps_repaired = decoder.ts_faults
        if targets is not None and target_pos < len(targets):
            missing = len(targets) - target_pos
            # frames a header counts but a decoder never outputs, not damage: frames near 0 s
            # must not stand in for positions at the end lost to damage
            spare = [] if decoder.errors else [x for x in tail if x[0] > last_index][-missing:]
            for ordinal, t, frame in spare:
                last_index = ordinal
                yielded += 1
                stats.sampled += 1
                yield Frame(ordinal, t, _to_rgb(frame))
            tail.clear()
            skipped_targets += missing - len(spare)
        if decoder.errors:  # else frames a container counts but a decoder never shows are not damage
            if keyframes:
                stats.decode_errors += len(decoder.lost)
            elif fps is not None:
                stats.decode_errors += len({math.floor(x * fps + 1e-6) for x in decoder.lost} - yielded_slots)
            else:
                stats.decode_errors += skipped_targets
    if yielded == 0 and keyframes:
        # Streams without marked key frames (intra refresh, open GOP) decode nothing with
        # NONKEY (nor do damaged key frames): fall back to uniform sampling rather than
        # calling a good file broken.
        stats.decode_errors = 0
        yield from iter_frames(path, frames=frames, fps=fps, stats=stats)
        return
    if yielded == 0:
        if decoder.errors:
            raise MediaError("decode_error", "no video frame could be decoded (damaged file)", path)
        raise MediaError("truncated", "no decodable video frames", path)
