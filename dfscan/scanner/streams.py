"""What a video file holds besides what is scanned, and what a report item says about it.

A file can carry several video streams: the scan reads one (the default, else the largest:
media._video_stream), and a face in another is never seen. Every stream is listed in the item's
`media.video_streams` and the others are flagged in `media.warnings`, so a decoy stream cannot
pass silently; so are timestamps that had to be repaired (media.SampleStats.timestamps_repaired).
"""

from __future__ import annotations

from typing import Any

import av


def list_streams(container: Any) -> list[dict]:
    """Every video stream of an open container: index, size, default flag (and `cover` for cover art)."""
    default, pic = av.stream.Disposition.default, av.stream.Disposition.attached_pic
    out = []
    for s in container.streams.video:
        entry = {"index": s.index, "width": s.codec_context.width, "height": s.codec_context.height,
                 "default": bool(s.disposition & default)}
        if s.disposition & pic:
            entry["cover"] = True
        out.append(entry)
    return out


def _describe(stream: dict) -> str:
    kind = "cover art" if stream.get("cover") else "default" if stream["default"] else "not default"
    return f"#{stream['index']} ({stream['width']}x{stream['height']}, {kind})"


def media_warnings(media: dict) -> list[str]:
    """One line per thing the verdict does not cover: video streams not scanned, repaired timestamps."""
    warnings = []
    others = [s for s in media.get("video_streams") or [] if s["index"] != media.get("stream_index")]
    if others:
        scanned = next(s for s in media["video_streams"] if s["index"] == media["stream_index"])
        warnings.append(f"{len(others)} other video stream(s) not scanned: {', '.join(map(_describe, others))}; "
                        f"scanned stream {_describe(scanned)}")
    if media.get("timestamps_repaired"):
        warnings.append(f"timestamps went back or stood still {media['timestamps_repaired']} time(s): frames from "
                        f"there on were timed by their order, at {media.get('fps') or 25:g} fps")
    return warnings
