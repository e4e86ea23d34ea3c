"""Metadata features of one media file, read without the detector (audit runs them in workers).

Why these: each has split a public deepfake set on its own. Fakes rendered by one pipeline
share a codec, a resolution, a frame rate or a JPEG quality that the reals do not, and fakes
whose audio was re-synthesised often begin with a moment of digital silence.

Leading silence: milliseconds from the first decoded audio sample until the first sample whose
absolute value rises above `silence_db` dBFS (full scale = 1.0 for float audio, 32768 for
16-bit), over at most the first `SILENCE_SCAN_S` seconds (a file silent for that long reports
that many ms). The default, -60 dBFS, sits below the noise floor of any microphone recording,
so a real recording measures ~0 ms and only generated or zero-padded audio measures more.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from dfscan.scanner.media import MediaError, is_image, probe

DEFAULT_SILENCE_DB = -60.0
SILENCE_SCAN_S = 10.0

# name → kind, in table order: "num" features are compared by their value, "cat" by category
FEATURES: dict[str, str] = {
    "container": "cat", "video_codec": "cat", "pixel_format": "cat",
    "width": "num", "height": "num", "fps": "num", "duration_s": "num", "frames": "num",
    "bitrate_kbps": "num", "file_size_bytes": "num", "rotation": "cat",
    "has_audio": "cat", "audio_codec": "cat", "audio_sample_rate": "num",
    "leading_silence_ms": "num", "audio_start_ms": "num", "video_start_ms": "num",
    "image_format": "cat", "jpeg_quality": "num", "has_exif": "cat",
}

# libjpeg's quality-50 luminance table (ITU T.81 Annex K), in natural order: the reference the
# quality estimate scales against
_JPEG_LUMA_50 = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
def jpeg_quality(table: list[int] | tuple[int, ...]) -> float:
    """The libjpeg quality (1-100) whose scaling of the standard table best explains `table`.

    libjpeg scales the quality-50 table by s = 5000/q (q < 50) or 200 - 2q (q >= 50) percent;
    inverting the mean scale gives the estimate. Pillow gives tables in natural (row) order.
    Entries clipped at 255 (quality under ~10) bias it slightly upwards.
    """
    q = np.asarray(table, dtype=np.float64)
    scale = float(np.mean(q * 100.0 / _JPEG_LUMA_50))
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return round(min(max(quality, 1.0), 100.0), 1)


def _image_features(path: Path) -> dict[str, Any]:
    info = probe(path)  # the scan's own header reader: size upright, same limits and errors
    with Image.open(path) as img:
        fmt = (img.format or "").lower()
        tables = getattr(img, "quantization", None) if fmt == "jpeg" else None
        quality = jpeg_quality(tables[0]) if tables and 0 in tables else None
        has_exif = bool(img.getexif())
    return {"container": fmt, "image_format": fmt, "width": info.width, "height": info.height,
            "rotation": str(info.rotation), "jpeg_quality": quality, "has_exif": str(has_exif).lower(),
            "file_size_bytes": path.stat().st_size}


def _full_scale(frame: av.AudioFrame) -> float:
    name = frame.format.name.rstrip("p")
    return {"s16": 32768.0, "s32": 2147483648.0, "u8": 128.0, "s64": 9.223372036854776e18}.get(name, 1.0)


def leading_silence_ms(container: av.container.InputContainer, stream: av.audio.AudioStream,
                       silence_db: float) -> tuple[float | None, float | None]:
    """(leading silence, first sample's time) in ms, or (None, None) if no audio decodes."""
    level = 10.0 ** (silence_db / 20.0)
    first: float | None = None
    try:
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None or frame.samples == 0:
                continue
            t0 = float(frame.pts * frame.time_base)
            if first is None:
                first = t0
            x = frame.to_ndarray().astype(np.float64)
            if frame.format.name == "u8" or frame.format.name == "u8p":
                x -= 128.0
            x = np.abs(x) / _full_scale(frame)
            # planar: (channels, samples); packed: (1, samples * channels)
            loud = x.max(axis=0) if frame.format.is_planar else x.reshape(-1, len(frame.layout.channels)).max(axis=1)
            hit = np.flatnonzero(loud > level)
            if hit.size:
                return (t0 + hit[0] / frame.sample_rate - first) * 1000.0, first * 1000.0
            if t0 - first >= SILENCE_SCAN_S:
                break
    except av.FFmpegError:
        pass  # damaged audio: the silence measured so far stands
    if first is None:
        return None, None
    return SILENCE_SCAN_S * 1000.0, first * 1000.0


def _video_features(path: Path, silence_db: float) -> dict[str, Any]:
    info = probe(path)  # the scan's own header reader (display size, fps, duration, frames)
    out: dict[str, Any] = {"width": info.width, "height": info.height, "fps": round(info.fps, 3),
                           "duration_s": round(info.duration, 3), "frames": info.frames_total,
                           "video_codec": info.codec, "rotation": str(info.rotation),
                           "file_size_bytes": path.stat().st_size}
    with av.open(str(path), metadata_errors="ignore") as container:
        video = container.streams[info.stream_index or 0]  # the stream the scan reads (the largest)
        assert isinstance(video, av.VideoStream)  # probe's stream_index is always a video stream's
        out["container"] = container.format.name
        out["pixel_format"] = video.codec_context.pix_fmt or ""
        bit_rate = container.bit_rate or (8 * out["file_size_bytes"] / info.duration if info.duration else None)
        out["bitrate_kbps"] = round(bit_rate / 1000.0, 1) if bit_rate else None
        out["video_start_ms"] = (round(float(video.start_time * video.time_base) * 1000.0, 2)
                                 if video.start_time is not None and video.time_base is not None else None)
        out["has_audio"] = str(bool(container.streams.audio)).lower()
        if container.streams.audio:
            audio = container.streams.audio[0]
            out["audio_codec"] = audio.codec_context.name
            out["audio_sample_rate"] = audio.codec_context.sample_rate
            silence, start = leading_silence_ms(container, audio, silence_db)
            out["leading_silence_ms"] = None if silence is None else round(silence, 2)
            out["audio_start_ms"] = None if start is None else round(start, 2)
    return out


def media_features(path: str | Path, silence_db: float = DEFAULT_SILENCE_DB) -> dict[str, Any]:
    """Every feature this file has (missing ones are absent); MediaError when it cannot be read."""
    path = Path(path)
    try:
        feats = _image_features(path) if is_image(path) else _video_features(path, silence_db)
    except MediaError:
        raise
    except (OSError, av.FFmpegError, ValueError) as exc:
        raise MediaError("decode_error", f"cannot read metadata: {exc}", path) from None
    return {k: v for k, v in feats.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
