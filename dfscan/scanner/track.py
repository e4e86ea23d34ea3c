"""Join per-frame face detections into subjects across the sampled frames.

Optimal one-to-one matching (Hungarian, dfscan.scanner.assign) rather than greedy:
with two people close together a greedy pass can swap them, and the per-subject score of a
report must not mix two faces. Tracks survive a few missed frames (a head turn, a blink of the
detector); tracks seen in too few frames, or only ever weakly, are false positives and dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dfscan.scanner.assign import linear_assignment
from dfscan.scanner.faces import Detection

_INFEASIBLE = 1e6


@dataclass
class Track:
    """One subject: `observations` are (position in the sampled frame list, detection)."""

    id: int
    observations: list[tuple[int, Detection]] = field(default_factory=list)

    @property
    def frames(self) -> list[int]:
        return [pos for pos, _ in self.observations]

    @property
    def mean_score(self) -> float:
        return float(np.mean([d.score for _, d in self.observations])) if self.observations else 0.0


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def match_cost(a: tuple[float, ...], b: tuple[float, ...], *, gap: int = 1, max_distance: float = 1.0) -> float:
    """(1 - IoU) + centre distance in face sizes; infeasible when too far or too different in size.

    The distance gate widens with the number of frames since the track was last seen, since
    sampled frames of a long video can be seconds apart.
    """
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    size_a, size_b = math.sqrt(max(aw * ah, 1e-6)), math.sqrt(max(bw * bh, 1e-6))
    scale = 0.5 * (size_a + size_b)
    dist = math.hypot((ax + aw / 2) - (bx + bw / 2), (ay + ah / 2) - (by + bh / 2)) / scale
    if dist > max_distance * (1.0 + 0.5 * (gap - 1)) or max(size_a, size_b) > 2.0 * min(size_a, size_b):
        return _INFEASIBLE
    return (1.0 - _iou(a, b)) + dist


def _missed(track: Track, pos: int, reach: Sequence[float] | None) -> int:
    """Frames since the track's last detection, before `pos`, that searched for a face its size."""
    last_pos, last = track.observations[-1]
    if reach is None:
        return pos - last_pos - 1
    size = max(last.box[2], last.box[3])
    return sum(1 for f in range(last_pos + 1, pos) if reach[f] <= size)


def default_min_frames(per_frame: list[list[Detection]]) -> int:
    """1 for a still image; else max(2, 10% of the sampled frames that have any face)."""
    if len(per_frame) <= 1:
        return 1
    with_faces = sum(1 for dets in per_frame if dets)
    return max(2, int(round(0.1 * with_faces)))


def track_faces(
    per_frame: list[list[Detection]],
    *,
    min_frames: int | None = None,
    max_gap: int = 3,
    max_distance: float = 1.0,
    min_track_score: float = 0.7,
    reach: Sequence[float] | None = None,
) -> list[Track]:
    """Link detections frame to frame; return kept tracks with ids 0.. in order of appearance.

    `min_frames=None` uses `default_min_frames`. `max_gap` is how many sampled frames a track may
    miss and still continue. `reach[pos]`, when given, is the smallest face frame `pos` was
    searched for (0: all sizes, as with a tiled pass; inf: not searched); a track whose face is
    smaller was not looked for there, so that frame is no miss (small faces found on tiled
    frames only). A frame whose detection was skipped (dfscan.scanner.interpolate) has the larger reach
    of the detected frames on both sides.
    `min_track_score` drops tracks of a video (more than one frame) whose mean detector score is
    low: MediaPipe fires at 0.5-0.6 on cartoon shapes and clouds (tracks averaging up to 0.62 on
    the test media) but gives real faces 0.8-0.97 on average across a shot. A still image keeps
    every face.
    """
    if min_frames is None:
        min_frames = default_min_frames(per_frame)
    active: list[Track] = []
    finished: list[Track] = []
    for pos, detections in enumerate(per_frame):
        # retire tracks that have missed too many frames
        still: list[Track] = []
        for tr in active:
            (finished if _missed(tr, pos, reach) > max_gap else still).append(tr)
        active = still
        matched: set[int] = set()
        if active and detections:
            cost = np.full((len(active), len(detections)), _INFEASIBLE)
            for i, tr in enumerate(active):
                last_pos, last = tr.observations[-1]
                for j, det in enumerate(detections):
                    cost[i, j] = match_cost(last.box, det.box, gap=pos - last_pos, max_distance=max_distance)
            rows, cols = linear_assignment(cost)
            for i, j in zip(rows, cols):
                if cost[i, j] < _INFEASIBLE:
                    active[i].observations.append((pos, detections[j]))
                    matched.add(j)
        for j, det in enumerate(detections):
            if j not in matched:
                active.append(Track(id=-1, observations=[(pos, det)]))
    finished.extend(active)

    video = len(per_frame) > 1
    kept = [
        t for t in finished
        if len(t.observations) >= min_frames and (not video or t.mean_score >= min_track_score)
    ]
    kept.sort(key=lambda t: (t.observations[0][0], t.observations[0][1].box[0]))
    for i, t in enumerate(kept):
        t.id = i
    return kept
